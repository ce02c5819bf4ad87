"""Camera frames decoded once into a uint8 (N, C, H, W) array, memory-mapped from a .npy in the user's cache directory.

The cache never lives in the dataset folder (datasets can be read-only, shared or on a network disk). Its entries
are keyed by the dataset's checksums, so a dataset copied elsewhere reuses its cache and a changed dataset never
does; datasets without checksums (LeRobot's) are keyed by their files' location, size and modification time.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import logging
import os
from pathlib import Path

import numpy as np

from fileio.atomic import is_dead_temp, temp_path, write_json_atomic

from .format import CorruptFileError, DatasetFormatError, image_layout
from .reader import DatasetMeta, column_to_numpy, describe_episodes, read_parquet
from .video import decode_video

CACHE_ENV = "CEREBELLUM_CACHE_DIR"
DECODED_DIR = "decoded"
_FORMAT = "cerebellum.image_cache/1"

log = logging.getLogger(__name__)


def cache_root(override: str | os.PathLike | None = None) -> Path:
    """Where cerebellum caches derived data: ``override``, else $CEREBELLUM_CACHE_DIR, else
    $XDG_CACHE_HOME/cerebellum, else ~/.cache/cerebellum."""
    if override:
        return Path(override).expanduser()
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / "cerebellum"


def _source_files(meta: DatasetMeta, key: str) -> list[str]:
    if meta.features[key]["dtype"] == "video":
        groups = meta.episodes_by_file(f"videos/{key}")
        return [meta.info["video_path"].format(video_key=key, chunk_index=c, file_index=f) for (c, f) in sorted(groups)]
    return [meta.info["data_path"].format(chunk_index=c, file_index=f) for (c, f) in sorted(meta.episodes_by_file())]


def _fingerprint(meta: DatasetMeta, key: str) -> dict:
    """What the cache entry is built from; any change to the frames' source files or episodes changes it."""
    ft = meta.features[key]
    episodes = meta.episodes.select([c for c in meta.episodes.column_names
                                     if c in ("dataset_from_index", "length") or c.startswith(f"videos/{key}/")])
    layout = hashlib.sha256(json.dumps(episodes.to_pydict(), sort_keys=True, default=str).encode()).hexdigest()
    files: dict[str, object] = {}
    for rel in _source_files(meta, key):
        if meta.checksums is not None and rel in meta.checksums:
            files[rel] = meta.checksums[rel]["sha256"]
        else:
            path = (meta.root / rel).resolve()
            st = path.stat() if path.exists() else None
            files[rel] = [str(path), st.st_size, st.st_mtime_ns] if st else None
    return {"format": _FORMAT, "key": key, "dtype": ft["dtype"], "shape": [int(s) for s in ft["shape"]],
            "fps": meta.fps, "total_frames": meta.total_frames, "episodes": layout, "files": files}


