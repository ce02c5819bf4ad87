"""Full integrity check of a dataset on disk (scripts/inspect_dataset.py --verify): every problem found, one per line.

Checked: the checksum manifest (every listed file present and matching, no unlisted file), info.json, the episode
table (indices 0..N-1, contiguous from/to ranges, lengths, totals), every data file (readable, columns and their
types and widths against info.json, rows per episode, index / frame_index / episode_index continuity, timestamps,
task indices, NaN or inf values), every video file (frame count from the container's packets, without decoding, and
the frame size) and stats.json (finite values, known features).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from . import checksums
from .format import INFO_PATH, STATS_PATH, arrow_type, image_layout, is_visual, vector_width
from .reader import DatasetMeta, read_json, read_parquet


@dataclass
class Report:
    root: Path
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    files_checked: int = 0
    episodes: int = 0
    frames: int = 0

    def problem(self, where: Path | str, message: str) -> None:
        self.problems.append(f"{where}: {message}")

    @property
    def ok(self) -> bool:
        return not self.problems

    def lines(self) -> list[str]:
        out = [f"problem: {p}" for p in self.problems] + [f"note: {n}" for n in self.notes]
        if self.ok:
            out.append(f"ok: {self.root}: {self.files_checked} files, {self.episodes} episodes, {self.frames} frames "
                       "verified (checksums, schema, frame counts, index continuity, finite values, videos)")
        else:
            out.append(f"summary: {len(self.problems)} problem(s) in {self.root} ({self.files_checked} files checked)")
        return out


def verify_dataset(root: str | Path) -> Report:
    """Check everything; raises FileNotFoundError only when ``root`` is not a dataset at all (no meta/info.json)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset directory does not exist: {root}")
    if not (root / INFO_PATH).is_file():
        raise FileNotFoundError(f"{root} is not a LeRobot dataset: {INFO_PATH} is missing")
    report = Report(root)
    _check_checksums(root, report)
    try:
        meta = DatasetMeta(root, verify=False)
    except (ValueError, OSError) as err:
        report.problem(root, f"metadata cannot be read: {err}")
        return report
    report.episodes, report.frames = meta.total_episodes, meta.total_frames
    if not _check_episode_table(meta, report):
        return report
    _check_data_files(meta, report)
    for key in meta.video_keys:
        _check_videos(meta, key, report)
    _check_stats(meta, report)
    return report


def _check_checksums(root: Path, report: Report) -> None:
    try:
        files = checksums.read_manifest(root)
    except ValueError as err:
        report.problem(root / checksums.CHECKSUMS_PATH, str(err))
        return
    on_disk = checksums.dataset_files(root)
    report.files_checked = len(on_disk)
    if files is None:
        report.notes.append(f"{root} carries no checksums ({checksums.CHECKSUMS_PATH}); file contents are checked "
                            "structurally only")
        return
    checksums.clear_cache()  # a verification hashes what is on disk now
    for rel, expected in files.items():
        try:
            checksums.verify_file(root, rel, expected)
        except (ValueError, FileNotFoundError) as err:
            report.problems.append(str(err))
    for rel in on_disk:
        if rel not in files:
            report.problem(root / rel, f"not listed in {checksums.CHECKSUMS_PATH} (stray or foreign file)")


