"""Reading a LeRobot v3.0 dataset from disk: metadata (DatasetMeta) and numeric columns as numpy arrays."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from fileio.locks import is_locked

from . import atomic, checksums
from .format import (
    COLLECTION_PATH,
    EPISODES_DIR,
    INFO_PATH,
    STATS_PATH,
    TASKS_PATH,
    CorruptFileError,
    DatasetFormatError,
    SchemaMismatchError,
    image_layout,
    is_visual,
    validate_info,
    vector_width,
)
from .stats import stats_from_json

REQUIRED_EPISODE_COLUMNS = (
    "episode_index",
    "length",
    "data/chunk_index",
    "data/file_index",
    "dataset_from_index",
    "dataset_to_index",
)


def read_json(path: Path, what: str) -> Any:
    if not path.exists():
        raise FileNotFoundError(f"{what} missing: {path}")
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CorruptFileError(f"{what} is not valid JSON: {path} ({err})") from err


def read_parquet(path: Path, context: str, columns: Sequence[str] | None = None) -> pa.Table:
    """Read a parquet file; errors name the file and ``context`` (which episodes or metadata it holds)."""
    if not path.exists():
        raise FileNotFoundError(f"parquet file missing: {path} ({context})")
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as err:
        raise CorruptFileError(f"cannot read parquet file {path} ({context}): {err}") from err
    if columns is not None:
        missing = [c for c in columns if c not in table.column_names]
        if missing:
            raise DatasetFormatError(
                f"parquet file {path} ({context}) lacks columns {missing}; it has {table.column_names}"
            )
        table = table.select(list(columns))
    return table


def column_to_numpy(column: pa.ChunkedArray, key: str, width: int, where: str) -> np.ndarray:
    """A scalar or (fixed-size) list column as numpy: (N,) for width-1 scalars, (N, width) for vectors."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    n = len(arr)
    if pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type) or pa.types.is_fixed_size_list(arr.type):
        values = arr.flatten().to_numpy(zero_copy_only=False)
        if len(values) != n * width:
            got = len(values) / n if n else 0
            raise SchemaMismatchError(
                f"{where}: column {key!r} holds {got:g} values per frame, info.json declares shape ({width},)"
            )
        return values.reshape(n, width)
    if width != 1:
        raise SchemaMismatchError(f"{where}: column {key!r} is a scalar column, info.json declares shape ({width},)")
    return arr.to_numpy(zero_copy_only=False)


_COMMIT_RETRIES = 100


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


