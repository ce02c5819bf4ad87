"""Feature normalization inside a policy: mean/std or min/max per feature kind, stored as state-dict buffers."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import Tensor, nn

from policies.features import FeatureKind, FeatureSpec

MEAN_STD = "mean_std"
MIN_MAX = "min_max"
IDENTITY = "identity"
MODES = (MEAN_STD, MIN_MAX, IDENTITY)
STAT_NAMES = {MEAN_STD: ("mean", "std"), MIN_MAX: ("min", "max"), IDENTITY: ()}

# Features that are (almost) constant in the demonstrations would be divided by ~0 and turn any test-time deviation
# into a huge input; scales below this floor are raised to it (units of the feature: radians, metres, [0,1] pixels).
MIN_SCALE = 1e-3


def validate_mapping(mapping: Mapping[str, str], where: str = "normalization_mapping") -> None:
    kinds = {k.value for k in FeatureKind}
    for kind, mode in mapping.items():
        if kind not in kinds:
            raise ValueError(f"{where}: unknown feature kind {kind!r}; expected one of {sorted(kinds)}")
        if mode not in MODES:
            raise ValueError(f"{where}[{kind!r}]: unknown mode {mode!r}; expected one of {list(MODES)}")
    missing = kinds - set(mapping)
    if missing:
        raise ValueError(f"{where}: no mode given for feature kind(s) {sorted(missing)}")


def _stat_shape(spec: FeatureSpec) -> tuple[int, ...]:
    # Images are normalized per channel, broadcast over (H, W).
    return (spec.shape[0], 1, 1) if spec.kind is FeatureKind.IMAGE else spec.shape


def _stat_tensor(stats: Mapping, spec: FeatureSpec, name: str) -> Tensor:
    if spec.key not in stats:
        raise ValueError(
            f"stats have no entry for feature {spec.key!r} (needed for its {name!r}); "
            f"stats keys: {sorted(stats)}"
        )
    entry = stats[spec.key]
    if not isinstance(entry, Mapping) or name not in entry:
        have = sorted(entry) if isinstance(entry, Mapping) else type(entry).__name__
        raise ValueError(f"stats[{spec.key!r}] has no {name!r} value; it has {have}")
    value = entry[name]
    if isinstance(value, Tensor):
        value = value.detach().cpu().numpy()
    arr = np.asarray(value, dtype=np.float32)
    want = _stat_shape(spec)
    if spec.kind is FeatureKind.IMAGE and arr.shape == (spec.shape[0],):
        arr = arr.reshape(want)
    if arr.shape != want:
        raise ValueError(
            f"stats[{spec.key!r}][{name!r}] has shape {arr.shape}, expected {want} for a feature of shape {spec.shape}"
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"stats[{spec.key!r}][{name!r}] contains NaN or inf")
    return torch.from_numpy(arr.copy())


class FeatureNormalizer(nn.Module):
    """Normalizes one feature; its stats are buffers so they travel in the state dict.

    Built without stats (for loading a checkpoint) the buffers hold NaN until a state dict fills them;
    `check_ready` says so clearly instead of letting NaN flow through the network.
    """

    def __init__(self, spec: FeatureSpec, mode: str, stats: Mapping | None):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"feature {spec.key!r}: unknown normalization mode {mode!r}; expected one of {MODES}")
        self.key = spec.key
        self.mode = mode
        for name in STAT_NAMES[mode]:
            if stats is None:
                value = torch.full(_stat_shape(spec), float("nan"))
            else:
                value = _stat_tensor(stats, spec, name)
            self.register_buffer(name, value)
        if mode == MIN_MAX and stats is not None and bool(torch.any(self.max < self.min)):
            raise ValueError(f"stats[{spec.key!r}]: some 'max' values are below 'min'")

    def check_ready(self) -> None:
        for name in STAT_NAMES[self.mode]:
            if not bool(torch.all(torch.isfinite(getattr(self, name)))):
                raise ValueError(
                    f"normalizer for {self.key!r} has no valid {name!r} (NaN/inf): build the policy with dataset "
                    "stats or load a state dict that contains them"
                )

    def normalize(self, x: Tensor) -> Tensor:
        if self.mode == MEAN_STD:
            return (x - self.mean) / self.std.clamp_min(MIN_SCALE)
        if self.mode == MIN_MAX:
            return (x - self.min) / (self.max - self.min).clamp_min(MIN_SCALE) * 2.0 - 1.0
        return x

    def unnormalize(self, x: Tensor) -> Tensor:
        if self.mode == MEAN_STD:
            return x * self.std.clamp_min(MIN_SCALE) + self.mean
        if self.mode == MIN_MAX:
            return (x + 1.0) * 0.5 * (self.max - self.min).clamp_min(MIN_SCALE) + self.min
        return x


def _module_name(key: str) -> str:
    # nn.Module child names cannot contain dots.
    return key.replace(".", "_")


class Normalizer(nn.Module):
    """Normalizers for a set of features, addressed by dataset key; the mode comes from the feature kind."""

    def __init__(self, specs: Mapping[str, FeatureSpec], mapping: Mapping[str, str], stats: Mapping | None):
        super().__init__()
        validate_mapping(mapping)
        self.features = nn.ModuleDict()
        self._names: dict[str, str] = {}
        for key, spec in specs.items():
            name = _module_name(key)
            if name in self.features:
                raise ValueError(f"feature keys {key!r} and {self._key_of(name)!r} collide after replacing '.'")
            self.features[name] = FeatureNormalizer(spec, mapping[spec.kind.value], stats)
            self._names[key] = name

    def _key_of(self, name: str) -> str:
        return next(k for k, v in self._names.items() if v == name)

    @property
    def keys(self) -> list[str]:
        return list(self._names)

    def feature(self, key: str) -> FeatureNormalizer:
        if key not in self._names:
            raise KeyError(f"no normalizer for {key!r}; known: {self.keys}")
        return self.features[self._names[key]]

    def check_ready(self) -> None:
        for module in self.features.values():
            module.check_ready()

    def normalize(self, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Copy of `batch` with every known feature normalized; other keys pass through."""
        out = dict(batch)
        for key, name in self._names.items():
            if key in out:
                out[key] = self.features[name].normalize(out[key])
        return out

    def unnormalize(self, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        out = dict(batch)
        for key, name in self._names.items():
            if key in out:
                out[key] = self.features[name].unnormalize(out[key])
        return out

    def forward(self, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        return self.normalize(batch)
