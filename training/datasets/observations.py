"""The one mapping between env observations (gym-aloha / gym-pusht keys) and dataset keys (LeRobot names).

The recorder, the trainer's checks, evaluation, export and the closed loop all go through `ObservationMapping`, so an
env observes the same features everywhere:
    agent_pos          -> observation.state               float32
    environment_state  -> observation.environment_state   float32
    pixels[<camera>]   -> observation.images.<camera>     uint8, (3, H, W) when channel_first
    pixels (one array) -> observation.images.<pixels_camera>   (gym-pusht style; camera name from the env config)
    any other key      -> what the env config's obs_key_map says (a LeRobot key, or null to leave it out)
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from .format import IMAGE_PREFIX

STATE_KEYS = {"agent_pos": "observation.state", "environment_state": "observation.environment_state"}
PIXELS = "pixels"
DEFAULT_CAMERA = "top"
OBSERVATION_PREFIX = "observation."
_ORDER = ("observation.state", "observation.environment_state")  # then other vectors, then cameras


class ObservationMappingError(ValueError):
    """An observation (or its space) that the mapping cannot turn into LeRobot features."""


@dataclass(frozen=True)
class FeatureSpec:
    """One dataset feature an env observes: `shape` is per step as the mapping returns it (images (3, H, W))."""

    key: str  # LeRobot key
    source: str  # where it comes from in the observation: "agent_pos", "pixels/top", "pixels", ...
    shape: tuple[int, ...]
    dtype: str  # "float32" | "uint8"

    @property
    def is_image(self) -> bool:
        return self.key.startswith(IMAGE_PREFIX)

    @property
    def camera(self) -> Optional[str]:
        return self.key[len(IMAGE_PREFIX):] if self.is_image else None

    def dataset_feature(self, names: Optional[list[str]] = None) -> dict[str, Any]:
        """The meta/info.json entry the recorder writes (videos height x width x channels)."""
        if self.is_image:
            c, h, w = self.shape
            return {"dtype": "video", "shape": [h, w, c], "names": ["height", "width", "channels"]}
        return {"dtype": self.dtype, "shape": list(self.shape), "names": names}


def _is_mapping_space(space: Any) -> bool:
    return hasattr(space, "spaces") and isinstance(space.spaces, Mapping)


def _check_camera(camera: Any, where: str) -> str:
    if not isinstance(camera, str) or not camera or "/" in camera or "." in camera:
        raise ObservationMappingError(
            f"{where} is an image with no usable camera name ({camera!r}); name it with env.pixels_camera=<name> "
            f"(default {DEFAULT_CAMERA!r}), giving the LeRobot key observation.images.<name>")
    return camera


@dataclass(frozen=True)
class ObservationMapping:
    """How one env's observations become dataset keys (see the module docstring)."""

    pixels_camera: Optional[str] = DEFAULT_CAMERA
    # (env key, LeRobot key or None to leave the key out), from the env config's obs_key_map.
    key_map: tuple[tuple[str, Optional[str]], ...] = ()

    def __post_init__(self) -> None:
        targets: dict[str, str] = {}
        for env_key, target in self.key_map:
            if not isinstance(env_key, str) or not env_key:
                raise ObservationMappingError(f"env.obs_key_map: keys must be observation keys (strings), got "
                                              f"{env_key!r}")
            if target is None:
                continue
            if not isinstance(target, str) or not target.startswith(OBSERVATION_PREFIX) or target.endswith("."):
                raise ObservationMappingError(
                    f"env.obs_key_map[{env_key!r}] = {target!r}: expected a LeRobot observation key such as "
                    "'observation.state', 'observation.environment_state' or 'observation.images.<camera>' (or null "
                    "to leave the key out)")
            if target.startswith(IMAGE_PREFIX):
                _check_camera(target[len(IMAGE_PREFIX):], f"env.obs_key_map[{env_key!r}] = {target!r}")
            if target in targets:
                raise ObservationMappingError(f"env.obs_key_map maps both {targets[target]!r} and {env_key!r} to "
                                              f"{target!r}; each LeRobot key takes one observation")
            targets[target] = env_key
        # Looked up on every step of every rollout: a dict, built once.
        object.__setattr__(self, "_places", {**STATE_KEYS, **dict(self.key_map)})
        object.__setattr__(self, "_pixels_mapped", any(k == PIXELS for k, _ in self.key_map))

    @classmethod
    def from_env_config(cls, env: Any) -> "ObservationMapping":
        """From an EnvConfig (or a mapping of one, e.g. a manifest's source.env); defaults when it has no fields."""
        get = env.get if isinstance(env, Mapping) else (lambda name, default=None: getattr(env, name, default))
        camera = get("pixels_camera", None)
        key_map = get("obs_key_map", None) or {}
        if not (isinstance(key_map, Mapping) or hasattr(key_map, "items")):
            raise ObservationMappingError(f"env.obs_key_map must be a mapping of env key -> LeRobot key, got "
                                          f"{key_map!r}")
        return cls(DEFAULT_CAMERA if camera is None else camera, tuple((str(k), v) for k, v in key_map.items()))

    # ------------------------------------------------------------------------------------------------ placement
    def _target(self, env_key: str) -> Optional[str]:
        """LeRobot key of a non-pixels entry; None to leave it out. Raises for a key with no place."""
        try:
            return self._places[env_key]
        except KeyError:
            pass
        raise ObservationMappingError(
            f"observation key {env_key!r} has no LeRobot key: map it with env.obs_key_map={{{env_key}: "
            f"observation.<name>}} (e.g. observation.state), or leave it out with env.obs_key_map={{{env_key}: null}}")

    # ------------------------------------------------------------------------------------------------ spaces
    def features(self, observation_space: Any) -> dict[str, FeatureSpec]:
        """Every feature an env with this observation space observes, in a fixed order (state, environment state,
        other vectors, cameras). Raises ObservationMappingError naming the first key it cannot place."""
        if not _is_mapping_space(observation_space):
            raise ObservationMappingError(
                f"the observation space is {observation_space}, not a Dict: expected Dict keys agent_pos / "
                "environment_state / pixels (gym-aloha / gym-pusht convention) or others named in env.obs_key_map")
        out: list[FeatureSpec] = []
        for env_key, space in observation_space.spaces.items():
            if env_key == PIXELS and not self._pixels_mapped:
                out.extend(self._camera_specs(space))
                continue
            target = self._target(env_key)
            if target is None:
                continue
            shape = tuple(int(s) for s in getattr(space, "shape", None) or ())
            if target.startswith(IMAGE_PREFIX):
                out.append(self._image_spec(target, env_key, space))
            elif not shape or _is_mapping_space(space):
                raise ObservationMappingError(f"observation key {env_key!r} is {space}, not an array of numbers; "
                                              f"it cannot become {target!r}")
            else:
                out.append(FeatureSpec(target, env_key, shape, "float32"))
        rank = {k: i for i, k in enumerate(_ORDER)}
        # Stable: cameras keep the env's order, other vectors their observation-space order.
        out.sort(key=lambda f: (2 if f.is_image else 0, rank.get(f.key, len(_ORDER))))
        return {f.key: f for f in out}

    def _camera_specs(self, space: Any) -> list[FeatureSpec]:
        if _is_mapping_space(space):
            return [self._image_spec(f"{IMAGE_PREFIX}{_check_camera(cam, f'pixels/{cam}')}", f"{PIXELS}/{cam}", s)
                    for cam, s in space.spaces.items()]
        camera = _check_camera(self.pixels_camera, "obs['pixels'] (a single array)")
        return [self._image_spec(f"{IMAGE_PREFIX}{camera}", PIXELS, space)]

    @staticmethod
    def _image_spec(key: str, source: str, space: Any) -> FeatureSpec:
        shape = tuple(getattr(space, "shape", None) or ())
        dtype = np.dtype(getattr(space, "dtype", None) or np.float64)
        if len(shape) != 3 or shape[-1] != 3 or dtype != np.uint8:
            raise ObservationMappingError(f"observation {source!r} is {space}: an image must be uint8 of shape "
                                          f"(H, W, 3) to become {key!r}")
        h, w, c = (int(v) for v in shape)
        return FeatureSpec(key, source, (c, h, w), "uint8")

    # ------------------------------------------------------------------------------------------------ observations
    def __call__(self, observation: Mapping[str, Any], channel_first: bool = True) -> dict[str, np.ndarray]:
        """One env observation (possibly batched along a leading axis) as dataset keys: float32 vectors, uint8
        images ((..., 3, H, W) when channel_first, else (..., H, W, 3))."""
        if not isinstance(observation, Mapping):
            raise ObservationMappingError(f"expected a dict observation (agent_pos / environment_state / pixels), "
                                          f"got {type(observation).__name__}")
        out: dict[str, np.ndarray] = {}
        for env_key, value in observation.items():
            if env_key == PIXELS and not self._pixels_mapped:
                if isinstance(value, Mapping):
                    for cam, img in value.items():
                        key = f"{IMAGE_PREFIX}{_check_camera(cam, f'pixels/{cam}')}"
                        out[key] = _image(img, cam, channel_first)
                else:
                    camera = _check_camera(self.pixels_camera, "obs['pixels'] (a single array)")
                    out[f"{IMAGE_PREFIX}{camera}"] = _image(value, PIXELS, channel_first)
                continue
            target = self._target(env_key)
            if target is None:
                continue
            if target.startswith(IMAGE_PREFIX):
                out[target] = _image(value, env_key, channel_first)
            else:
                out[target] = np.asarray(value, np.float32)
        if not out:
            raise ObservationMappingError(f"observation has none of {list(STATE_KEYS)} or 'pixels' (nor a key of "
                                          f"env.obs_key_map); keys: {list(observation)}")
        return out