class DatasetMeta:
    """Everything about a dataset but its frames: info.json, stats, tasks and the per-episode table."""

    def __init__(self, root: str | Path, verify: bool = True):
        """``verify=False`` skips the sha256 checks of meta/checksums.json (for users who know their files are sound)."""
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"dataset directory does not exist: {self.root}")
        self.verify = verify
        if atomic.has_pending_commit(self.root) and not is_locked(self.root):
            # A writer died mid-commit after staging complete files; finishing it is always safe. A live writer
            # (holding the lock) is finishing it right now: leave it alone.
            try:
                atomic.recover(self.root, clean_staging=False)
            except OSError as err:
                raise DatasetFormatError(
                    f"{self.root} holds an unfinished commit ({atomic.JOURNAL_NAME}) of a writer that died, and it "
                    f"cannot be finished here ({err}); open the dataset once where it is writable") from err
        # A writer publishing a commit renames its files one by one, so a reader caught in between sees new
        # checksums with old metadata or the reverse. That is told apart from corruption by the commit journal
        # (present while files are renamed) or a manifest replaced since this read began; then the read starts over.
        for attempt in range(_COMMIT_RETRIES):
            before = _stamp(self.root / checksums.CHECKSUMS_PATH)
            try:
                self._load()
                return
            except checksums.ChecksumMismatchError:
                moving = atomic.has_pending_commit(self.root) or _stamp(self.root / checksums.CHECKSUMS_PATH) != before
                if not moving or attempt == _COMMIT_RETRIES - 1:
                    raise
                time.sleep(0.01)

    def _load(self) -> None:
        self.checksums: dict[str, dict[str, Any]] | None = None
        if self.verify:
            self.checksums = checksums.read_manifest(self.root)
            if self.checksums is None:
                checksums.warn_unverified(self.root)
        info_path = self.root / INFO_PATH
        if info_path.exists():
            self.verify_file(info_path)
        self.info: dict[str, Any] = read_json(info_path, "LeRobot dataset info (meta/info.json)")
        if not isinstance(self.info, dict):
            raise DatasetFormatError(f"{info_path}: expected a JSON object, got {type(self.info).__name__}")
        validate_info(self.info, info_path)
        self.features: dict[str, dict[str, Any]] = self.info["features"]
        self.fps: int = int(self.info["fps"])
        self.tasks = self._read_tasks()
        self.episodes = self._read_episodes()
        stats_path = self.root / STATS_PATH
        self.stats = None
        if stats_path.exists():
            self.verify_file(stats_path)
            self.stats = stats_from_json(read_json(stats_path, "stats"))
        collection_path = self.root / COLLECTION_PATH
        self.collection: dict[str, Any] | None = None
        if collection_path.exists():
            self.verify_file(collection_path)
            self.collection = read_json(collection_path, "collection record")

    def verify_file(self, path: Path) -> None:
        """Check one file of the dataset against meta/checksums.json (a no-op without checksums or with verify=False).

        Raises ChecksumMismatchError (a CorruptFileError) naming the file and both digests.
        """
        if self.checksums is None:
            return
        rel = Path(path).relative_to(self.root).as_posix()
        checksums.verify_file(self.root, rel, self.checksums.get(rel))

    # ---- loading -------------------------------------------------------------------------------------
    def _read_tasks(self) -> list[str]:
        path = self.root / TASKS_PATH
        if self.info["total_episodes"] == 0 and not path.exists():
            return []
        if path.exists():
            self.verify_file(path)
        table = read_parquet(path, "task list")
        # LeRobot writes tasks as a pandas frame indexed by the task string; the index lands in a column
        # named "task" or "__index_level_0__" depending on whether the index was named.
        names = [c for c in ("task", "__index_level_0__") if c in table.column_names]
        if "task_index" not in table.column_names or not names:
            raise DatasetFormatError(f"{path}: expected columns 'task_index' and 'task', got {table.column_names}")
        index = table.column("task_index").to_numpy()
        text = table.column(names[0]).to_pylist()
        order = np.argsort(index)
        if not np.array_equal(index[order], np.arange(len(index))):
            raise DatasetFormatError(f"{path}: task_index must be 0..{len(index) - 1}, got {sorted(index.tolist())}")
        return [text[i] for i in order]

    def _read_episodes(self) -> pa.Table:
        total = int(self.info["total_episodes"])
        paths = sorted((self.root / EPISODES_DIR).glob("*/*.parquet"))
        if not paths:
            if total:
                raise FileNotFoundError(
                    f"{self.root / EPISODES_DIR}: no episode metadata parquet, info.json declares {total} episodes"
                )
            return pa.table({c: pa.array([], pa.int64()) for c in REQUIRED_EPISODE_COLUMNS})
        tables = []
        for path in paths:
            self.verify_file(path)
            table = read_parquet(path, "episode metadata")
            missing = [c for c in REQUIRED_EPISODE_COLUMNS if c not in table.column_names]
            if missing:
                raise DatasetFormatError(f"{path}: episode metadata lacks columns {missing}")
            tables.append(table.select([c for c in table.column_names if not c.startswith("stats/")]))
        table = pa.concat_tables(tables, promote_options="permissive")
        table = table.sort_by("episode_index")
        index = table.column("episode_index").to_numpy()
        if len(index) != total or not np.array_equal(index, np.arange(total)):
            raise DatasetFormatError(
                f"{self.root}: episode metadata lists episodes {index.tolist()[:10]}... ({len(index)} rows) but "
                f"info.json declares total_episodes={total}"
            )
        for key in self.video_keys:
            needed = [f"videos/{key}/{c}" for c in ("chunk_index", "file_index", "from_timestamp")]
            missing = [c for c in needed if c not in table.column_names]
            if missing:
                raise DatasetFormatError(f"{self.root / EPISODES_DIR}: video key {key!r} lacks columns {missing}")
        return table

    # ---- descriptive properties ----------------------------------------------------------------------
    @property
    def total_episodes(self) -> int:
        return int(self.info["total_episodes"])

    @property
    def total_frames(self) -> int:
        return int(self.info["total_frames"])

    @property
    def video_keys(self) -> list[str]:
        return [k for k, ft in self.features.items() if ft["dtype"] == "video"]

    @property
    def camera_keys(self) -> list[str]:
        return [k for k, ft in self.features.items() if is_visual(ft)]

    @property
    def numeric_keys(self) -> list[str]:
        return [k for k, ft in self.features.items() if not is_visual(ft) and ft["dtype"] != "string"]

    @property
    def units(self) -> dict[str, Any]:
        """Physical units per feature where the recording env declared them (e.g. {"action": [...]})."""
        if not self.collection or "action_units" not in self.collection:
            return {}
        return {"action": self.collection["action_units"]}

    def episode_column(self, name: str) -> np.ndarray:
        if name not in self.episodes.column_names:
            raise KeyError(f"episode metadata has no column {name!r}; columns: {self.episodes.column_names}")
        return self.episodes.column(name).to_numpy(zero_copy_only=False)

    @property
    def episode_lengths(self) -> np.ndarray:
        return self.episode_column("length").astype(np.int64)

    def episode(self, index: int) -> dict[str, Any]:
        if not 0 <= index < self.total_episodes:
            raise IndexError(f"episode {index} out of range: dataset {self.root} has {self.total_episodes} episodes")
        return {k: v[0] for k, v in self.episodes.slice(index, 1).to_pydict().items()}

    def shapes(self, channel_first: bool = True) -> dict[str, tuple[int, ...]]:
        """Per-frame shape of each feature; cameras as (C, H, W) when ``channel_first`` (what policies see)."""
        out = {}
        for key, ft in self.features.items():
            if is_visual(ft):
                h, w, c = image_layout(key, ft)
                out[key] = (c, h, w) if channel_first else (h, w, c)
            else:
                out[key] = tuple(int(s) for s in ft["shape"])
        return out

    def check_features(self, expected: Mapping[str, Sequence[int]]) -> None:
        """Raise SchemaMismatchError unless every expected key exists with the expected per-frame shape.

        Camera shapes are compared channel-first, as policies declare them.
        """
        shapes = self.shapes(channel_first=True)
        problems = []
        for key, shape in expected.items():
            if key not in shapes:
                problems.append(f"{key!r} is missing (dataset features: {sorted(shapes)})")
            elif tuple(int(s) for s in shape) != shapes[key]:
                problems.append(f"{key!r} has shape {shapes[key]} in the dataset, expected {tuple(shape)}")
        if problems:
            raise SchemaMismatchError(f"dataset {self.root} does not match the expected features: " + "; ".join(problems))

    # ---- file locations --------------------------------------------------------------------------------
    def data_file(self, episode: int) -> Path:
        row = self.episode(episode)
        return self.root / self.info["data_path"].format(
            chunk_index=row["data/chunk_index"], file_index=row["data/file_index"]
        )

    def video_file(self, episode: int, key: str) -> Path:
        row = self.episode(episode)
        return self.root / self.info["video_path"].format(
            video_key=key, chunk_index=row[f"videos/{key}/chunk_index"], file_index=row[f"videos/{key}/file_index"]
        )

    def episodes_by_file(self, prefix: str = "data") -> dict[tuple[int, int], list[int]]:
        chunks = self.episode_column(f"{prefix}/chunk_index")
        files = self.episode_column(f"{prefix}/file_index")
        groups: dict[tuple[int, int], list[int]] = {}
        for ep, key in enumerate(zip(chunks.tolist(), files.tolist())):
            groups.setdefault(key, []).append(ep)
        return groups


