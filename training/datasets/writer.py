"""Crash-safe LeRobot v3.0 recorder: appends whole episodes and commits them in atomic batches.

Each commit adds new files (data/, videos/<key>/ and meta/episodes/ at the next chunk/file index, several
episodes per file) and rewrites meta/info.json, meta/stats.json and meta/tasks.parquet, all through one
journaled commit (see atomic.Commit). An interrupted run therefore leaves either the previous commit or
the new one on disk, never a partial episode; episodes added since the last commit are lost and must be
recorded again, which the collector does deterministically from their seeds.

Every commit also rewrites meta/checksums.json (the sha256 of every file, see checksums.py), published with it. A
writer holds the dataset's lock (locks.DirectoryLock) from create/open to close/abort: a second writer stops at once.
"""

from __future__ import annotations

import json
import shutil
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from fileio.atomic import is_temp_name, write_json_atomic
from fileio.locks import LOCK_NAME, DirectoryLock

from . import atomic, checksums
from .format import (
    CODEBASE_VERSION,
    COLLECTION_PATH,
    DATA_PATH,
    DEFAULT_CHUNKS_SIZE,
    DEFAULT_DATA_FILES_SIZE_IN_MB,
    DEFAULT_VIDEO_FILES_SIZE_IN_MB,
    EPISODES_PATH,
    INDEX_FEATURES,
    INFO_PATH,
    STATS_PATH,
    STATS_STATE_PATH,
    TASKS_PATH,
    VIDEO_PATH,
    CorruptFileError,
    DatasetFormatError,
    SchemaMismatchError,
    arrow_type,
    chunk_file,
    image_layout,
    is_visual,
    vector_width,
)
from .image_cache import load_images
from .reader import DatasetMeta, load_numeric
from .stats import DEFAULT_RESERVOIR_SIZE, ImageStats, StatsAccumulator, episode_stats, stats_to_json
from .video import VideoConfig, VideoStreamWriter, codec_name, resolve_codec


def _tasks_table(tasks: list[str]) -> pa.Table:
    # pandas metadata makes pd.read_parquet (what LeRobot calls) return the frame indexed by task string.
    pandas_meta = {
        "index_columns": ["task"],
        "column_indexes": [
            {"name": None, "field_name": None, "pandas_type": "unicode", "numpy_type": "object", "metadata": {"encoding": "UTF-8"}}
        ],
        "columns": [
            {"name": "task_index", "field_name": "task_index", "pandas_type": "int64", "numpy_type": "int64", "metadata": None},
            {"name": "task", "field_name": "task", "pandas_type": "unicode", "numpy_type": "object", "metadata": None},
        ],
        "creator": {"library": "pyarrow", "version": pa.__version__},
        "pandas_version": "2.2.3",
    }
    table = pa.table({"task_index": pa.array(range(len(tasks)), pa.int64()), "task": pa.array(tasks, pa.string())})
    return table.replace_schema_metadata({b"pandas": json.dumps(pandas_meta).encode()})


def _stat_kinds(features: Mapping[str, Mapping[str, Any]]) -> dict[str, tuple[str, int]]:
    kinds = {}
    for key, ft in features.items():
        if is_visual(ft):
            kinds[key] = ("image", image_layout(key, ft)[2])
        elif ft["dtype"] != "string":
            kinds[key] = ("vector", vector_width(ft))
    return kinds


def _arrow_value_type(values: list[Any], name: str) -> pa.DataType:
    present = [v for v in values if v is not None]
    if not present:
        return pa.null()
    if all(isinstance(v, (bool, np.bool_)) for v in present):
        return pa.bool_()
    if all(isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) for v in present):
        return pa.int64()
    if all(isinstance(v, (int, float, np.integer, np.floating)) for v in present):
        return pa.float64()
    if all(isinstance(v, str) for v in present):
        return pa.string()
    raise ValueError(f"episode extra {name!r} must hold bool, int, float or str values, got {present[:3]}")