def _check_episode_table(meta: DatasetMeta, report: Report) -> bool:
    where = meta.root / "meta/episodes"
    if meta.total_episodes == 0:
        if meta.total_frames:
            report.problem(meta.root / INFO_PATH, f"total_frames={meta.total_frames} with no episode")
        return False
    starts = meta.episode_column("dataset_from_index").astype(np.int64)
    ends = meta.episode_column("dataset_to_index").astype(np.int64)
    lengths = meta.episode_lengths
    ok = True
    if starts[0] != 0:
        report.problem(where, f"episode 0 starts at frame index {starts[0]}, expected 0")
        ok = False
    bad = np.flatnonzero(ends - starts != lengths)
    for ep in bad[:5]:
        report.problem(where, f"episode {ep}: from/to {starts[ep]}..{ends[ep]} disagree with length {lengths[ep]}")
    gaps = np.flatnonzero(starts[1:] != ends[:-1])
    for i in gaps[:5]:
        report.problem(where, f"episode {i + 1} starts at frame index {starts[i + 1]}, episode {i} ends at {ends[i]}"
                              " (frame indices must be contiguous)")
    if ends[-1] != meta.total_frames or int(lengths.sum()) != meta.total_frames:
        report.problem(meta.root / INFO_PATH, f"total_frames={meta.total_frames}, the episodes hold "
                                              f"{int(lengths.sum())} frames ending at index {ends[-1]}")
        ok = False
    return ok and not len(bad) and not len(gaps)


def _type_ok(actual: pa.DataType, expected: pa.DataType) -> bool:
    if actual == expected:
        return True
    # LeRobot's own writer stores vectors as variable-length lists; the width is checked on the values.
    lists = (pa.types.is_list, pa.types.is_large_list, pa.types.is_fixed_size_list)
    if any(f(actual) for f in lists) and any(f(expected) for f in lists):
        return actual.value_type == expected.value_type
    return False


def _check_data_files(meta: DatasetMeta, report: Report) -> None:
    keys = [k for k, ft in meta.features.items() if not is_visual(ft) and ft["dtype"] != "string"]
    starts, ends = meta.episode_column("dataset_from_index"), meta.episode_column("dataset_to_index")
    total_rows = 0
    for (chunk, file), eps in sorted(meta.episodes_by_file("data").items()):
        path = meta.root / meta.info["data_path"].format(chunk_index=chunk, file_index=file)
        try:
            table = read_parquet(path, f"episodes {eps[0]}..{eps[-1]}")
        except (ValueError, OSError) as err:
            report.problems.append(str(err))
            continue
        total_rows += table.num_rows
        columns: dict[str, np.ndarray] = {}
        for key in keys:
            if key not in table.column_names:
                report.problem(path, f"column {key!r} of info.json is missing")
                continue
            expected = arrow_type(key, meta.features[key])
            column = table.column(key).combine_chunks()
            if not _type_ok(column.type, expected):
                report.problem(path, f"column {key!r} is {column.type}, info.json declares {expected}")
                continue
            width = vector_width(meta.features[key])
            if pa.types.is_list(column.type) or pa.types.is_large_list(column.type) or \
                    pa.types.is_fixed_size_list(column.type):
                values = column.flatten().to_numpy(zero_copy_only=False)
                if len(values) != len(column) * width:
                    report.problem(path, f"column {key!r} holds {len(values) / max(len(column), 1):g} values per "
                                         f"frame, info.json declares shape ({width},)")
                    continue
                columns[key] = values.reshape(len(column), width)
            else:
                columns[key] = column.to_numpy(zero_copy_only=False)
        if not {"index", "episode_index", "frame_index"} <= set(columns):
            continue
        index, episode_index = columns["index"], columns["episode_index"]
        strays = sorted(set(np.unique(episode_index).tolist()) - set(eps))
        if strays:
            report.problem(path, f"holds rows of episodes {strays[:5]} that the episode table places elsewhere")
        for ep in eps:
            rows = np.flatnonzero(episode_index == ep)
            n = int(ends[ep] - starts[ep])
            if len(rows) != n:
                report.problem(path, f"episode {ep}: {len(rows)} rows, the episode table says {n}")
                continue
            if not np.array_equal(index[rows], np.arange(starts[ep], ends[ep])):
                report.problem(path, f"episode {ep}: index is not {starts[ep]}..{ends[ep] - 1} in order")
            if not np.array_equal(columns["frame_index"][rows], np.arange(n)):
                report.problem(path, f"episode {ep}: frame_index is not 0..{n - 1} in order")
            if "timestamp" in columns:
                drift = np.abs(columns["timestamp"][rows] - np.arange(n) / meta.fps)
                if drift.size and drift.max() > 1e-3:
                    at = int(np.argmax(drift))
                    report.problem(path, f"episode {ep}: timestamp of frame {at} is "
                                         f"{columns['timestamp'][rows][at]:.6g}, expected {at / meta.fps:.6g}")
            for key, values in columns.items():
                if values.dtype.kind == "f":
                    finite = np.isfinite(values[rows].reshape(len(rows), -1)).all(axis=1)
                    if not finite.all():
                        report.problem(path, f"episode {ep}: {key!r} holds NaN or inf at frame "
                                             f"{int(np.flatnonzero(~finite)[0])} ({int((~finite).sum())} frames)")
        if "task_index" in columns and len(columns["task_index"]):
            bad = (columns["task_index"] < 0) | (columns["task_index"] >= len(meta.tasks))
            if bad.any():
                report.problem(path, f"task_index {int(columns['task_index'][bad][0])} is not one of the "
                                     f"{len(meta.tasks)} tasks")
    if total_rows != meta.total_frames:
        report.problem(meta.root / "data", f"the data files hold {total_rows} rows, info.json declares total_frames="
                                           f"{meta.total_frames}")


