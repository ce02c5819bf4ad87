"""Torch side of deployment: checkpoint -> policy bundle (ONNX + manifest.json) for the torch-free runtime.

    from deploy.export import ExportConfig, export_checkpoint
    export_checkpoint(ExportConfig(checkpoint="outputs/train/act/...", output="bundles/act"))

Each policy family describes its graphs in policies/<family>/export.py (found through policies.registry); plan turns
that into the bundle's terms, bundle writes it atomically through deploy.runtime's manifest writer, and parity checks
the result against the checkpoint before it is moved into place.
Exports are imported lazily, so reading the config (Hydra, a typo check) does not load torch.
"""

import importlib

_EXPORTS = {
    "ExportConfig": "config",
    "ExportResult": "exporter",
    "export_checkpoint": "exporter",
    "ParityError": "parity",
    "ParityReport": "parity",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__
