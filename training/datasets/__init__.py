"""Episode datasets in the LeRobot v3.0 layout: recording, reading, statistics and training windows.

Exports are imported lazily so light users (env worker processes, deployment glue that only needs
observation_to_dataset) do not pay for torch, PyAV or pyarrow imports they never use.
"""

import importlib

from fileio.locks import LockHeldError  # light (standard library only): no need to defer it

_EXPORTS = {
    "CODEBASE_VERSION": "format",
    "CorruptFileError": "format",
    "DatasetFormatError": "format",
    "SchemaMismatchError": "format",
    "ChecksumMismatchError": "checksums",
    "load_images": "image_cache",
    "observation_to_dataset": "observations",
    "DatasetMeta": "reader",
    "load_numeric": "reader",
    "VideoConfig": "video",
    "WindowDataset": "windows",
    "collate_windows": "windows",
    "make_dataloader": "windows",
    "DatasetWriter": "writer",
}

__all__ = sorted([*_EXPORTS, "LockHeldError"])


_MODULES = ("checksums",)


def __getattr__(name: str):
    if name in _MODULES:
        return importlib.import_module(f".{name}", __name__)
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__
