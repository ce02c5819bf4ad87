"""What a bundle's manifest says about the robot, read from the environment the checkpoint was trained on (or its
config, for what a foreign env does not declare)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from deploy.runtime import ObservationFeature, ObservationSlice
from envs.base import MujocoTaskEnv
from envs.config import EnvConfig, make_env
from policies.features import ENV_STATE_KEY, STATE_KEY
from training.datasets.observations import ObservationMapping, ObservationMappingError, action_shape, control_rate

IMAGE_PREFIX = "observation.images."
# environment_state mixes positions, orientations and task values; tasks may declare per-element units/names
# (environment_state_units / environment_state_names), otherwise the manifest says "SI" for the whole vector.
DEFAULT_ENV_STATE_UNITS = "SI"
IMAGE_UNITS = "pixel"
# What the manifest says where neither the env nor its config tells: written as such, never guessed.
UNKNOWN = "unknown"


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
    # Where each piece of metadata came from ("env", "env config", "unknown", ...), for the manifest's source.
    origins: dict[str, str] = field(default_factory=dict)

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


def _declared(env_attr: Any, config_value: Any, size: int, what: str,
              env_id: str) -> tuple[tuple[str, ...] | None, str]:
    """(values, origin): the env's own (one per action dimension), else the env config's, else (None, "unknown").
    A config list of the wrong length is an error, not silently dropped."""
    values = _names(env_attr, size)
    if values is not None:
        return values, "env"
    if config_value is not None:
        values = _names(config_value, size)
        if values is None:
            given = config_value if isinstance(config_value, str) else list(config_value)
            raise ValueError(f"env {env_id}: env.{what}={given!r} must give one non-empty name per action dimension "
                             f"({size})")
        return values, "env config"
    return None, UNKNOWN


def read_env_info(env_config: EnvConfig, env: Any = None) -> EnvInfo:
    """`env`: an already built instance of env_config to read (left open), else one is built and closed.

    Control rate: the env's control_hz, else env.control_hz of the config, else metadata["render_fps"]. Action names
    and units: the env's (action_names / action_units attributes), else the config's, else "unknown". Limits: the
    action space's bounds. Observation features: the shared mapping (training.datasets.observations)."""
    owned = env is None
    if owned:
        env = make_env(env_config)
    try:
        u = env.unwrapped
        env_id = env_config.id
        space = env.action_space
        try:
            (dim,) = action_shape(space, f"env {env_id}")
        except ObservationMappingError as err:
            raise ValueError(f"{err}; only those can be exported") from None
        low, high = np.asarray(space.low, np.float64), np.asarray(space.high, np.float64)
        if not (np.isfinite(low).all() and np.isfinite(high).all()):
            raise ValueError(f"env {env_id}: the action space {space} has infinite bounds; a bundle needs the joint "
                             "limits (finite low/high) to clamp every command")
        names, names_from = _declared(getattr(u, "action_names", None), getattr(env_config, "action_names", None), dim,
                                      "action_names", env_id)
        units, units_from = _declared(getattr(u, "action_units", None), getattr(env_config, "action_units", None), dim,
                                      "action_units", env_id)
        raw_units = getattr(u, "action_units", None)
        if raw_units is not None and units_from != "env":
            raise ValueError(f"env {env_id}: action_units {raw_units!r} does not give one unit per action "
                             f"dimension ({dim}); the manifest needs them for the robot controller")
        # Index-suffixed so the rollout files still get one column per dimension.
        action_names = names if names is not None else tuple(f"{UNKNOWN}_{i}" for i in range(dim))
        action_units = units if units is not None else (UNKNOWN,) * dim
        control_hz = control_rate(env, env_config)
        if control_hz is None:
            raise ValueError(f"env {env_id}: its control rate is unknown (no control_hz attribute, no "
                             "metadata['render_fps']); set env.control_hz=<Hz> in the env config, a bundle needs it")
        ours = isinstance(u, MujocoTaskEnv)
        other_units = DEFAULT_ENV_STATE_UNITS if ours else UNKNOWN
        mapping = ObservationMapping.from_env_config(env_config)
        try:
            specs = mapping.features(env.observation_space)
        except ObservationMappingError as err:
            raise ValueError(f"env {env_id}: {err}") from None
        features: dict[str, ObservationFeature] = {}
        initial_from = None
        initial_note = "none: the state does not name the commanded joints; the runtime needs initial_action"
        for key, spec in specs.items():
            if spec.is_image:
                features[key] = ObservationFeature(key, spec.shape, "uint8", IMAGE_UNITS)
                continue
            size = int(np.prod(spec.shape))
            if key == STATE_KEY and len(spec.shape) == 1:
                # agent_pos reads the positions the actions command (CONTRACTS: joint radians / gripper opening /
                # metres; LeRobot datasets name state and action alike), so without joint names of its own a state
                # of the action's size is named after the actions; actions with unknown names name nothing.
                state_names = _names(getattr(u, "joint_names", None), size)
                if state_names is None and names is not None:
                    state_names = _names(names, size)
                state_units: str | tuple[str, ...] = other_units
                if state_names is not None and set(action_names) <= set(state_names):
                    index = {n: i for i, n in enumerate(state_names)}
                    initial_from = ObservationSlice(STATE_KEY, tuple(index[n] for n in action_names))
                    initial_note = "observation.state elements named like the actions"
                    by_name = dict(zip(action_names, action_units))
                    if set(state_names) == set(action_names):
                        state_units = tuple(by_name[n] for n in state_names)
                features[key] = ObservationFeature(key, spec.shape, "float32", state_units, state_names)
            elif key == ENV_STATE_KEY and len(spec.shape) == 1:
                features[key] = ObservationFeature(
                    key, spec.shape, "float32",
                    _units(getattr(u, "environment_state_units", None), size, other_units),
                    _names(getattr(u, "environment_state_names", None), size))
            else:
                features[key] = ObservationFeature(key, spec.shape, "float32", UNKNOWN)
        origins = {"control_hz": "env" if getattr(u, "control_hz", None) else (
                       "env config" if getattr(env_config, "control_hz", None) else "env metadata['render_fps']"),
                   "action_names": names_from, "action_units": units_from,
                   "action_limits": "action space bounds", "initial_from": initial_note}
        return EnvInfo(
            env=env_config, env_id=env_id, control_hz=float(control_hz), action_names=action_names,
            action_units=action_units, action_low=tuple(float(v) for v in low),
            action_high=tuple(float(v) for v in high), features=features, initial_from=initial_from, origins=origins,
        )
    finally:
        if owned:
            env.close()
