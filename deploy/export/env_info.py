"""What a bundle's manifest says about the robot, read from the environment the checkpoint was trained on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from deploy.runtime import ObservationFeature, ObservationSlice
from envs.config import EnvConfig, make_env

STATE_KEY = "observation.state"
ENV_STATE_KEY = "observation.environment_state"
IMAGE_PREFIX = "observation.images."
# environment_state mixes positions, orientations and task values; tasks may declare per-element units/names
# (environment_state_units / environment_state_names), otherwise the manifest says "SI" for the whole vector.
DEFAULT_ENV_STATE_UNITS = "SI"
IMAGE_UNITS = "pixel"


@dataclass(frozen=True)
class EnvInfo:
    """Action and observation metadata of one environment config (the env is built once, never stepped)."""

    env: EnvConfig
    env_id: str
    control_hz: float
    action_names: tuple[str, ...]
    action_units: tuple[str, ...]
    action_low: tuple[float, ...]
    action_high: tuple[float, ...]
    features: dict[str, ObservationFeature]  # dataset key -> feature as the robot delivers it
    initial_from: ObservationSlice | None  # where observation.state holds the commanded joints, in action order

    @property
    def action_dim(self) -> int:
        return len(self.action_names)

    def feature(self, key: str) -> ObservationFeature:
        if key not in self.features:
            raise ValueError(f"the policy reads {key!r}, which env {self.env_id} (obs_mode={self.env.obs_mode!r}, "
                             f"cameras={self.env.cameras}) does not observe; it observes {sorted(self.features)}")
        return self.features[key]


def _names(value: Any, size: int) -> tuple[str, ...] | None:
    if value is None or isinstance(value, str):
        return None
    names = tuple(str(v) for v in value)
    return names if len(names) == size and all(names) else None


def _units(value: Any, size: int, default: str) -> str | tuple[str, ...]:
    if isinstance(value, str) and value:
        return value
    units = _names(value, size)
    return units if units is not None else default


def read_env_info(env_config: EnvConfig, env: Any = None) -> EnvInfo:
    """`env`: an already built instance of env_config to read (left open), else one is built and closed."""
    owned = env is None
    if owned:
        env = make_env(env_config)
    try:
        u = env.unwrapped
        space = env.action_space
        if not hasattr(space, "low") or len(space.shape) != 1:
            raise ValueError(f"env {env_config.id}: only 1-D Box action spaces can be exported, got {space}")
        dim = int(space.shape[0])
        action_names = _names(getattr(u, "action_names", None), dim) or tuple(f"a{i}" for i in range(dim))
        raw_units = getattr(u, "action_units", None)
        action_units = _names(raw_units, dim)
        if action_units is None:
            raise ValueError(f"env {env_config.id}: action_units {raw_units!r} does not give one unit per action "
                             f"dimension ({dim}); the manifest needs them for the robot controller")
        control_hz = getattr(u, "control_hz", None)
        if not control_hz or control_hz <= 0:
            raise ValueError(f"env {env_config.id}: env.unwrapped.control_hz is {control_hz!r}; a bundle needs the "
                             "control frequency")
        features: dict[str, ObservationFeature] = {}
        obs_space = env.observation_space.spaces
        initial_from = None
        if "agent_pos" in obs_space:
            size = int(obs_space["agent_pos"].shape[0])
            names = _names(getattr(u, "joint_names", None), size) or _names(action_names, size)
            # agent_pos reads the positions the actions command (CONTRACTS: joint radians / gripper opening / metres).
            units: str | tuple[str, ...] = DEFAULT_ENV_STATE_UNITS
            if names is not None and set(action_names) <= set(names):
                index = {n: i for i, n in enumerate(names)}
                indices = tuple(index[n] for n in action_names)
                initial_from = ObservationSlice(STATE_KEY, indices)
                by_name = dict(zip(action_names, action_units))
                if set(names) == set(action_names):
                    units = tuple(by_name[n] for n in names)
            features[STATE_KEY] = ObservationFeature(STATE_KEY, (size,), "float32", units, names)
        if "environment_state" in obs_space:
            size = int(obs_space["environment_state"].shape[0])
            features[ENV_STATE_KEY] = ObservationFeature(
                ENV_STATE_KEY, (size,), "float32",
                _units(getattr(u, "environment_state_units", None), size, DEFAULT_ENV_STATE_UNITS),
                _names(getattr(u, "environment_state_names", None), size))
        pixels = obs_space.get("pixels")
        if pixels is not None:
            for cam, cam_space in pixels.spaces.items():
                h, w, c = cam_space.shape
                key = f"{IMAGE_PREFIX}{cam}"
                features[key] = ObservationFeature(key, (int(c), int(h), int(w)), "uint8", IMAGE_UNITS)
        return EnvInfo(
            env=env_config, env_id=env_config.id, control_hz=float(control_hz), action_names=action_names,
            action_units=action_units, action_low=tuple(float(v) for v in np.asarray(space.low)),
            action_high=tuple(float(v) for v in np.asarray(space.high)), features=features,
            initial_from=initial_from,
        )
    finally:
        if owned:
            env.close()
