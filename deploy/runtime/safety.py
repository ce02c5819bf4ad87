"""Safety checks of the controller: observation validation (never raising) and action clamping / rate limiting."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from .manifest import ObservationFeature
from .stats import Fault


class ObservationChecker:
    """Checks one observation against the manifest's features and converts it to the model dtypes.

    Extra keys are ignored (a robot publishes more than a policy reads); a missing key, a wrong shape, a
    non-numeric value, an integer feature (images) in another dtype, or a NaN/inf in a float feature is a fault.
    """

    def __init__(self, features: Sequence[ObservationFeature]):
        self._specs = [(f.key, tuple(f.shape), np.dtype(f.dtype)) for f in features]

    def check(self, observation: Any) -> tuple[dict[str, np.ndarray] | None, str | None, str | None]:
        """Return (arrays, None, None) for a good observation, else (None, fault kind, detail)."""
        if not isinstance(observation, Mapping):
            kind = type(observation).__name__
            return None, Fault.BAD_OBSERVATION, f"expected a mapping of observation arrays, got {kind}"
        arrays = {}
        for key, shape, dtype in self._specs:
            if key not in observation:
                return None, Fault.MISSING_KEY, f"missing key {key!r} (got {sorted(map(repr, observation))[:8]})"
            value = observation[key]
            if not isinstance(value, np.ndarray):
                try:
                    value = np.asarray(value)
                except Exception as e:  # ragged lists and other objects numpy cannot make an array of
                    return None, Fault.BAD_DTYPE, f"{key!r}: cannot be read as an array ({e})"
            if value.shape != shape:
                return None, Fault.BAD_SHAPE, f"{key!r}: shape {value.shape}, expected {shape}"
            if value.dtype != dtype:
                # Converting floats to an integer feature (pixels) would silently change their meaning.
                if dtype.kind != "f" or value.dtype.kind not in "fiub":
                    return None, Fault.BAD_DTYPE, f"{key!r}: dtype {value.dtype}, expected {dtype}"
                with np.errstate(over="ignore", invalid="ignore"):
                    value = value.astype(dtype)
            if dtype.kind == "f" and not np.isfinite(value).all():
                return None, Fault.NON_FINITE_OBSERVATION, f"{key!r}: contains NaN or inf"
            arrays[key] = value
        return arrays, None, None


class ActionLimiter:
    """Clamps an action to the limits, then limits its change from the previous output to max_velocity / hz."""

    def __init__(self, lower: Sequence[float], upper: Sequence[float], max_velocity: np.ndarray | None,
                 control_hz: float):
        self.lower = np.asarray(lower, np.float32)
        self.upper = np.asarray(upper, np.float32)
        self.midpoint = ((self.lower.astype(np.float64) + self.upper) / 2).astype(np.float32)
        self.max_step = None if max_velocity is None else (np.asarray(max_velocity, np.float64) / control_hz).astype(
            np.float32)

    def clamp(self, action: np.ndarray) -> np.ndarray:
        return np.minimum(np.maximum(action, self.lower), self.upper).astype(np.float32, copy=False)

    def apply(self, target: np.ndarray, previous: np.ndarray | None) -> np.ndarray:
        """`previous` is the last output (always within limits), or None when no reference exists yet."""
        action = self.clamp(target)
        if previous is not None and self.max_step is not None:
            np.minimum(action, previous + self.max_step, out=action)
            np.maximum(action, previous - self.max_step, out=action)
        return action


def observed_command(arrays: Mapping[str, np.ndarray], key: str, indices: np.ndarray) -> np.ndarray | None:
    """The robot's current position in command space, read from a checked observation."""
    value = arrays.get(key)
    return None if value is None else np.asarray(value, np.float32)[indices]