def describe_episodes(episodes: Iterable[int]) -> str:
    eps = list(episodes)
    return f"episode {eps[0]}" if len(eps) == 1 else f"episodes {eps[0]}..{eps[-1]}"


def load_numeric(meta: DatasetMeta, keys: Sequence[str]) -> dict[str, np.ndarray]:
    """Numeric feature columns of the whole dataset in global frame order (row i = frame with index i).

    Every episode's rows are checked: present, contiguous, and as long as the metadata says.
    """
    for key in keys:
        if key not in meta.features:
            raise SchemaMismatchError(f"feature {key!r} is not in dataset {meta.root}; it has {sorted(meta.features)}")
        if is_visual(meta.features[key]):
            raise ValueError(f"feature {key!r} is a camera; load it with the image cache, not load_numeric")
    n = meta.total_frames
    widths = {k: vector_width(meta.features[k]) for k in keys}
    out = {
        k: np.empty((n,) if widths[k] == 1 else (n, widths[k]), np.dtype(meta.features[k]["dtype"])) for k in keys
    }
    starts, ends = meta.episode_column("dataset_from_index"), meta.episode_column("dataset_to_index")
    lengths = meta.episode_lengths
    if np.any(ends - starts != lengths) or (len(ends) and ends.max() > n):
        raise DatasetFormatError(f"{meta.root / EPISODES_DIR}: episode from/to indices disagree with the lengths or "
                                 f"with total_frames={n} of info.json")
    filled = np.zeros(n, bool)
    for (chunk, file), eps in meta.episodes_by_file("data").items():
        path = meta.root / meta.info["data_path"].format(chunk_index=chunk, file_index=file)
        where = f"{path} ({describe_episodes(eps)})"
        if path.exists():
            meta.verify_file(path)
        table = read_parquet(path, describe_episodes(eps), columns=list(dict.fromkeys([*keys, "index", "episode_index"])))
        index = table.column("index").to_numpy()
        episode_index = table.column("episode_index").to_numpy()
        columns = {k: column_to_numpy(table.column(k), k, widths[k], where) for k in keys}
        order = np.argsort(index, kind="stable")
        sorted_index = index[order]
        for ep in eps:
            expected = np.arange(starts[ep], ends[ep])
            lo, hi = np.searchsorted(sorted_index, [starts[ep], ends[ep]])
            rows = order[lo:hi]
            if (
                hi - lo != len(expected)
                or not np.array_equal(sorted_index[lo:hi], expected)
                or np.any(episode_index[rows] != ep)
            ):
                raise CorruptFileError(
                    f"{path}: episode {ep} should hold frames with index {starts[ep]}..{ends[ep] - 1} "
                    f"({lengths[ep]} rows), found {int(np.sum(episode_index == ep))} rows"
                )
            for k in keys:
                out[k][starts[ep] : ends[ep]] = columns[k][rows]
            filled[starts[ep] : ends[ep]] = True
    if not filled.all():
        raise DatasetFormatError(f"{meta.root}: frames {np.flatnonzero(~filled)[:5].tolist()}... belong to no episode")
    return out
