"""Torch-free controller runtime: load a policy bundle (ONNX + manifest.json) and run it tick by tick.

Imports numpy, onnxruntime and the standard library only, so it runs on a robot computer without torch,
MuJoCo or the training code. It is also its own distribution, cerebellum-runtime (pyproject.toml here), which a
robot installs alone and imports as `cerebellum_runtime`.
"""

from .bundle_policy import BundlePolicy
from .chunk_runner import FROM_MANIFEST, ONE_PERIOD, ChunkRunner
from .executors import SimulatedLatency
from .manifest import (
    FORMAT_VERSION,
    MANIFEST_FILE,
    ActionSpec,
    BundleError,
    BundleIntegrityError,
    ControlSpec,
    DdimSampler,
    InGraphSampler,
    Manifest,
    ManifestError,
    ModelFile,
    ObservationFeature,
    ObservationSlice,
    SourceSpec,
    UnsupportedFormatVersion,
    file_sha256,
    load_manifest,
    write_manifest,
)
from .stats import Fault, RunnerStatistics

__all__ = [
    "FORMAT_VERSION", "FROM_MANIFEST", "MANIFEST_FILE", "ONE_PERIOD", "ActionSpec", "BundleError",
    "BundleIntegrityError", "BundlePolicy", "ChunkRunner", "ControlSpec", "DdimSampler", "Fault", "InGraphSampler",
    "Manifest", "ManifestError", "ModelFile", "ObservationFeature", "ObservationSlice", "RunnerStatistics",
    "SimulatedLatency", "SourceSpec", "UnsupportedFormatVersion", "file_sha256", "load_manifest", "write_manifest",
]