class DatasetWriter:
    """Records episodes into a LeRobot v3.0 dataset; use ``create`` for a new one, ``open`` to append/resume."""

    def __init__(self, root: Path, info: dict[str, Any], tasks: list[str], accumulator: StatsAccumulator,
                 positions: dict[str, int], commit_every: int, video: VideoConfig, lock: DirectoryLock,
                 files: dict[str, dict[str, Any]]):
        if commit_every < 1:
            raise ValueError(f"commit_every must be >= 1, got {commit_every}")
        self.root = Path(root)
        self._lock = lock
        self._files = files  # the checksum manifest as of the last commit
        self.info = info
        self.features: dict[str, dict[str, Any]] = info["features"]
        self.fps = int(info["fps"])
        self.user_keys = [k for k in self.features if k not in INDEX_FEATURES]
        self.video_keys = [k for k, ft in self.features.items() if ft["dtype"] == "video"]
        unsupported = [k for k, ft in self.features.items() if ft["dtype"] == "image"]
        if unsupported:
            raise DatasetFormatError(f"{root}: appending to 'image'-dtype (PNG-in-parquet) features {unsupported} is not supported")
        self.tasks = list(tasks)
        self.commit_every = commit_every
        self.video = video
        self._stat_kinds = _stat_kinds(self.features)
        self._stats = accumulator
        self._committed_stats = accumulator.copy()
        self._positions = dict(positions)  # next chunk/file position per file family ("data", "meta", video keys)
        self.committed_episodes = int(info["total_episodes"])
        self.committed_frames = int(info["total_frames"])
        self._pending: list[dict[str, Any]] = []
        self._pending_frames = 0
        self._commit: atomic.Commit | None = None
        self._videos: dict[str, VideoStreamWriter] = {}
        self._extra_names: list[str] = []

    # ---- construction ----------------------------------------------------------------------------------
    @classmethod
    def create(cls, root: str | Path, fps: int, features: Mapping[str, Mapping[str, Any]], *,
               robot_type: str | None = None, video: VideoConfig | None = None, commit_every: int = 10,
               reservoir_size: int = DEFAULT_RESERVOIR_SIZE, stats_seed: int = 0,
               collection: Mapping[str, Any] | None = None) -> DatasetWriter:
        """Start an empty dataset at ``root`` (which must not already hold one).

        ``features`` maps names (LeRobot keys, without the index columns) to {"dtype", "shape", "names"};
        cameras use dtype "video" and shape [H, W, 3]. ``collection`` is stored in meta/ for resume/replay.
        """
        root = Path(root)
        if (root / INFO_PATH).exists():
            raise FileExistsError(f"{root} already holds a dataset; open it with DatasetWriter.open to append")
        if commit_every < 1:
            raise ValueError(f"commit_every must be >= 1, got {commit_every}")
        if int(fps) != fps or fps <= 0:
            raise ValueError(f"fps must be a positive integer (LeRobot stores it as int), got {fps}")
        video = video or VideoConfig()
        full: dict[str, dict[str, Any]] = {}
        for key, ft in features.items():
            if key in INDEX_FEATURES:
                raise ValueError(f"feature {key!r} is filled by the writer; do not declare it")
            if "/" in key:
                raise ValueError(f"feature names cannot contain '/', got {key!r}")
            ft = {"dtype": ft["dtype"], "shape": [int(s) for s in ft["shape"]], "names": ft.get("names")}
            if ft["dtype"] == "video":
                h, w, c = image_layout(key, ft)
                if c != 3:
                    raise ValueError(f"camera {key!r} must have 3 channels, got shape {ft['shape']}")
                ft["names"] = ["height", "width", "channels"]
                ft["shape"] = [h, w, c]
                encoder = resolve_codec(video.codec)
                ft["info"] = {
                    "video.height": h, "video.width": w, "video.codec": codec_name(encoder),
                    "video.pix_fmt": video.pix_fmt, "video.is_depth_map": False, "video.fps": int(fps),
                    "video.channels": c, "has_audio": False,
                }
            elif ft["dtype"] == "image":
                raise ValueError(f"feature {key!r}: record cameras as dtype 'video' (PNG-in-parquet is read-only here)")
            else:
                arrow_type(key, ft)  # validates dtype and shape
            full[key] = ft
        full.update({k: dict(v) for k, v in INDEX_FEATURES.items()})
        info = {
            "codebase_version": CODEBASE_VERSION,
            "robot_type": robot_type,
            "total_episodes": 0,
            "total_frames": 0,
            "total_tasks": 0,
            "chunks_size": DEFAULT_CHUNKS_SIZE,
            "data_files_size_in_mb": DEFAULT_DATA_FILES_SIZE_IN_MB,
            "video_files_size_in_mb": DEFAULT_VIDEO_FILES_SIZE_IN_MB,
            "fps": int(fps),
            "splits": {},
            "data_path": DATA_PATH,
            "video_path": VIDEO_PATH if any(f["dtype"] == "video" for f in full.values()) else None,
            "features": full,
        }
        lock = DirectoryLock(root, "dataset").acquire()
        try:
            # Checked again under the lock: another writer may have created the dataset since the check above.
            if (root / INFO_PATH).exists():
                raise FileExistsError(f"{root} already holds a dataset; open it with DatasetWriter.open to append")
            ours = (atomic.STAGING_DIR, atomic.JOURNAL_NAME, LOCK_NAME)
            if any(p.name not in ours and not is_temp_name(p.name) for p in root.iterdir()):
                raise FileExistsError(f"{root} exists and is not empty; choose a new directory for the dataset")
            atomic.recover(root)
            if collection is not None:
                write_json_atomic(root / COLLECTION_PATH, dict(collection))
            write_json_atomic(root / INFO_PATH, info)
            files = checksums.compute(root, [INFO_PATH] + ([COLLECTION_PATH] if collection is not None else []))
            write_json_atomic(root / checksums.CHECKSUMS_PATH, checksums.manifest(files))
            accumulator = StatsAccumulator(_stat_kinds(full), reservoir_size=reservoir_size, seed=stats_seed)
            positions = {"data": 0, "meta": 0, **{k: 0 for k, f in full.items() if f["dtype"] == "video"}}
            return cls(root, info, [], accumulator, positions, commit_every, video, lock, files)
        except BaseException:
            lock.release()
            raise

    @classmethod
    def open(cls, root: str | Path, *, video: VideoConfig | None = None, commit_every: int = 10,
             reservoir_size: int = DEFAULT_RESERVOIR_SIZE) -> DatasetWriter:
        """Reopen a dataset to append episodes: finish/clean an interrupted commit, restore the stats state."""
        root = Path(root)
        if not (root / INFO_PATH).exists():
            raise FileNotFoundError(f"no dataset to append to at {root} (missing {INFO_PATH})")
        lock = DirectoryLock(root, "dataset").acquire()
        try:
            return cls._open_locked(root, lock, video, commit_every, reservoir_size)
        except BaseException:
            lock.release()
            raise

    @classmethod
    def _open_locked(cls, root: Path, lock: DirectoryLock, video: VideoConfig | None, commit_every: int,
                     reservoir_size: int) -> DatasetWriter:
        atomic.recover(root)
        meta = DatasetMeta(root)
        # Appending to a dataset that carries no checksums (LeRobot's) adopts its files as they are now.
        files = dict(meta.checksums) if meta.checksums is not None else checksums.compute(
            root, checksums.dataset_files(root))
        info = json.loads((root / INFO_PATH).read_text())
        if video is None:
            video = VideoConfig()
            codecs = {ft["info"]["video.codec"] for ft in info["features"].values() if ft["dtype"] == "video" and "info" in ft}
            if codecs == {"h264"}:
                video.codec = "libx264"
        positions = {"data": 0, "meta": 0, **{k: 0 for k in meta.video_keys}}
        chunks = int(info.get("chunks_size", DEFAULT_CHUNKS_SIZE))
        if meta.total_episodes:
            def next_position(prefix: str) -> int:
                c, f = meta.episode_column(f"{prefix}/chunk_index"), meta.episode_column(f"{prefix}/file_index")
                return int((c * chunks + f).max()) + 1

            positions["data"] = next_position("data")
            for key in meta.video_keys:
                positions[key] = next_position(f"videos/{key}")
            if "meta/episodes/chunk_index" in meta.episodes.column_names:
                positions["meta"] = next_position("meta/episodes")
            else:
                files = sorted((root / "meta/episodes").glob("chunk-*/file-*.parquet"))
                positions["meta"] = max(int(p.parent.name[6:]) * chunks + int(p.stem[5:]) for p in files) + 1
        accumulator = cls._restore_stats(meta, reservoir_size)
        return cls(root, info, meta.tasks, accumulator, positions, commit_every, video, lock, files)

    @staticmethod
    def _restore_stats(meta: DatasetMeta, reservoir_size: int) -> StatsAccumulator:
        kinds = _stat_kinds(meta.features)
        state_path = meta.root / STATS_STATE_PATH
        if state_path.exists():
            meta.verify_file(state_path)
            try:
                acc = StatsAccumulator.from_npz(state_path)
            except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile) as err:
                raise CorruptFileError(f"cannot read the running statistics {state_path} ({type(err).__name__}: "
                                       f"{err}); delete it to rebuild them from the data") from err
            counts = {k: (s.count if hasattr(s, "count") else s.frames) for k, s in acc.stats.items()}
            if set(acc.stats) == set(kinds) and all(c == meta.total_frames for c in counts.values()):
                return acc
        # No (or stale) running state, e.g. a dataset recorded by LeRobot: rebuild it in one pass.
        acc = StatsAccumulator(kinds, reservoir_size=reservoir_size)
        if meta.total_episodes == 0:
            return acc
        numeric = load_numeric(meta, [k for k, (kind, _) in kinds.items() if kind == "vector"])
        images = {k: load_images(meta, k, in_memory=True) for k, (kind, _) in kinds.items() if kind == "image"}
        starts, ends = meta.episode_column("dataset_from_index"), meta.episode_column("dataset_to_index")
        for s, e in zip(starts, ends):
            episode = {k: v[s:e] for k, v in numeric.items()}
            episode.update({k: v[s:e].transpose(0, 2, 3, 1) for k, v in images.items()})
            acc.update(episode)
        return acc

    # ---- recording -------------------------------------------------------------------------------------
    @property
    def num_episodes(self) -> int:
        """Episodes committed plus episodes waiting for the next commit."""
        return self.committed_episodes + len(self._pending)

    def _validate(self, frames: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        missing = [k for k in self.user_keys if k not in frames]
        extra = [k for k in frames if k not in self.user_keys]
        if missing or extra:
            raise SchemaMismatchError(
                f"episode keys do not match the dataset features: missing {missing}, unexpected {extra}"
            )
        lengths = {k: len(np.asarray(v)) for k, v in frames.items()}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"all features of an episode need the same number of frames, got {lengths}")
        n = next(iter(lengths.values()))
        if n == 0:
            raise ValueError("an episode needs at least one frame")
        out = {}
        for key in self.user_keys:
            ft = self.features[key]
            x = np.asarray(frames[key])
            if ft["dtype"] == "video":
                expected = (n, *image_layout(key, ft))
                if x.dtype != np.uint8 or x.shape != expected:
                    raise SchemaMismatchError(
                        f"camera {key!r}: expected uint8 frames of shape {expected} (T, H, W, C), got {x.dtype} {x.shape}"
                    )
            else:
                width = vector_width(ft)
                expected = (n,) if width == 1 else (n, width)
                if x.shape not in (expected, (n, width)):
                    raise SchemaMismatchError(f"feature {key!r}: expected shape {expected}, got {x.shape}")
                if np.issubdtype(np.dtype(ft["dtype"]), np.floating) and not np.all(np.isfinite(x)):
                    bad = int(np.flatnonzero(~np.isfinite(x.reshape(n, -1)).all(1))[0])
                    raise ValueError(f"feature {key!r} holds NaN/inf at frame {bad}")
                x = x.reshape(expected).astype(ft["dtype"], copy=False)
            out[key] = x
        return out

    def add_episode(self, frames: Mapping[str, np.ndarray], task: str, extra: Mapping[str, Any] | None = None) -> int:
        """Append one whole episode; returns its episode index. Commits every ``commit_every`` episodes.

        ``frames`` maps each declared feature to its per-frame values (cameras uint8 (T, H, W, 3)).
        ``extra`` adds per-episode columns to meta/episodes (e.g. the env seed and success).
        """
        if not self._lock.held:
            raise ValueError(f"{self.root}: this writer was closed or aborted and no longer holds the dataset's lock; "
                             "reopen the dataset with DatasetWriter.open to append")
        arrays = self._validate(frames)
        extra = dict(extra or {})
        for name in extra:
            if name in ("episode_index", "tasks", "length") or "/" in name:
                raise ValueError(f"episode extra {name!r} collides with a LeRobot episode column")
        n = len(next(iter(arrays.values())))
        episode_index = self.num_episodes
        start = self.committed_frames + self._pending_frames
        if task not in self.tasks:
            self.tasks.append(task)
        arrays["timestamp"] = (np.arange(n) / self.fps).astype(np.float32)
        arrays["frame_index"] = np.arange(n, dtype=np.int64)
        arrays["episode_index"] = np.full(n, episode_index, np.int64)
        arrays["index"] = np.arange(start, start + n, dtype=np.int64)
        arrays["task_index"] = np.full(n, self.tasks.index(task), np.int64)

        if self._commit is None:
            self._commit = atomic.Commit(self.root)
        chunks = int(self.info["chunks_size"])
        row: dict[str, Any] = {"episode_index": episode_index, "tasks": [task], "length": n}
        data_chunk, data_file = chunk_file(self._positions["data"], chunks)
        row.update({"data/chunk_index": data_chunk, "data/file_index": data_file,
                    "dataset_from_index": start, "dataset_to_index": start + n})
        for key in self.video_keys:
            chunk, file = chunk_file(self._positions[key], chunks)
            writer = self._videos.get(key)
            if writer is None:
                h, w, _ = image_layout(key, self.features[key])
                rel = VIDEO_PATH.format(video_key=key, chunk_index=chunk, file_index=file)
                writer = self._videos[key] = VideoStreamWriter(self._commit.path(rel), self.fps, h, w, self.video)
            row[f"videos/{key}/chunk_index"] = chunk
            row[f"videos/{key}/file_index"] = file
            row[f"videos/{key}/from_timestamp"] = writer.frames / self.fps
            writer.write(arrays[key])
            row[f"videos/{key}/to_timestamp"] = writer.frames / self.fps
        meta_chunk, meta_file = chunk_file(self._positions["meta"], chunks)
        row.update({"meta/episodes/chunk_index": meta_chunk, "meta/episodes/file_index": meta_file})
        kinds = {k: kind for k, (kind, _) in self._stat_kinds.items()}
        per_episode = episode_stats(kinds, arrays)
        for key, acc in per_episode.items():
            for name, value in acc.result().items():
                row[f"stats/{key}/{name}"] = np.asarray(value).tolist()
        for name in extra:
            if name not in self._extra_names:
                self._extra_names.append(name)
        row["__extra__"] = extra
        self._stats.update(arrays, images={k: a for k, a in per_episode.items() if isinstance(a, ImageStats)})
        self._pending.append({"arrays": {k: v for k, v in arrays.items() if self.features[k]["dtype"] != "video"}, "row": row})
        self._pending_frames += n
        if len(self._pending) >= self.commit_every:
            self.commit()
        return episode_index

    # ---- committing ------------------------------------------------------------------------------------
    def _data_table(self) -> tuple[pa.Schema, list[pa.Table]]:
        keys = [k for k in self.features if self.features[k]["dtype"] != "video"]
        schema = pa.schema([(k, arrow_type(k, self.features[k])) for k in keys])
        tables = []
        for episode in self._pending:
            columns = []
            for k in keys:
                x = episode["arrays"][k]
                if x.ndim == 1:
                    columns.append(pa.array(x, schema.field(k).type))
                else:
                    columns.append(pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), x.shape[1]))
            tables.append(pa.Table.from_arrays(columns, schema=schema))
        return schema, tables

    def _episodes_table(self) -> pa.Table:
        rows = [p["row"] for p in self._pending]
        columns: dict[str, list[Any]] = {}
        for r in rows:
            for k, v in r.items():
                if k != "__extra__":
                    columns.setdefault(k, []).append(v)
        for name in self._extra_names:
            columns[name] = [r["__extra__"].get(name) for r in rows]
        arrays = {}
        for k, values in columns.items():
            if k == "tasks":
                arrays[k] = pa.array(values, pa.list_(pa.string()))
            elif k.startswith("videos/") and k.endswith("timestamp"):
                arrays[k] = pa.array(values, pa.float64())
            elif k in self._extra_names:
                arrays[k] = pa.array(values, _arrow_value_type(values, k))
            elif k.startswith("stats/"):
                arrays[k] = pa.array(values)
            else:
                arrays[k] = pa.array(values, pa.int64())
        return pa.table(arrays)

    def commit(self) -> None:
        """Atomically publish every pending episode (no-op when none is pending)."""
        if not self._pending:
            return
        assert self._commit is not None
        commit = self._commit
        chunks = int(self.info["chunks_size"])
        order: list[str] = []
        data_rel = DATA_PATH.format(**dict(zip(("chunk_index", "file_index"), chunk_file(self._positions["data"], chunks))))
        schema, tables = self._data_table()
        # One row group per episode keeps episodes individually addressable inside a multi-episode file.
        with pq.ParquetWriter(commit.path(data_rel), schema, compression="snappy") as pw:
            for t in tables:
                pw.write_table(t)
        order.append(data_rel)
        for key, writer in self._videos.items():
            writer.close()
            order.append(str(writer.path.relative_to(commit.staging)))
        meta_rel = EPISODES_PATH.format(**dict(zip(("chunk_index", "file_index"), chunk_file(self._positions["meta"], chunks))))
        pq.write_table(self._episodes_table(), commit.path(meta_rel))
        order.append(meta_rel)
        pq.write_table(_tasks_table(self.tasks), commit.path(TASKS_PATH))
        order.append(TASKS_PATH)
        commit.path(STATS_STATE_PATH).write_bytes(self._stats.to_npz_bytes())
        order.append(STATS_STATE_PATH)
        commit.path(STATS_PATH).write_text(json.dumps(stats_to_json(self._stats.result()), indent=4))
        order.append(STATS_PATH)
        total_episodes = self.committed_episodes + len(self._pending)
        total_frames = self.committed_frames + self._pending_frames
        info = dict(self.info)
        info.update({"total_episodes": total_episodes, "total_frames": total_frames,
                     "total_tasks": len(self.tasks), "splits": {"train": f"0:{total_episodes}"}})
        commit.path(INFO_PATH).write_text(json.dumps(info, indent=4))
        files = dict(self._files)
        files.update(checksums.compute(commit.staging, order + [INFO_PATH]))
        commit.path(checksums.CHECKSUMS_PATH).write_text(json.dumps(checksums.manifest(files), indent=1))
        order.append(checksums.CHECKSUMS_PATH)
        order.append(INFO_PATH)  # last: info.json is what marks the new episodes as part of the dataset
        commit.apply(order)
        self._files = files

        self.info = info
        self.committed_episodes, self.committed_frames = total_episodes, total_frames
        for family in ("data", "meta", *self._videos):
            self._positions[family] += 1
        self._pending, self._pending_frames, self._videos, self._commit = [], 0, {}, None
        self._committed_stats = self._stats.copy()

    def abort(self) -> None:
        """Drop every pending (uncommitted) episode and release the lock; the dataset stays as of the last commit."""
        for writer in self._videos.values():
            writer.abort()
        if self._commit is not None:
            self._commit.abort()
        staging = self.root / atomic.STAGING_DIR
        if staging.exists() and not any(staging.iterdir()):
            shutil.rmtree(staging, ignore_errors=True)
        self._pending, self._pending_frames, self._videos, self._commit = [], 0, {}, None
        self._stats = self._committed_stats.copy()
        self.tasks = self.tasks[: int(self.info["total_tasks"])]
        self._lock.release()

    def close(self) -> None:
        """Commit what is pending and release the dataset's lock (the writer cannot be used afterwards)."""
        try:
            self.commit()
        finally:
            self._lock.release()

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
