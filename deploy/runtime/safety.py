"""Safety checks of the controller: observation validation (never raising) and action clamping / rate limiting."""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

from .manifest import ActionSpec, ObservationFeature
from .stats import Fault


class _Spec:
    __slots__ = ("key", "shape", "dtype", "low", "high", "names", "declared", "layout")

    def __init__(self, key, shape, dtype, low, high, names, declared, layout=None):
        self.key, self.shape, self.dtype, self.low, self.high = key, shape, dtype, low, high
        self.names, self.declared, self.layout = names, declared, layout


class ObservationChecker:
    """Checks one observation against the manifest's features and converts it to the model dtypes.

    Extra keys are ignored (a robot publishes more than a policy reads). A fault is: not a mapping, a missing key, a
    wrong shape, a non-numeric or boolean value, an integer feature (images) in another dtype, a NaN/inf in a float
    feature, or a float element outside the manifest's low/high. The elements that measure the commanded joints
    (action.initial_from) of a manifest without low/high are still checked against the action limits widened by a
    whole range on each side: no real joint reads there, and a finite garbage value (1e30) must not become the
    reference the first command starts from.
    """

    def __init__(self, features: Sequence[ObservationFeature], action: ActionSpec | None = None):
        self._specs = []
        for f in features:
            dtype = np.dtype(f.dtype)
            low = high = None
            declared = f.low is not None
            if declared:
                low = np.asarray(f.low, dtype).reshape(f.shape)
                high = np.asarray(f.high, dtype).reshape(f.shape)
            elif action is not None and action.initial_from is not None and action.initial_from.key == f.key:
                low, high = _joint_plausibility(f, action, dtype)
            self._specs.append(_Spec(f.key, tuple(f.shape), dtype, low, high, f.names, declared, f.frame_layout))

    def check(self, observation: Any) -> tuple[dict[str, np.ndarray] | None, str | None, str | None]:
        """Return (arrays, None, None) for a good observation, else (None, fault kind, detail)."""
        if not isinstance(observation, Mapping):
            kind = type(observation).__name__
            return None, Fault.BAD_OBSERVATION, f"expected a mapping of observation arrays, got {kind}"
        arrays = {}
        for spec in self._specs:
            key, shape, dtype = spec.key, spec.shape, spec.dtype
            try:
                if key not in observation:
                    return None, Fault.MISSING_KEY, f"missing key {key!r} (got {sorted(map(repr, observation))[:8]})"
                value = observation[key]
            except Exception as e:  # a mapping whose lookups fail is as unusable as a missing key
                return None, Fault.BAD_OBSERVATION, f"reading {key!r} failed: {type(e).__name__}: {e}"
            if type(value) is not np.ndarray:  # also subclasses (masked arrays, matrices): read their plain values
                try:
                    value = np.asarray(value)
                except Exception as e:  # ragged lists and other objects numpy cannot make an array of
                    return None, Fault.BAD_DTYPE, f"{key!r}: cannot be read as an array ({type(e).__name__}: {e})"
                if type(value) is not np.ndarray:
                    value = np.array(value)
            if value.shape != shape:
                if spec.layout is not None:  # a camera frame is never resized or transposed to fit
                    return None, Fault.BAD_SHAPE, (f"{key!r}: frame of shape {value.shape}, expected {shape} "
                                                   f"({spec.layout} {dtype.name}, as the manifest declares)")
                return None, Fault.BAD_SHAPE, f"{key!r}: shape {value.shape}, expected {shape}"
            if value.dtype != dtype:
                if spec.layout is not None:
                    return None, Fault.BAD_DTYPE, (f"{key!r}: frame of dtype {value.dtype}, expected {dtype.name} "
                                                   f"{shape} ({spec.layout}); frames are never converted")
                # Converting floats to an integer feature (pixels) would silently change their meaning; a boolean
                # for a float feature is a wiring mistake, not a measurement.
                if dtype.kind != "f" or value.dtype.kind not in "fiu":
                    return None, Fault.BAD_DTYPE, f"{key!r}: dtype {value.dtype}, expected {dtype}"
                with np.errstate(over="ignore", invalid="ignore"):
                    value = value.astype(dtype)
            if spec.low is not None:
                # One pass on the fast path: an element inside [low, high] is finite; NaN fails both comparisons.
                if not ((value >= spec.low) & (value <= spec.high)).all():  # one reduction: cheaper than two
                    if not np.isfinite(value).all():
                        return None, Fault.NON_FINITE_OBSERVATION, f"{key!r}: contains NaN or inf"
                    return None, Fault.OUT_OF_RANGE_OBSERVATION, _out_of_range(spec, value)
            elif dtype.kind == "f" and not np.isfinite(value).all():
                return None, Fault.NON_FINITE_OBSERVATION, f"{key!r}: contains NaN or inf"
            arrays[key] = value
        return arrays, None, None


