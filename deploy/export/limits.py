"""A bundle's safety defaults from what the training data did: the velocity limit and the observation ranges."""

from __future__ import annotations

import math

import numpy as np

from deploy.runtime import ObservationFeature

from .env_info import STATE_KEY, EnvInfo
from .profile import ACTION_KEY, MotionProfile

# The limit must not slow down anything the demonstrations did, and must stop what they never came near.
VELOCITY_SCALE = 1.5
# A joint that never moved in the data still needs a positive limit; this slow one lets the runner follow small
# corrections without letting an untrained command swing it.
MIN_VELOCITY_FRACTION = 0.05  # of the joint's action range, per second
MIN_VELOCITY = 1e-3  # action units / s, for a joint without finite limits

# Joint positions: the limits plus a margin (soft limits, calibration offsets, sensor noise overshoot them a little).
JOINT_MARGIN_FRACTION = 0.10
MIN_JOINT_MARGIN = {"rad": math.radians(5.0), "m": 0.01}
# Everything else (object poses, targets): objects go where the demonstrations never took them, and a hold on a
# plausible but unseen state would be a regression, so the range is generous: the check is there to stop garbage
# (1e30, a unit mix-up), not to detect novelty. These values live in a frame centred on the robot / workspace, and a
# few demonstrations may all have put the object on one side: the value mirrored through the origin counts as seen.
OTHER_MARGIN_FRACTION = 0.5  # of the data's range and of its largest magnitude, per side
MIN_OTHER_MARGIN = 0.1  # per side, in the element's unit: a dimension constant in the data may still vary a bit
# Units whose values have a known range whatever the demonstrations showed: a cube that tumbles reaches quaternion
# elements the demos never did (seen: |qx| 0.37 in the data, up to 1 in closed loop). The tolerance covers float32
# rounding of a normalized quaternion.
NATURAL_RANGE = {"quaternion": (-1.0 - 1e-3, 1.0 + 1e-3)}


def check_max_velocity(values, info: EnvInfo) -> tuple[float, ...]:
    """A user's max_velocity: one positive finite number for every joint, or one per action dimension."""
    names = list(info.action_names)
    if isinstance(values, (str, bytes)) or not hasattr(values, "__len__"):
        raise ValueError(f"max_velocity must be a list of numbers (one, or one per joint {names}), got {values!r}")
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
            raise ValueError(f"max_velocity entries must be numbers (action units per second), got {v!r}")
        if not (math.isfinite(float(v)) and v > 0):
            raise ValueError(f"max_velocity entries must be finite and > 0 (action units per second), got {v!r}")
        out.append(float(v))
    if len(out) == 1:
        out = out * info.action_dim
    if len(out) != info.action_dim:
        raise ValueError(f"max_velocity has {len(out)} values; give one, or one per action dimension "
                         f"({info.action_dim}: {names})")
    return tuple(out)


def default_max_velocity(info: EnvInfo, profile: MotionProfile) -> tuple[float, ...]:
    """VELOCITY_SCALE x the fastest the data moved each joint: the larger of its command speed (the action targets,
    which the runner's limit acts on: the policy imitates that pace) and its measured speed (observation.state
    through initial_from: what the arm really did). Raises when the profile has neither."""
    speeds = []
    command = profile.speed(ACTION_KEY)
    if command is not None:
        if command.shape != (info.action_dim,):
            raise ValueError(f"{profile.source}: action speeds have {command.size} entries, the env has "
                             f"{info.action_dim} action dimensions")
        speeds.append(command)
    measured = profile.speed(STATE_KEY)
    if measured is not None and info.initial_from is not None:
        indices = np.asarray(info.initial_from.indices)
        if indices.max() < measured.size:
            speeds.append(measured[indices])
    if not speeds:
        raise ValueError(f"cannot derive a default velocity limit: {profile.source} has no joint speeds "
                         "(max_abs_delta of 'action' / 'observation.state'); pass max_velocity=[...] (one value, or "
                         f"one per joint {list(info.action_names)}, in {list(info.action_units)} per second)")
    fastest = np.max(np.stack(speeds), axis=0)
    span = np.asarray(info.action_high, np.float64) - np.asarray(info.action_low, np.float64)
    floor = np.where(np.isfinite(span), MIN_VELOCITY_FRACTION * span, MIN_VELOCITY)
    return tuple(float(v) for v in np.maximum(VELOCITY_SCALE * fastest, np.maximum(floor, MIN_VELOCITY)))


def widened(low: np.ndarray, high: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The data's range [low, high] mirrored through 0 (+-B, B the largest magnitude seen), then widened by
    max(OTHER_MARGIN_FRACTION x range, OTHER_MARGIN_FRACTION x B, MIN_OTHER_MARGIN) on each side."""
    magnitude = np.maximum(np.abs(low), np.abs(high))
    margin = np.maximum(OTHER_MARGIN_FRACTION * np.maximum(high - low, magnitude), MIN_OTHER_MARGIN)
    return np.minimum(low, -magnitude) - margin, np.maximum(high, magnitude) + margin


def _unit_of(feature: ObservationFeature, i: int) -> str:
    return feature.units if isinstance(feature.units, str) else feature.units[i]


def observation_bounds(info: EnvInfo, feature: ObservationFeature, profile: MotionProfile
                       ) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """(low, high) per element for a float feature, None when nothing is known about it (left unchecked).

    Joint positions (observation.state elements that initial_from maps to an action dimension with finite limits):
    the limits +- max(JOINT_MARGIN_FRACTION x range, MIN_JOINT_MARGIN[unit]). Elements in a unit of NATURAL_RANGE:
    that range. Every other element: widened(data range). Either way the data's own range is always inside.
    """
    if not feature.dtype.startswith("float"):
        return None
    size = int(np.prod(feature.shape))
    data_low, data_high = profile.low.get(feature.key), profile.high.get(feature.key)
    if data_low is None or data_low.size != size:
        return None
    low, high = widened(data_low, data_high)
    for i in range(size):
        natural = NATURAL_RANGE.get(_unit_of(feature, i))
        if natural is not None:
            low[i], high[i] = min(natural[0], data_low[i]), max(natural[1], data_high[i])
    if feature.key == STATE_KEY and info.initial_from is not None and info.initial_from.key == STATE_KEY:
        for action_dim, i in enumerate(info.initial_from.indices):
            lo, hi = info.action_low[action_dim], info.action_high[action_dim]
            if not (math.isfinite(lo) and math.isfinite(hi)):
                continue
            margin = max(JOINT_MARGIN_FRACTION * (hi - lo), MIN_JOINT_MARGIN.get(_unit_of(feature, i), 0.0))
            low[i] = min(lo - margin, data_low[i])
            high[i] = max(hi + margin, data_high[i])
    return tuple(float(v) for v in low), tuple(float(v) for v in high)
