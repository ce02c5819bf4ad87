"""LeRobotDataset v3.0 on-disk layout: paths, feature schemas, version checks and the errors a reader raises."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

CODEBASE_VERSION = "v3.0"
SUPPORTED_VERSIONS = frozenset({"v3.0"})

INFO_PATH = "meta/info.json"
STATS_PATH = "meta/stats.json"
TASKS_PATH = "meta/tasks.parquet"
EPISODES_DIR = "meta/episodes"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
# Our own sidecars: LeRobot ignores unknown files under meta/, so they ride along without breaking it.
COLLECTION_PATH = "meta/cerebellum_collection.json"
STATS_STATE_PATH = "meta/cerebellum_stats_state.npz"

DEFAULT_CHUNKS_SIZE = 1000
DEFAULT_DATA_FILES_SIZE_IN_MB = 100
DEFAULT_VIDEO_FILES_SIZE_IN_MB = 500

# Columns every LeRobot frame carries; the writer fills them, callers never pass them.
INDEX_FEATURES: dict[str, dict[str, Any]] = {
    "timestamp": {"dtype": "float32", "shape": [1], "names": None},
    "frame_index": {"dtype": "int64", "shape": [1], "names": None},
    "episode_index": {"dtype": "int64", "shape": [1], "names": None},
    "index": {"dtype": "int64", "shape": [1], "names": None},
    "task_index": {"dtype": "int64", "shape": [1], "names": None},
}
VISUAL_DTYPES = frozenset({"video", "image"})
NUMERIC_DTYPES = frozenset({"float32", "float64", "int64", "int32", "int16", "int8", "uint8", "bool"})
IMAGE_PREFIX = "observation.images."


class DatasetFormatError(ValueError):
    """A dataset on disk does not follow the LeRobot v3.0 layout (bad version, schema or content)."""


class CorruptFileError(DatasetFormatError):
    """A parquet or mp4 file of a dataset exists but cannot be read."""


class SchemaMismatchError(ValueError):
    """A dataset's features do not match what a consumer (policy, recorder) expects."""


def is_visual(feature: Mapping[str, Any]) -> bool:
    return feature["dtype"] in VISUAL_DTYPES


def image_layout(key: str, feature: Mapping[str, Any]) -> tuple[int, int, int]:
    """(H, W, C) of a visual feature, whichever of the two orders LeRobot datasets store."""
    shape = tuple(int(s) for s in feature["shape"])
    if len(shape) != 3:
        raise DatasetFormatError(f"visual feature {key!r} must have a 3-d shape, got {list(shape)}")
    names = feature.get("names") or ["height", "width", "channels"]
    if names and str(names[0]) in ("channel", "channels"):
        c, h, w = shape
    else:
        h, w, c = shape
    return h, w, c


def check_version(info: Mapping[str, Any], path: Path) -> None:
    version = info.get("codebase_version")
    if version not in SUPPORTED_VERSIONS:
        hint = (
            " (LeRobot v2.x datasets must first be converted with LeRobot's convert_dataset_v21_to_v30)"
            if isinstance(version, str) and version.startswith("v2")
            else ""
        )
        raise DatasetFormatError(
            f"{path}: unsupported codebase_version {version!r}; this reader supports "
            f"{sorted(SUPPORTED_VERSIONS)}{hint}"
        )


REQUIRED_INFO_KEYS = ("codebase_version", "fps", "features", "data_path", "total_episodes", "total_frames")


def validate_info(info: Mapping[str, Any], path: Path) -> None:
    if not isinstance(info, Mapping):
        raise DatasetFormatError(f"{path}: expected a JSON object, got {type(info).__name__}")
    check_version(info, path)
    missing = [k for k in REQUIRED_INFO_KEYS if k not in info]
    if missing:
        raise DatasetFormatError(f"{path}: info.json lacks required keys {missing}")
    for key in ("fps", "total_episodes", "total_frames"):
        value = info[key]
        if isinstance(value, float) and value.is_integer():
            value = int(value)  # some exporters write 30.0
        if isinstance(value, bool) or not isinstance(value, int) or value < (1 if key == "fps" else 0):
            raise DatasetFormatError(f"{path}: {key} must be a {'positive' if key == 'fps' else 'non-negative'} "
                                     f"integer, got {value!r}")
    if not isinstance(info["features"], Mapping) or not all(isinstance(ft, Mapping) for ft in info["features"].values()):
        raise DatasetFormatError(f"{path}: 'features' must map feature names to objects")
    for key, ft in info["features"].items():
        if not isinstance(ft.get("shape"), list) or not all(isinstance(n, int) and n > 0 for n in ft["shape"]):
            raise DatasetFormatError(f"{path}: feature {key!r} needs a list of positive integers as 'shape', got "
                                     f"{ft.get('shape')!r}")
        if "dtype" not in ft or "shape" not in ft:
            raise DatasetFormatError(f"{path}: feature {key!r} needs 'dtype' and 'shape', got {dict(ft)}")
        if ft["dtype"] == "video" and not info.get("video_path"):
            raise DatasetFormatError(f"{path}: feature {key!r} is a video but info.json has no video_path")


def arrow_type(key: str, feature: Mapping[str, Any]) -> pa.DataType:
    """Arrow type LeRobot (via HF datasets) uses for a non-visual feature column."""
    dtype = feature["dtype"]
    if dtype not in NUMERIC_DTYPES:
        raise DatasetFormatError(f"feature {key!r}: dtype {dtype!r} cannot be stored as a parquet column here")
    scalar = pa.from_numpy_dtype(np.dtype(dtype))
    shape = [int(s) for s in feature["shape"]]
    if shape == [1]:
        return scalar
    if len(shape) == 1:
        return pa.list_(scalar, shape[0])
    raise DatasetFormatError(f"feature {key!r}: only scalar and 1-d features are supported, got shape {shape}")


def vector_width(feature: Mapping[str, Any]) -> int:
    """Number of values per frame of a non-visual feature (scalars count as 1)."""
    return int(np.prod([int(s) for s in feature["shape"]]))


def chunk_file(position: int, chunks_size: int) -> tuple[int, int]:
    return divmod(position, chunks_size)
