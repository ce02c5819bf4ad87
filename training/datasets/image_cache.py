"""Camera frames decoded once into a uint8 (N, C, H, W) array, memory-mapped from a .npy beside the dataset."""

from __future__ import annotations

import hashlib
import io
import json
import os
import uuid
from pathlib import Path

import numpy as np

from .atomic import write_json_atomic
from .format import CorruptFileError, DatasetFormatError, image_layout
from .reader import DatasetMeta, column_to_numpy, describe_episodes, read_parquet
from .video import decode_video

CACHE_DIR = ".cache/decoded"


def _fingerprint(meta: DatasetMeta, key: str) -> dict:
    """What the cache was built from; any change to the dataset's files or episodes invalidates it."""
    if meta.features[key]["dtype"] == "video":
        groups = meta.episodes_by_file(f"videos/{key}")
        files = [
            meta.info["video_path"].format(video_key=key, chunk_index=c, file_index=f) for (c, f) in sorted(groups)
        ]
    else:
        files = [meta.info["data_path"].format(chunk_index=c, file_index=f) for (c, f) in sorted(meta.episodes_by_file())]
    stamp = {}
    for rel in files:
        path = meta.root / rel
        st = path.stat() if path.exists() else None
        stamp[rel] = [st.st_size, st.st_mtime_ns] if st else None
    episodes = hashlib.sha1(meta.episode_column("dataset_from_index").tobytes()).hexdigest()
    return {"key": key, "total_frames": meta.total_frames, "files": stamp, "episodes": episodes}


def _cache_paths(meta: DatasetMeta, key: str) -> tuple[Path, Path]:
    base = meta.root / CACHE_DIR
    return base / f"{key}.npy", base / f"{key}.json"


def _fill_from_video(meta: DatasetMeta, key: str, out: np.ndarray) -> None:
    h, w, c = image_layout(key, meta.features[key])
    starts = meta.episode_column("dataset_from_index")
    lengths = meta.episode_lengths
    from_ts = meta.episode_column(f"videos/{key}/from_timestamp")
    for (chunk, file), eps in sorted(meta.episodes_by_file(f"videos/{key}").items()):
        path = meta.root / meta.info["video_path"].format(video_key=key, chunk_index=chunk, file_index=file)
        first_frame = {ep: int(round(float(from_ts[ep]) * meta.fps)) for ep in eps}
        needed = max(first_frame[ep] + int(lengths[ep]) for ep in eps)
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


def load_images(meta: DatasetMeta, key: str, in_memory: bool = False) -> np.ndarray:
    """uint8 (total_frames, C, H, W) frames of one camera, decoded at most once per dataset version.

    The cache lives in ``<dataset>/.cache/decoded/<key>.npy`` and is memory-mapped read-only; it is rebuilt
    when the dataset's files change. ``in_memory`` (or a read-only dataset directory) decodes into RAM instead.
    """
    if key not in meta.features or meta.features[key]["dtype"] not in ("video", "image"):
        raise DatasetFormatError(f"{key!r} is not a camera feature of {meta.root}; cameras: {meta.camera_keys}")
    h, w, c = image_layout(key, meta.features[key])
    shape = (meta.total_frames, c, h, w)
    fill = _fill_from_video if meta.features[key]["dtype"] == "video" else _fill_from_parquet_images
    npy, stamp_path = _cache_paths(meta, key)
    fingerprint = _fingerprint(meta, key)
    if not in_memory and npy.exists() and stamp_path.exists():
        try:
            if json.loads(stamp_path.read_text()) == fingerprint:
                cached = np.load(npy, mmap_mode="r")
                if cached.shape == shape and cached.dtype == np.uint8:
                    return cached
        except (ValueError, OSError, json.JSONDecodeError):
            pass  # an unreadable cache is simply rebuilt
    if in_memory or not os.access(meta.root, os.W_OK):
        out = np.empty(shape, np.uint8)
        fill(meta, key, out)
        return out
    npy.parent.mkdir(parents=True, exist_ok=True)
    tmp = npy.with_name(f".{npy.name}.{uuid.uuid4().hex}.tmp")
    try:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
        fill(meta, key, out)
        out.flush()
        del out
        os.replace(tmp, npy)
    finally:
        tmp.unlink(missing_ok=True)
    write_json_atomic(stamp_path, fingerprint)
    return np.load(npy, mmap_mode="r")
