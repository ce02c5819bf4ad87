"""The policy-bundle manifest (manifest.json): schema, validated loading, hash check and atomic writing.

A bundle is one flat directory: manifest.json plus the ONNX file(s) it names. Version 1 of the format:

    {"format": "cerebellum-policy-bundle", "format_version": 1,
     "policy_type": "act" (the exporting policy family: a plain identifier, informational; how the bundle runs
                    depends on control and sampler only),
     "control": {"frequency_hz": 50.0, "chunk_size": 100, "n_action_steps": 100, "n_obs_steps": 1,
                 "chunk_offset": 0, "temporal_ensemble_coeff": null},
     "observation": [{"key": "observation.state", "shape": [14], "dtype": "float32",
                      "units": ["rad", ...] | "rad", "names": ["left_waist", ...],
                      "low": [...], "high": [...] (optional, float features only)}, ...],
     "action": {"names": [...], "units": [...], "lower": [...], "upper": [...],
                "max_velocity": [...] (optional, units/s), "initial_from": {"key": ..., "indices": [...]} (optional),
                "max_tracking_error": [...] (optional, action units; needs initial_from)},
     "model": {"file": "policy.onnx", "sha256": "<hex>", "inputs": {"observation.state": "<onnx input>", ...},
               "output": "<onnx output>"},
     "sampler": null | {"type": "in_graph", "noise_input": "<onnx input>"?} | {"type": "ddim", ...see DdimSampler},
     "source": {"checkpoint": "<path>", "config": {...resolved config...}, ...exporter metadata},
     "manifest_sha256": "<hex>" (optional: sha256 of the canonical JSON of everything else, see manifest_digest)}

Version 2 (written now; version 1 is still read) adds to a camera feature (uint8, 3-D, e.g. "observation.images.top")
"layout": "HWC" (shape [H, W, 3], the frame as a camera driver delivers it; the channel transpose, the uint8 -> float
scaling and the normalization are inside the graph) or "CHW" (shape [3, H, W], version 1's only layout, also the
default when absent), and optionally "max_age_s": the runner holds when the frame used for a tick was captured longer
ago than this (ChunkRunner.tick(observation, frame_times=...)).

Model inputs are (1, *shape) per observation key, or (1, n_obs_steps, *shape) when n_obs_steps > 1, in the
observation's dtype and physical units (normalization is folded into the graph); the output is
(1, chunk_size, action_dim) in action units. Every key is required (null where allowed); unknown keys are errors,
except inside "source".

Safety fields (all optional, so bundles written before them still load; the runtime enforces what is present):
  * observation[i].low / high: plausible range of each element (flattened, row-major) of a float feature; a value
    outside it is a fault like NaN (the runner holds). Both or neither.
  * action.max_velocity: per-joint rate limit of the commands. The runner refuses to run without one unless its
    caller explicitly allows unlimited velocity.
  * action.max_tracking_error: per joint, how far a command may be from the latest valid measured position
    (action.initial_from); bounds the lead of the command over the robot, e.g. after the robot was stopped or pushed.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

FORMAT_NAME = "cerebellum-policy-bundle"
FORMAT_VERSION = 2
SUPPORTED_FORMAT_VERSIONS = (1, 2)
# Version 2 adds, per camera feature (uint8, 3-D), "layout" ("HWC": frames as camera drivers deliver them, (H, W, 3);
# "CHW": channel-first (3, H, W), the only layout of version 1) and "max_age_s" (a frame captured longer ago than this
# is stale). A version-1 manifest may carry neither; its camera features are CHW.
IMAGE_LAYOUTS = ("CHW", "HWC")
MANIFEST_FILE = "manifest.json"

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
OBSERVATION_DTYPES = ("float32", "float64", "uint8", "int32", "int64")
PREDICTION_TYPES = ("epsilon", "sample", "v_prediction")
TIMESTEP_DTYPES = ("int64", "int32", "float32")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class BundleError(ValueError):
    """A policy bundle that cannot be used (base class of every bundle problem except a missing file)."""


class ManifestError(BundleError):
    """manifest.json is malformed: wrong JSON, missing or unknown keys, wrong types or inconsistent values."""


class UnsupportedFormatVersion(ManifestError):
    """manifest.json declares a format version this runtime does not read."""


class BundleIntegrityError(BundleError):
    """A bundle file's sha256 differs from the manifest: the bundle was modified after export."""