class FrameAgeChecker:
    """Checks the capture times of the camera frames whose manifest feature declares max_age_s (or all camera
    frames against one override). Times are seconds in the runner's clock."""

    def __init__(self, features: Sequence[ObservationFeature], override: float | None | Any = None,
                 use_override: bool = False):
        self.limits: dict[str, float] = {}
        for f in features:
            if f.frame_layout is None:
                continue
            limit = override if use_override else f.max_age_s
            if limit is not None:
                self.limits[f.key] = float(limit)

    def check(self, frame_times: Any, now: float) -> tuple[str | None, str | None]:
        """(None, None) when every checked frame is fresh, else (fault kind, detail)."""
        if not self.limits:
            return None, None
        if frame_times is None:
            frame_times = {}
        if not isinstance(frame_times, Mapping):
            return Fault.BAD_FRAME_TIME, (f"frame_times must map camera keys to capture times (seconds, runner "
                                          f"clock), got {type(frame_times).__name__}")
        for key, limit in self.limits.items():
            if key not in frame_times:
                return Fault.MISSING_FRAME_TIME, (f"{key!r}: no capture time in frame_times; the manifest limits this "
                                                  f"camera's frames to {limit:g} s old, so tick() needs "
                                                  f"frame_times={{{key!r}: <capture time, runner clock>}}")
            stamp = frame_times[key]
            if isinstance(stamp, bool) or not isinstance(stamp, (int, float, np.floating, np.integer)) or \
                    not math.isfinite(float(stamp)):
                return Fault.BAD_FRAME_TIME, f"{key!r}: capture time {stamp!r} is not a finite number of seconds"
            age = now - float(stamp)
            if age < 0:
                return Fault.BAD_FRAME_TIME, (f"{key!r}: capture time {float(stamp):.6f} s is {-age * 1e3:.1f} ms in "
                                              "the future of the runner's clock (a different time base?)")
            if age > limit:
                return Fault.STALE_FRAME, f"{key!r}: frame is {age * 1e3:.1f} ms old, the limit is {limit * 1e3:g} ms"
        return None, None


def _joint_plausibility(feature: ObservationFeature, action: ActionSpec, dtype: np.dtype):
    bounds: dict[int, tuple[float, float]] = {}
    for j, i in enumerate(action.initial_from.indices):  # an element read by two joints gets the union
        span = action.upper[j] - action.lower[j]
        lo, hi = bounds.get(i, (math.inf, -math.inf))
        bounds[i] = (min(lo, action.lower[j] - span), max(hi, action.upper[j] + span))
    low = np.full(feature.shape, -np.inf, dtype)
    high = np.full(feature.shape, np.inf, dtype)
    for i, (lo, hi) in bounds.items():
        low[i], high[i] = lo, hi
    return low, high


def _out_of_range(spec: _Spec, value: np.ndarray) -> str:
    flat, low, high = value.reshape(-1), spec.low.reshape(-1), spec.high.reshape(-1)
    i = int(np.flatnonzero((flat < low) | (flat > high))[0])
    name = f" ({spec.names[i]})" if spec.names is not None else ""
    source = "the manifest's low/high" if spec.declared else "the action limits widened by their range"
    return (f"{spec.key!r}[{i}]{name} = {float(flat[i]):.6g} is outside [{float(low[i]):.6g}, {float(high[i]):.6g}] "
            f"({source})")


class ActionLimiter:
    """Bounds a target: within the latest measured position +- max_tracking_error (if set), within the limits,
    and within max_velocity / hz of the previous command (in that order, so the last two always hold)."""

    def __init__(self, lower: Sequence[float], upper: Sequence[float], max_velocity: np.ndarray | None,
                 control_hz: float, max_tracking_error: np.ndarray | None = None):
        self.lower = np.asarray(lower, np.float32)
        self.upper = np.asarray(upper, np.float32)
        self.max_step = None if max_velocity is None else (np.asarray(max_velocity, np.float64) / control_hz).astype(
            np.float32)
        self.max_tracking = None if max_tracking_error is None else np.asarray(max_tracking_error, np.float32)

    def clamp(self, action: np.ndarray) -> np.ndarray:
        return np.minimum(np.maximum(action, self.lower), self.upper).astype(np.float32, copy=False)

    def apply(self, target: np.ndarray, previous: np.ndarray | None, measured: np.ndarray | None = None
              ) -> np.ndarray:
        """`previous`: the last command (within limits), or the pose the first command starts from; `measured`:
        this tick's measured position in command space (only read when max_tracking_error is set)."""
        action = target
        if self.max_tracking is not None and measured is not None:
            action = np.minimum(np.maximum(action, measured - self.max_tracking), measured + self.max_tracking)
        action = self.clamp(action)
        if previous is not None and self.max_step is not None:
            np.minimum(action, previous + self.max_step, out=action)
            np.maximum(action, previous - self.max_step, out=action)
        return action