def _check_videos(meta: DatasetMeta, key: str, report: Report) -> None:
    import av

    h, w, _ = image_layout(key, meta.features[key])
    from_ts = meta.episode_column(f"videos/{key}/from_timestamp")
    lengths = meta.episode_lengths
    for (chunk, file), eps in sorted(meta.episodes_by_file(f"videos/{key}").items()):
        path = meta.root / meta.info["video_path"].format(video_key=key, chunk_index=chunk, file_index=file)
        needed = max(int(round(float(from_ts[ep]) * meta.fps)) + int(lengths[ep]) for ep in eps)
        if not path.is_file():
            report.problem(path, f"video of {key!r} (episodes {eps[0]}..{eps[-1]}) is missing")
            continue
        try:
            with av.open(str(path)) as container:
                if not container.streams.video:
                    report.problem(path, "has no video stream")
                    continue
                stream = container.streams.video[0]
                size = (stream.codec_context.height, stream.codec_context.width)
                frames = sum(1 for packet in container.demux(stream) if packet.size)
        except (av.error.FFmpegError, OSError, UnicodeDecodeError) as err:  # PyAV decodes corrupt metadata as text
            report.problem(path, f"cannot be read as a video ({err})")
            continue
        if size != (h, w):
            report.problem(path, f"frames are {size[0]}x{size[1]}, info.json declares {h}x{w} for {key!r}")
        if frames < needed:
            report.problem(path, f"holds {frames} frames, episodes {eps[0]}..{eps[-1]} need {needed}")


def _check_stats(meta: DatasetMeta, report: Report) -> None:
    path = meta.root / STATS_PATH
    if not path.exists():
        report.notes.append(f"{path} is missing (policies need the normalization statistics)")
        return
    try:
        stats = read_json(path, "stats")
    except (ValueError, OSError) as err:
        report.problems.append(str(err))
        return
    if not isinstance(stats, dict):
        report.problem(path, f"expected a JSON object, got {type(stats).__name__}")
        return
    for key, entry in stats.items():
        if key not in meta.features:
            report.problem(path, f"statistics for {key!r}, which is not a feature of info.json")
            continue
        if not isinstance(entry, dict):
            report.problem(path, f"statistics of {key!r} must be an object")
            continue
        for name, value in entry.items():
            try:
                arr = np.asarray(value, np.float64)
            except (TypeError, ValueError):
                report.problem(path, f"{key}/{name} is not numeric")
                continue
            if not np.isfinite(arr).all():
                report.problem(path, f"{key}/{name} holds NaN or inf")