@dataclass(frozen=True)
class ObservationFeature:
    """One observation input, in the units and dtype the robot delivers (normalization is inside the model)."""

    key: str  # LeRobot dataset key, e.g. "observation.state", "observation.images.top"
    shape: tuple[int, ...]  # one time step, no batch axis; images (H, W, 3) or (3, H, W) per `layout`
    dtype: str  # one of OBSERVATION_DTYPES
    units: str | tuple[str, ...]  # one unit for the whole feature, or one per element of a 1-D feature
    names: tuple[str, ...] | None = None  # per element of a 1-D feature (joint names), optional
    # Plausible range per element (flattened, row-major), float features only; None: unchecked.
    low: tuple[float, ...] | None = None
    high: tuple[float, ...] | None = None
    # Camera features (uint8, 3-D) only: the frame layout of `shape` ("HWC" or "CHW"; None: CHW, as format 1) and the
    # oldest a frame may be when the runner uses it, seconds since capture (None: unchecked).
    layout: str | None = None
    max_age_s: float | None = None

    @property
    def is_image(self) -> bool:
        return self.dtype == "uint8" and len(self.shape) == 3

    @property
    def frame_layout(self) -> str | None:
        """"HWC" or "CHW" for a camera feature, None for any other."""
        return (self.layout or "CHW") if self.is_image else None


@dataclass(frozen=True)
class ObservationSlice:
    """Elements of a 1-D observation feature that measure the commanded quantities, in action order."""

    key: str
    indices: tuple[int, ...]


@dataclass(frozen=True)
class ActionSpec:
    names: tuple[str, ...]
    units: tuple[str, ...]
    lower: tuple[float, ...]
    upper: tuple[float, ...]
    # In action units per second; None means the bundle sets no rate limit (the runner may still impose one).
    max_velocity: tuple[float, ...] | None = None
    # Where the runner reads the robot's measured command-space position (see ChunkRunner).
    initial_from: ObservationSlice | None = None
    # In action units; every command stays within the latest valid measured position +- this (needs initial_from).
    # None: commands are bounded by the limits and the rate limit only.
    max_tracking_error: tuple[float, ...] | None = None

    @property
    def dim(self) -> int:
        return len(self.names)


@dataclass(frozen=True)
class ControlSpec:
    frequency_hz: float  # one tick of the runner = one control period at this frequency
    chunk_size: int  # actions per model output (the model returns (1, chunk_size, action_dim))
    n_action_steps: int  # actions executed from each chunk before the next one is scheduled
    n_obs_steps: int = 1  # observation history length fed to the model
    chunk_offset: int = 0  # index in the chunk of the action for the newest observation (diffusion: n_obs_steps-1)
    temporal_ensemble_coeff: float | None = None  # ACT temporal ensembling k (weights exp(-k*i), oldest i=0)


@dataclass(frozen=True)
class ModelFile:
    """An ONNX graph of the bundle: file, hash, and which observation key feeds which graph input."""

    file: str  # plain file name inside the bundle directory
    sha256: str
    inputs: Mapping[str, str]  # observation key -> ONNX input name
    output: str  # ONNX output name


@dataclass(frozen=True)
class InGraphSampler:
    """The whole diffusion sampling loop is inside model.file; the runtime runs it like any other model."""

    num_inference_steps: int | None = None  # informative
    # If set, the graph takes its initial noise (1, chunk_size, action_dim) float32 here, drawn by the runtime
    # (seeded), so a parity check can feed torch and the bundle the same noise.
    noise_input: str | None = None


@dataclass(frozen=True)
class DdimSampler:
    """model.file is the denoiser; the runtime runs DDIM in numpy with these per-step coefficients.

    Coefficients are listed per step (not derived from a beta schedule) so the runtime reproduces the
    exporter's scheduler exactly, whatever its timestep spacing.
    """

    timesteps: tuple[int, ...]  # in sampling order (decreasing)
    alphas_cumprod: tuple[float, ...]  # alpha_bar at each timestep
    alphas_cumprod_prev: tuple[float, ...]  # alpha_bar the step moves to (the final one: final_alpha_cumprod)
    prediction_type: str  # epsilon | sample | v_prediction
    action_scale: tuple[float, ...]  # action = sample * scale + offset (the model samples in normalized space)
    action_offset: tuple[float, ...]
    sample_input: str  # ONNX input of the noisy sample, shape (1, chunk_size, action_dim), float32
    timestep_input: str  # ONNX input of the timestep, shape (1,)
    timestep_dtype: str = "int64"
    eta: float = 0.0
    clip_sample: bool = True
    clip_sample_range: float = 1.0
    use_clipped_model_output: bool = False
    # Optional observation encoder run once per chunk; its output feeds the denoiser's condition_input.
    condition_model: ModelFile | None = None
    condition_input: str | None = None
    seed: int = 0  # seeds the runtime's noise generator


