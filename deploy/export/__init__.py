"""Torch side of deployment: checkpoint -> policy bundle (ONNX + manifest.json) for the torch-free runtime.

    from deploy.export import ExportConfig, export_checkpoint
    export_checkpoint(ExportConfig(checkpoint="outputs/train/act/...", output="bundles/act"))

One module per policy family (act, mlp, diffusion, sb3) builds the graphs; bundle writes them atomically through
deploy.runtime's manifest writer; parity checks the result against the checkpoint before it is moved into place.
"""

from .config import ExportConfig
from .exporter import ExportResult, export_checkpoint
from .parity import ParityError, ParityReport

__all__ = ["ExportConfig", "ExportResult", "ParityError", "ParityReport", "export_checkpoint"]