def _image(img: Any, source: str, channel_first: bool) -> np.ndarray:
    img = np.asarray(img)
    if img.dtype != np.uint8 or img.ndim < 3 or img.shape[-1] != 3:
        raise ObservationMappingError(f"camera {source!r}: expected uint8 (..., H, W, 3) pixels, got {img.dtype} "
                                      f"{img.shape}")
    return np.moveaxis(img, -1, -3) if channel_first else img


DEFAULT_MAPPING = ObservationMapping()


def observation_to_dataset(observation: Mapping[str, Any], channel_first: bool = True,
                           mapping: Optional[ObservationMapping] = None) -> dict[str, np.ndarray]:
    """`mapping(observation)`; the default mapping (no obs_key_map, a single pixels array is camera 'top')."""
    return (mapping or DEFAULT_MAPPING)(observation, channel_first)


def action_shape(action_space: Any, env_id: str = "the env") -> tuple[int, ...]:
    """The (A,) shape of a 1-D Box action space; anything else cannot be recorded, imitated or exported."""
    import gymnasium as gym

    if not isinstance(action_space, gym.spaces.Box) or len(action_space.shape) != 1:
        raise ObservationMappingError(f"{env_id}: the action space is {action_space}, expected a 1-D Box (continuous "
                                      "actions); discrete or structured actions cannot be imitated or exported")
    return (int(action_space.shape[0]),)


def control_rate(env: Any, env_config: Any = None) -> Optional[float]:
    """The env's control rate in Hz: its own `control_hz` (our tasks), else the config's `control_hz` (metadata for a
    foreign env), else metadata["render_fps"] (gym-aloha / gym-pusht declare their control rate there); None if
    none says."""
    for value in (getattr(getattr(env, "unwrapped", env), "control_hz", None),
                  getattr(env_config, "control_hz", None) if env_config is not None else None,
                  (getattr(env, "metadata", None) or {}).get("render_fps")):
        if isinstance(value, numbers.Real) and not isinstance(value, bool) and value > 0:
            return float(value)
    return None