@dataclass(frozen=True)
class SourceSpec:
    checkpoint: str  # where the exported checkpoint lived
    config: Mapping[str, Any]  # its resolved training config
    extra: Mapping[str, Any] = field(default_factory=dict)  # exporter metadata (checkpoint hash, date, versions)


@dataclass(frozen=True)
class Manifest:
    policy_type: str
    control: ControlSpec
    observation: tuple[ObservationFeature, ...]
    action: ActionSpec
    model: ModelFile
    source: SourceSpec
    sampler: InGraphSampler | DdimSampler | None = None
    format_version: int = FORMAT_VERSION

    def feature(self, key: str) -> ObservationFeature:
        for feature in self.observation:
            if feature.key == key:
                return feature
        keys = [f.key for f in self.observation]
        raise KeyError(f"no observation feature {key!r} in the manifest (features: {keys})")

    def model_files(self) -> list[ModelFile]:
        files = [self.model]
        if isinstance(self.sampler, DdimSampler) and self.sampler.condition_model is not None:
            files.append(self.sampler.condition_model)
        return files

    def to_dict(self) -> dict[str, Any]:
        return _manifest_to_dict(self)

    @classmethod
    def from_dict(cls, data: Any, where: str = MANIFEST_FILE) -> "Manifest":
        return _manifest_from_dict(data, where)


# ----------------------------------------------------------------------------------------------------------------
# Reading: every check names the offending key path and what was expected.