def cache_entry(meta: DatasetMeta, key: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """The .npy path that holds (or will hold) the decoded frames of ``key``."""
    digest = hashlib.sha256(json.dumps(_fingerprint(meta, key), sort_keys=True).encode()).hexdigest()
    return cache_root(cache_dir) / DECODED_DIR / f"{digest[:40]}.npy"


def _fill_from_video(meta: DatasetMeta, key: str, out: np.ndarray) -> None:
    h, w, c = image_layout(key, meta.features[key])
    starts = meta.episode_column("dataset_from_index")
    lengths = meta.episode_lengths
    from_ts = meta.episode_column(f"videos/{key}/from_timestamp")
    for (chunk, file), eps in sorted(meta.episodes_by_file(f"videos/{key}").items()):
        path = meta.root / meta.info["video_path"].format(video_key=key, chunk_index=chunk, file_index=file)
        first_frame = {ep: int(round(float(from_ts[ep]) * meta.fps)) for ep in eps}
        needed = max(first_frame[ep] + int(lengths[ep]) for ep in eps)
        if path.exists():
            meta.verify_file(path)
        frames = decode_video(path, meta.fps, needed, context=f"key {key!r}, {describe_episodes(eps)}")
        if frames.shape[1:] != (h, w, c):
            raise DatasetFormatError(
                f"{path} (key {key!r}): decoded frames are {frames.shape[1:]} (H, W, C), "
                f"info.json declares {(h, w, c)}"
            )
        for ep in eps:
            clip = frames[first_frame[ep] : first_frame[ep] + int(lengths[ep])]
            out[starts[ep] : starts[ep] + int(lengths[ep])] = clip.transpose(0, 3, 1, 2)


def _fill_from_parquet_images(meta: DatasetMeta, key: str, out: np.ndarray) -> None:
    # LeRobot "image" features keep PNG/JPEG bytes inside the data parquet ({"bytes", "path"} structs).
    from PIL import Image

    h, w, c = image_layout(key, meta.features[key])
    for (chunk, file), eps in meta.episodes_by_file().items():
        path = meta.root / meta.info["data_path"].format(chunk_index=chunk, file_index=file)
        if path.exists():
            meta.verify_file(path)
        table = read_parquet(path, describe_episodes(eps), columns=[key, "index"])
        index = column_to_numpy(table.column("index"), "index", 1, str(path))
        for row, cell in zip(index, table.column(key).to_pylist()):
            try:
                img = np.asarray(Image.open(io.BytesIO(cell["bytes"])).convert("RGB"))
            except Exception as err:
                raise CorruptFileError(f"{path}: image {key!r} of frame index {row} cannot be decoded ({err})") from err
            if img.shape != (h, w, c):
                raise DatasetFormatError(f"{path}: image {key!r} of frame {row} is {img.shape}, expected {(h, w, c)}")
            out[row] = img.transpose(2, 0, 1)


def _open_cached(npy: Path, shape: tuple[int, ...]) -> np.ndarray | None:
    try:
        cached = np.load(npy, mmap_mode="r")
    except (ValueError, OSError):
        return None  # missing or unreadable: rebuilt
    return cached if cached.shape == shape and cached.dtype == np.uint8 else None


def _remove_dead_temps(directory: Path) -> None:
    for tmp in directory.glob(".*.tmp"):
        if is_dead_temp(tmp.name):
            tmp.unlink(missing_ok=True)


def load_images(meta: DatasetMeta, key: str, in_memory: bool = False,
                cache_dir: str | os.PathLike | None = None) -> np.ndarray:
    """uint8 (total_frames, C, H, W) frames of one camera, decoded at most once per dataset version.

    Decoded frames are cached under ``cache_root(cache_dir)/decoded/`` and memory-mapped read-only; nothing is ever
    written into the dataset folder. ``in_memory`` (or a cache directory that cannot be written) decodes into RAM
    instead. Two processes building the same entry at once do not race: the second waits for the first.
    """
    if key not in meta.features or meta.features[key]["dtype"] not in ("video", "image"):
        raise DatasetFormatError(f"{key!r} is not a camera feature of {meta.root}; cameras: {meta.camera_keys}")
    h, w, c = image_layout(key, meta.features[key])
    shape = (meta.total_frames, c, h, w)
    fill = _fill_from_video if meta.features[key]["dtype"] == "video" else _fill_from_parquet_images
    if in_memory:
        out = np.empty(shape, np.uint8)
        fill(meta, key, out)
        return out
    npy = cache_entry(meta, key, cache_dir)
    cached = _open_cached(npy, shape)
    if cached is not None:
        return cached
    try:
        npy.parent.mkdir(parents=True, exist_ok=True)
        lock_fd = os.open(npy.with_suffix(".lock"), os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        log.warning("image cache directory %s is not writable (%s); decoding %s into memory", npy.parent, err, key)
        out = np.empty(shape, np.uint8)
        fill(meta, key, out)
        return out
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX)  # blocking: another process building this entry finishes it for us
        cached = _open_cached(npy, shape)
        if cached is not None:
            return cached
        _remove_dead_temps(npy.parent)
        write_json_atomic(npy.with_suffix(".json"), {**_fingerprint(meta, key), "dataset": str(meta.root.resolve())})
        tmp = temp_path(npy)
        try:
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
            fill(meta, key, out)
            out.flush()
            del out
            # Not fileio.write_atomic: no fsync, since an entry lost in a crash is rebuilt and syncing gigabytes of
            # frames would cost seconds.
            os.replace(tmp, npy)
        finally:
            tmp.unlink(missing_ok=True)
    finally:
        fcntl.flock(lock_fd, fcntl.LOCK_UN)
        os.close(lock_fd)
    return np.load(npy, mmap_mode="r")