class _Obj:
    """A JSON object being read, with the key path used in error messages and a check for unknown keys."""

    def __init__(self, data: Any, path: str, where: str):
        if not isinstance(data, dict):
            raise ManifestError(f"{where}: {path} must be a JSON object, got {_kind(data)}")
        self.data, self.path, self.where = data, path, where
        self.used: set[str] = set()

    def _sub(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def _err(self, key: str, msg: str) -> ManifestError:
        return ManifestError(f"{self.where}: {self._sub(key)}: {msg}")

    def get(self, key: str, required: bool = True, default: Any = None) -> Any:
        self.used.add(key)
        if key not in self.data:
            if required:
                raise ManifestError(f"{self.where}: missing required key {self._sub(key)!r}")
            return default
        return self.data[key]

    def obj(self, key: str, required: bool = True) -> "_Obj | None":
        value = self.get(key, required)
        if value is None and not required:
            return None
        return _Obj(value, self._sub(key), self.where)

    def string(self, key: str, required: bool = True, default: str | None = None, choices=None) -> str | None:
        value = self.get(key, required, default)
        if value is None and not required:
            return default
        if not isinstance(value, str) or not value:
            raise self._err(key, f"expected a non-empty string, got {_kind(value)}")
        if choices is not None and value not in choices:
            raise self._err(key, f"{value!r} is not one of {list(choices)}")
        return value

    def integer(self, key: str, required: bool = True, default: int | None = None, minimum: int | None = None):
        value = self.get(key, required, default)
        if value is None and not required:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._err(key, f"expected an integer, got {_kind(value)}")
        if minimum is not None and value < minimum:
            raise self._err(key, f"must be >= {minimum}, got {value}")
        return value

    def number(self, key: str, required: bool = True, default: float | None = None, positive: bool = False):
        value = self.get(key, required, default)
        if value is None and not required:
            return default
        value = _finite(value, lambda msg: self._err(key, msg))
        if positive and value <= 0:
            raise self._err(key, f"must be > 0, got {value}")
        return value

    def boolean(self, key: str, required: bool = True, default: bool | None = None) -> bool:
        value = self.get(key, required, default)
        if not isinstance(value, bool):
            raise self._err(key, f"expected true or false, got {_kind(value)}")
        return value

    def list_of(self, key: str, item, length: int | None = None, required: bool = True):
        value = self.get(key, required)
        if value is None and not required:
            return None
        if not isinstance(value, list):
            raise self._err(key, f"expected a list, got {_kind(value)}")
        if length is not None and len(value) != length:
            raise self._err(key, f"expected {length} entries, got {len(value)}")
        return tuple(item(v, lambda msg, i=i: self._err(f"{key}[{i}]", msg)) for i, v in enumerate(value))

    def finish(self, allow_extra: bool = False) -> dict[str, Any]:
        extra = {k: v for k, v in self.data.items() if k not in self.used}
        if extra and not allow_extra:
            raise ManifestError(
                f"{self.where}: unknown key(s) {sorted(extra)} in {self.path or 'the top level'} "
                f"(known keys: {sorted(self.used)})"
            )
        return extra


def _kind(value: Any) -> str:
    return "null" if value is None else f"{type(value).__name__} {value!r}"[:80]


def _finite(value: Any, err) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise err(f"expected a number, got {_kind(value)}")
    if not math.isfinite(value):
        raise err(f"expected a finite number, got {value}")
    return float(value)


def _string_item(value: Any, err) -> str:
    if not isinstance(value, str) or not value:
        raise err(f"expected a non-empty string, got {_kind(value)}")
    return value


def _int_item(value: Any, err) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise err(f"expected an integer, got {_kind(value)}")
    return value


def _file_name(obj: _Obj, key: str) -> str:
    name = obj.string(key)
    # A bundle is one flat directory: a path could point outside it.
    if os.path.basename(name) != name or name in (".", ".."):
        raise obj._err(key, f"must be a plain file name inside the bundle directory, got {name!r}")
    return name


def _sha256(obj: _Obj, key: str) -> str:
    value = obj.string(key)
    if not _SHA256.match(value):
        raise obj._err(key, f"expected 64 lowercase hex digits, got {value!r}")
    return value


def _model_file(obj: _Obj) -> ModelFile:
    inputs_obj = obj.obj("inputs")
    inputs = {k: _string_item(v, lambda msg, k=k: inputs_obj._err(k, msg)) for k, v in inputs_obj.data.items()}
    if len(set(inputs.values())) != len(inputs):
        raise obj._err("inputs", f"two observation keys feed the same ONNX input: {inputs}")
    model = ModelFile(file=_file_name(obj, "file"), sha256=_sha256(obj, "sha256"), inputs=inputs,
                      output=obj.string("output"))
    obj.finish()
    return model


def _observation(data: Any, where: str, version: int = FORMAT_VERSION) -> tuple[ObservationFeature, ...]:
    if not isinstance(data, list) or not data:
        raise ManifestError(f"{where}: observation must be a non-empty list of features, got {_kind(data)}")
    features = []
    for i, item in enumerate(data):
        o = _Obj(item, f"observation[{i}]", where)
        key = o.string("key")
        shape = o.list_of("shape", _int_item)
        if any(s < 1 for s in shape):
            raise o._err("shape", f"every dimension must be >= 1, got {list(shape)}")
        dtype = o.string("dtype", choices=OBSERVATION_DTYPES)
        if isinstance(o.get("units"), list):
            if len(shape) != 1:
                raise o._err("units", f"one unit per element needs a 1-D feature, shape is {list(shape)}; "
                                      "give a single unit string instead")
            units = o.list_of("units", _string_item, length=shape[0])
        else:
            units = o.string("units")
        names = o.list_of("names", _string_item, required=False)
        if names is not None and (len(shape) != 1 or len(names) != shape[0]):
            raise o._err("names", f"expected one name per element of a 1-D feature of shape {list(shape)}")
        low, high = _bounds(o, shape, dtype)
        layout, max_age_s = _camera(o, shape, dtype, version)
        o.finish()
        features.append(ObservationFeature(key=key, shape=shape, dtype=dtype, units=units, names=names, low=low,
                                           high=high, layout=layout, max_age_s=max_age_s))
    keys = [f.key for f in features]
    if len(set(keys)) != len(keys):
        raise ManifestError(f"{where}: observation keys must be unique, got {keys}")
    return tuple(features)


def _camera(o: _Obj, shape: tuple[int, ...], dtype: str, version: int) -> tuple[str | None, float | None]:
    """(layout, max_age_s) of a camera feature; both absent for other features and in format version 1."""
    if version < 2:
        return None, None  # finish() reports either key as unknown
    layout = o.string("layout", required=False, choices=IMAGE_LAYOUTS)
    max_age_s = o.number("max_age_s", required=False, positive=True)
    if layout is None and max_age_s is None:
        return None, None
    if dtype != "uint8" or len(shape) != 3:
        raise o._err("layout" if layout is not None else "max_age_s",
                     f"is for camera features (uint8, 3-D); this one is {dtype} of shape {list(shape)}")
    channels = shape[0] if (layout or "CHW") == "CHW" else shape[2]
    if channels != 3:
        raise o._err("shape", f"a {layout or 'CHW'} camera frame has 3 colour channels "
                              f"({'(3, H, W)' if (layout or 'CHW') == 'CHW' else '(H, W, 3)'}), got {list(shape)}")
    return layout, max_age_s


def _bounds(o: _Obj, shape: tuple[int, ...], dtype: str) -> tuple[tuple[float, ...] | None, tuple[float, ...] | None]:
    size = math.prod(shape)
    low = o.list_of("low", _finite, length=size, required=False)
    high = o.list_of("high", _finite, length=size, required=False)
    if low is None and high is None:
        return None, None
    if low is None or high is None:
        raise o._err("low" if low is None else "high", "low and high go together: give both or neither")
    if not dtype.startswith("float"):
        raise o._err("low", f"range checks are for float features; this feature is {dtype}")
    bad = [i for i in range(size) if not low[i] <= high[i]]
    if bad:
        raise o._err("low", f"low must be <= high for every element; not so at flat indices {bad[:8]} "
                            f"(low {[low[i] for i in bad[:3]]}, high {[high[i] for i in bad[:3]]})")
    return low, high


def _action(o: _Obj) -> ActionSpec:
    names = o.list_of("names", _string_item)
    if not names:
        raise o._err("names", "an action needs at least one dimension")
    dim = len(names)
    units = o.list_of("units", _string_item, length=dim)
    lower = o.list_of("lower", _finite, length=dim)
    upper = o.list_of("upper", _finite, length=dim)
    bad = [names[i] for i in range(dim) if not lower[i] < upper[i]]
    if bad:
        raise o._err("lower", f"lower must be < upper for every dimension; not so for {bad}")
    max_velocity = o.list_of("max_velocity", _finite, length=dim, required=False)
    if max_velocity is not None and any(v <= 0 for v in max_velocity):
        raise o._err("max_velocity", f"every entry must be > 0 (action units per second), got {list(max_velocity)}")
    initial = o.obj("initial_from", required=False)
    initial_from = None
    if initial is not None:
        initial_from = ObservationSlice(key=initial.string("key"),
                                        indices=initial.list_of("indices", _int_item, length=dim))
        initial.finish()
    tracking = o.list_of("max_tracking_error", _finite, length=dim, required=False)
    if tracking is not None:
        if any(v <= 0 for v in tracking):
            raise o._err("max_tracking_error", f"every entry must be > 0 (action units), got {list(tracking)}")
        if initial_from is None:
            raise o._err("max_tracking_error", "bounds commands around the measured position, so it needs "
                                               "action.initial_from (where the observation measures the joints)")
    o.finish()
    return ActionSpec(names=names, units=units, lower=lower, upper=upper, max_velocity=max_velocity,
                      initial_from=initial_from, max_tracking_error=tracking)


def _control(o: _Obj) -> ControlSpec:
    coeff = o.get("temporal_ensemble_coeff")  # required key; null switches ensembling off
    c = ControlSpec(
        frequency_hz=o.number("frequency_hz", positive=True),
        chunk_size=o.integer("chunk_size", minimum=1),
        n_action_steps=o.integer("n_action_steps", minimum=1),
        n_obs_steps=o.integer("n_obs_steps", minimum=1),
        chunk_offset=o.integer("chunk_offset", minimum=0),
        temporal_ensemble_coeff=None if coeff is None else o.number("temporal_ensemble_coeff"),
    )
    o.finish()
    if c.chunk_offset >= c.chunk_size:
        raise o._err("chunk_offset", f"must be < chunk_size ({c.chunk_size}), got {c.chunk_offset}")
    if c.chunk_offset + c.n_action_steps > c.chunk_size:
        raise o._err("n_action_steps", f"chunk_offset + n_action_steps = {c.chunk_offset + c.n_action_steps} "
                                       f"exceeds chunk_size {c.chunk_size}")
    if c.temporal_ensemble_coeff is not None and c.n_action_steps != 1:
        raise o._err("n_action_steps", "temporal ensembling predicts a chunk every tick: n_action_steps must be 1, "
                                       f"got {c.n_action_steps}")
    return c


def _sampler(top: _Obj, action_dim: int):
    if top.get("sampler") is None:  # required key; null: the model's output is the chunk
        return None
    o = top.obj("sampler")
    kind = o.string("type", choices=("in_graph", "ddim"))
    if kind == "in_graph":
        sampler = InGraphSampler(num_inference_steps=o.integer("num_inference_steps", required=False, minimum=1),
                                 noise_input=o.string("noise_input", required=False))
        o.finish()
        return sampler
    timesteps = o.list_of("timesteps", _int_item)
    n = len(timesteps)
    if n == 0 or any(t < 0 for t in timesteps) or any(a <= b for a, b in zip(timesteps, timesteps[1:])):
        raise o._err("timesteps", f"expected a non-empty, strictly decreasing list of integers >= 0, got {timesteps}")
    alphas = o.list_of("alphas_cumprod", _finite, length=n)
    alphas_prev = o.list_of("alphas_cumprod_prev", _finite, length=n)
    if not all(0.0 < a < 1.0 for a in alphas):
        raise o._err("alphas_cumprod", "every entry must lie in (0, 1)")
    if not all(0.0 < a <= 1.0 for a in alphas_prev):
        raise o._err("alphas_cumprod_prev", "every entry must lie in (0, 1]")
    condition = o.obj("condition_model", required=False)
    sampler = DdimSampler(
        timesteps=timesteps, alphas_cumprod=alphas, alphas_cumprod_prev=alphas_prev,
        prediction_type=o.string("prediction_type", choices=PREDICTION_TYPES),
        action_scale=o.list_of("action_scale", _finite, length=action_dim),
        action_offset=o.list_of("action_offset", _finite, length=action_dim),
        sample_input=o.string("sample_input"),
        timestep_input=o.string("timestep_input"),
        timestep_dtype=o.string("timestep_dtype", choices=TIMESTEP_DTYPES),
        eta=o.number("eta"),
        clip_sample=o.boolean("clip_sample"),
        clip_sample_range=o.number("clip_sample_range", positive=True),
        use_clipped_model_output=o.boolean("use_clipped_model_output"),
        condition_model=_model_file(condition) if condition is not None else None,
        condition_input=o.string("condition_input", required=False),
        seed=o.integer("seed", minimum=0),
    )
    o.finish()
    if sampler.eta < 0:
        raise o._err("eta", f"must be >= 0, got {sampler.eta}")
    if (sampler.condition_model is None) != (sampler.condition_input is None):
        raise o._err("condition_input", "condition_model and condition_input go together (both or neither)")
    return sampler


def _manifest_from_dict(data: Any, where: str) -> Manifest:
    top = _Obj(data, "", where)
    fmt = top.get("format")
    if fmt != FORMAT_NAME:
        raise ManifestError(f"{where}: 'format' must be {FORMAT_NAME!r}, got {_kind(fmt)}: "
                            "not a policy bundle manifest")
    if "format_version" not in data:
        raise UnsupportedFormatVersion(f"{where}: missing 'format_version' (this runtime reads versions "
                                       f"{list(SUPPORTED_FORMAT_VERSIONS)})")
    version = top.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version not in SUPPORTED_FORMAT_VERSIONS:
        raise UnsupportedFormatVersion(
            f"{where}: format_version {version!r} is not supported by this runtime (it reads "
            f"{list(SUPPORTED_FORMAT_VERSIONS)}); re-export the bundle or use a matching runtime")
    policy_type = top.string("policy_type")
    if not _IDENTIFIER.match(policy_type):
        raise top._err("policy_type", f"expected a plain identifier (letters, digits, _), got {policy_type!r}")
    control = _control(top.obj("control"))
    observation = _observation(top.get("observation"), where, version)
    action = _action(top.obj("action"))
    model = _model_file(top.obj("model"))
    sampler = _sampler(top, action.dim)
    source_obj = top.obj("source")
    checkpoint = source_obj.string("checkpoint")
    config = source_obj.get("config")
    if not isinstance(config, dict):
        raise source_obj._err("config", f"expected the resolved config as a JSON object, got {_kind(config)}")
    source = SourceSpec(checkpoint=checkpoint, config=config, extra=source_obj.finish(allow_extra=True))
    top.finish()
    manifest = Manifest(policy_type=policy_type, control=control, observation=observation, action=action,
                        model=model, source=source, sampler=sampler, format_version=version)
    _check_cross_references(manifest, where)
    return manifest


def _check_cross_references(m: Manifest, where: str) -> None:
    keys = {f.key for f in m.observation}
    obs_model = m.model
    if isinstance(m.sampler, InGraphSampler) and m.sampler.noise_input in set(m.model.inputs.values()):
        raise ManifestError(f"{where}: sampler.noise_input {m.sampler.noise_input!r} is also an observation input")
    if isinstance(m.sampler, DdimSampler):
        if m.sampler.condition_model is not None:
            obs_model = m.sampler.condition_model
            if m.model.inputs:
                raise ManifestError(f"{where}: with a sampler.condition_model the observations feed the condition "
                                    f"model, so model.inputs must be empty, got {dict(m.model.inputs)}")
        taken = set(m.model.inputs.values())
        for name in (m.sampler.sample_input, m.sampler.timestep_input, m.sampler.condition_input):
            if name is not None and name in taken:
                raise ManifestError(f"{where}: ONNX input {name!r} is both a sampler input and an observation input")
    where_inputs = "sampler.condition_model.inputs" if obs_model is not m.model else "model.inputs"
    mapped = set(obs_model.inputs)
    if mapped != keys:
        missing, unknown = sorted(keys - mapped), sorted(mapped - keys)
        raise ManifestError(f"{where}: {where_inputs} must map every observation key to an ONNX input; "
                            f"unmapped observation keys: {missing}, keys that are not observations: {unknown}")
    init = m.action.initial_from
    if init is not None:
        if init.key not in keys:
            raise ManifestError(f"{where}: action.initial_from.key {init.key!r} is not an observation key "
                                f"{sorted(keys)}")
        feature = m.feature(init.key)
        if len(feature.shape) != 1 or any(not 0 <= i < feature.shape[0] for i in init.indices):
            raise ManifestError(f"{where}: action.initial_from.indices {list(init.indices)} must index the 1-D "
                                f"feature {init.key!r} of shape {list(feature.shape)}")
    if len({mf.file for mf in m.model_files()}) != len(m.model_files()):
        raise ManifestError(f"{where}: model.file and sampler.condition_model.file must differ")


# ----------------------------------------------------------------------------------------------------------------
# Writing


def _manifest_to_dict(m: Manifest) -> dict[str, Any]:
    def model_dict(mf: ModelFile) -> dict[str, Any]:
        return {"file": mf.file, "sha256": mf.sha256, "inputs": dict(mf.inputs), "output": mf.output}

    def units(u):
        return u if isinstance(u, str) else list(u)

    sampler: dict[str, Any] | None
    if m.sampler is None:
        sampler = None
    elif isinstance(m.sampler, InGraphSampler):
        sampler = {"type": "in_graph"}
        if m.sampler.num_inference_steps is not None:
            sampler["num_inference_steps"] = m.sampler.num_inference_steps
        if m.sampler.noise_input is not None:
            sampler["noise_input"] = m.sampler.noise_input
    else:
        s = m.sampler
        sampler = {
            "type": "ddim", "timesteps": list(s.timesteps), "alphas_cumprod": list(s.alphas_cumprod),
            "alphas_cumprod_prev": list(s.alphas_cumprod_prev), "prediction_type": s.prediction_type,
            "action_scale": list(s.action_scale), "action_offset": list(s.action_offset),
            "sample_input": s.sample_input, "timestep_input": s.timestep_input, "timestep_dtype": s.timestep_dtype,
            "eta": s.eta, "clip_sample": s.clip_sample, "clip_sample_range": s.clip_sample_range,
            "use_clipped_model_output": s.use_clipped_model_output, "seed": s.seed,
        }
        if s.condition_model is not None:
            sampler["condition_model"] = model_dict(s.condition_model)
            sampler["condition_input"] = s.condition_input
    a = m.action
    action: dict[str, Any] = {"names": list(a.names), "units": list(a.units), "lower": list(a.lower),
                              "upper": list(a.upper)}
    if a.max_velocity is not None:
        action["max_velocity"] = list(a.max_velocity)
    if a.initial_from is not None:
        action["initial_from"] = {"key": a.initial_from.key, "indices": list(a.initial_from.indices)}
    if a.max_tracking_error is not None:
        action["max_tracking_error"] = list(a.max_tracking_error)
    c = m.control
    observation = []
    for f in m.observation:
        entry = {"key": f.key, "shape": list(f.shape), "dtype": f.dtype, "units": units(f.units)}
        if f.names is not None:
            entry["names"] = list(f.names)
        if f.low is not None:
            entry["low"], entry["high"] = list(f.low), list(f.high)
        if f.layout is not None:
            entry["layout"] = f.layout
        if f.max_age_s is not None:
            entry["max_age_s"] = f.max_age_s
        observation.append(entry)
    return {
        "format": FORMAT_NAME,
        "format_version": m.format_version,
        "policy_type": m.policy_type,
        "control": {"frequency_hz": c.frequency_hz, "chunk_size": c.chunk_size, "n_action_steps": c.n_action_steps,
                    "n_obs_steps": c.n_obs_steps, "chunk_offset": c.chunk_offset,
                    "temporal_ensemble_coeff": c.temporal_ensemble_coeff},
        "observation": observation,
        "action": action,
        "model": model_dict(m.model),
        "sampler": sampler,
        "source": {"checkpoint": m.source.checkpoint, "config": dict(m.source.config), **dict(m.source.extra)},
    }


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_model_files(bundle_dir: str | os.PathLike, manifest: Manifest) -> None:
    """Raise FileNotFoundError for a missing model file and BundleIntegrityError for a hash mismatch."""
    bundle_dir = Path(bundle_dir)
    for mf in manifest.model_files():
        path = bundle_dir / mf.file
        if not path.is_file():
            raise FileNotFoundError(f"bundle {bundle_dir}: model file {mf.file!r} named in {MANIFEST_FILE} is missing")
        actual = file_sha256(path)
        if actual != mf.sha256:
            raise BundleIntegrityError(
                f"bundle {bundle_dir}: sha256 of {mf.file} is {actual}, but {MANIFEST_FILE} says {mf.sha256}: the "
                "file was modified or corrupted after export; re-export the bundle")


SELF_DIGEST_KEY = "manifest_sha256"


def manifest_digest(data: dict) -> str:
    """sha256 of the manifest's canonical JSON (sorted keys, no whitespace), its own digest field left out."""
    body = {k: v for k, v in data.items() if k != SELF_DIGEST_KEY}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _check_self_digest(data: Any, path: Path) -> None:
    # Model files are hashed in the manifest, but a flipped bit in a manifest digit (50 Hz -> 40 Hz) still parses:
    # the manifest carries a digest of itself. Older bundles without one load unchecked.
    if not isinstance(data, dict) or SELF_DIGEST_KEY not in data:
        return
    expected = data.pop(SELF_DIGEST_KEY)
    if data.get("format_version") not in SUPPORTED_FORMAT_VERSIONS:
        return  # another format's digest rules may differ: the version error that follows is the useful one
    actual = manifest_digest(data)
    if expected != actual:
        raise BundleIntegrityError(
            f"{path}: the manifest's own sha256 is {actual}, but its {SELF_DIGEST_KEY!r} says {expected!r}: "
            f"{MANIFEST_FILE} was modified or corrupted after export; re-export the bundle (to change a limit, "
            "pass it to ChunkRunner instead of editing the file)")


def load_manifest(bundle_dir: str | os.PathLike, verify_hash: bool = True) -> Manifest:
    """Read, validate and (by default) hash-check a bundle's manifest. Raises with a message naming the problem."""
    bundle_dir = Path(bundle_dir)
    if not bundle_dir.is_dir():
        raise FileNotFoundError(f"policy bundle directory {bundle_dir} does not exist (or is not a directory)")
    path = bundle_dir / MANIFEST_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: {bundle_dir} is not a policy bundle (expected {MANIFEST_FILE} "
                                "beside the ONNX model, as written by the exporter)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ManifestError(f"{path}: not valid JSON ({e})") from e
    if verify_hash:
        _check_self_digest(data, path)
    elif isinstance(data, dict):
        data.pop(SELF_DIGEST_KEY, None)
    manifest = Manifest.from_dict(data, where=str(path))
    if verify_hash:
        verify_model_files(bundle_dir, manifest)
    else:
        for mf in manifest.model_files():
            if not (bundle_dir / mf.file).is_file():
                raise FileNotFoundError(f"bundle {bundle_dir}: model file {mf.file!r} named in {MANIFEST_FILE} "
                                        "is missing")
    return manifest


def write_manifest(bundle_dir: str | os.PathLike, manifest: Manifest) -> Path:
    """Validate `manifest` against the files already in `bundle_dir` and write manifest.json atomically.

    The model files must be in place first, so a bundle with a manifest is always a complete one.
    """
    bundle_dir = Path(bundle_dir)
    data = json.loads(json.dumps(manifest.to_dict(), allow_nan=False))  # plain JSON types: what a reader sees
    Manifest.from_dict(data, where=f"manifest for {bundle_dir}")  # round-trip check
    verify_model_files(bundle_dir, manifest)
    data[SELF_DIGEST_KEY] = manifest_digest(data)
    target = bundle_dir / MANIFEST_FILE
    # Its own atomic write, not fileio's: the runtime must run alone (numpy, onnxruntime, the standard library).
    fd, tmp = tempfile.mkstemp(prefix=f".{MANIFEST_FILE}.", suffix=".tmp", dir=bundle_dir)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, allow_nan=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; the controller may run as another user than the exporter
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return target
