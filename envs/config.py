"""Dataclass config for building an environment (mirrored by configs/env/*.yaml) and the factory that uses it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

import gymnasium as gym
from gymnasium.envs.registration import load_env_creator

from envs.base import MujocoTaskEnv
from envs.randomization import DomainRandomizationConfig
from envs.modules import import_user_module
from envs.validation import check_choice, check_int, did_you_mean


@dataclass
class EnvConfig:
    """What `make_env` needs. `None` fields fall back to the task's own defaults."""

    id: str = "cerebellum/TransferCube-v0"
    obs_mode: str = "state"
    cameras: Optional[list[str]] = None
    image_size: Optional[list[int]] = None
    control_hz: Optional[float] = None
    timestep: Optional[float] = None
    max_episode_steps: Optional[int] = None
    randomization: DomainRandomizationConfig = field(default_factory=DomainRandomizationConfig)
    # Constructor keyword arguments passed to the env verbatim: task options of ours (e.g. reward_type for Reach) or
    # a foreign env's own (e.g. obs_type for gym-pusht). Configs and checkpoints written before issue 17 call this
    # `task_kwargs`; from_any reads that name into this one field.
    kwargs: dict[str, Any] = field(default_factory=dict)
    # Modules imported before gymnasium.make, so a foreign env id registers (e.g. [gym_pusht]); installed packages
    # or the current directory. Checkpoints store the env config, so eval/export of a foreign env re-import them.
    import_modules: list[str] = field(default_factory=list)
    # Observation conventions for foreign envs (see training/datasets/observations.py): the camera name of an env
    # whose obs["pixels"] is one image array, and other Dict observation keys -> LeRobot keys
    # (e.g. {qpos: observation.state}).
    pixels_camera: str = "top"
    obs_key_map: dict[str, str] = field(default_factory=dict)
    # Metadata for envs that do not declare it (ours do); null: taken from the env, else written as "unknown".
    # control_hz above is likewise metadata for a foreign env (never passed to its constructor).
    action_names: Optional[list[str]] = None
    action_units: Optional[list[str]] = None

    @classmethod
    def from_any(cls, value: "EnvConfig | Mapping[str, Any]") -> "EnvConfig":
        if isinstance(value, cls):
            return value
        kwargs_name = "task_kwargs" if "task_kwargs" in value and not value.get("kwargs") else "kwargs"
        data = cls.upgrade(value)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            hints = "".join(did_you_mean(k, known) for k in unknown)
            raise ValueError(f"unknown env option(s) {unknown}{hints}; expected some of {sorted(known)}")
        if "randomization" in data:
            # A mapping given here is complete (Hydra fills every field), so `enabled` is taken as written.
            rand = data["randomization"]
            if isinstance(rand, Mapping) or hasattr(rand, "items"):
                rand = dict(rand.items())
                rand.setdefault("enabled", False)
            data["randomization"] = DomainRandomizationConfig.from_any(rand)
        kwargs = data.get("kwargs") or {}
        if not (isinstance(kwargs, Mapping) or hasattr(kwargs, "items")):
            raise ValueError(f"env.{kwargs_name} must be a mapping of constructor arguments, got {kwargs!r}")
        data["kwargs"] = dict(kwargs.items())
        data["import_modules"] = _string_list("import_modules", data.get("import_modules") or [])
        obs_key_map = data.get("obs_key_map") or {}
        if not (isinstance(obs_key_map, Mapping) or hasattr(obs_key_map, "items")) or not all(
                isinstance(k, str) and isinstance(v, str) and k and v for k, v in obs_key_map.items()):
            raise ValueError(f"env.obs_key_map must map observation keys to LeRobot keys "
                             f"(e.g. {{qpos: observation.state}}), got {obs_key_map!r}")
        data["obs_key_map"] = dict(obs_key_map.items())
        if "pixels_camera" in data and (not isinstance(data["pixels_camera"], str) or not data["pixels_camera"]):
            raise ValueError(f"env.pixels_camera must be a camera name (e.g. top), got {data['pixels_camera']!r}")
        for name in ("action_names", "action_units"):
            if data.get(name) is not None:
                data[name] = _string_list(name, data[name])
        return cls(**data)

    @staticmethod
    def upgrade(value: Mapping[str, Any]) -> dict[str, Any]:
        """A saved env config (e.g. a checkpoint's, merged into a structured schema before from_any sees it) with the
        pre-issue-17 name `task_kwargs` read into `kwargs`: one field, read under either name."""
        data = dict(value.items())
        if "task_kwargs" in data:
            legacy = data.pop("task_kwargs")
            if data.get("kwargs") and legacy and legacy != data["kwargs"]:
                raise ValueError(f"env.task_kwargs={legacy!r} and env.kwargs={data['kwargs']!r} disagree; task_kwargs "
                                 f"is the old name of kwargs: set only env.kwargs")
            if not data.get("kwargs"):
                data["kwargs"] = legacy
        return data

    def make_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for gymnasium.make of one of our tasks (foreign envs get `kwargs` alone: make_env)."""
        out: dict[str, Any] = {"obs_mode": self.obs_mode, "randomization": self.randomization}
        for name in ("cameras", "image_size", "control_hz", "timestep", "max_episode_steps"):
            value = getattr(self, name)
            if value is not None:
                out[name] = tuple(value) if isinstance(value, (list, tuple)) else value
        out.update(self.kwargs)
        return out


def _string_list(name: str, value: Any) -> list[str]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)) and not hasattr(value, "__iter__"):
        raise ValueError(f"env.{name} must be a list of strings, got {value!r}")
    items = list(value)
    if not all(isinstance(v, str) and v for v in items):
        raise ValueError(f"env.{name} must be a list of non-empty strings, got {items!r}")
    return items


def make_env(config: EnvConfig | Mapping[str, Any], **overrides: Any) -> gym.Env:
    """Build one environment from a config; `overrides` win (e.g. render_mode="rgb_array").

    Our tasks get our options (obs_mode, randomization, cameras, ...) plus `kwargs`; a foreign env gets `kwargs`
    verbatim and refuses any of our options set to a non-default value, naming it (it could not honour it).
    """
    cfg = EnvConfig.from_any(config)  # our tasks are registered: importing envs.config ran envs/__init__
    for module in cfg.import_modules:
        try:
            import_user_module(module, "env.import_modules")
        except ModuleNotFoundError as err:
            raise ValueError(str(err)) from None
    if not isinstance(cfg.id, str) or cfg.id not in gym.registry:
        ours = sorted(k for k in gym.registry if k.startswith("cerebellum/"))
        hint = ("; a foreign env registers when its package is imported: add it to env.import_modules (e.g. "
                f"'env.import_modules=[{cfg.id.split('/')[0]}]')" if isinstance(cfg.id, str) and "/" in cfg.id
                and not cfg.id.startswith("cerebellum/") else "")
        raise ValueError(f"unknown environment id {cfg.id!r}{did_you_mean(cfg.id, ours)}; registered tasks: {ours}"
                         f"{hint} (env.import_modules={cfg.import_modules})")
    if accepts_our_options(cfg.id):
        kwargs = {**cfg.make_kwargs(), **overrides}
    else:
        check_foreign_options(cfg)
        kwargs = dict(cfg.kwargs)
        if cfg.max_episode_steps is not None:  # gymnasium.make's own TimeLimit, valid for any env
            kwargs["max_episode_steps"] = cfg.max_episode_steps
        kwargs.update(overrides)
    if kwargs.get("max_episode_steps") is not None:
        # gymnasium.make consumes this one itself (its TimeLimit), where -1 silently means "no limit" and True means 1.
        check_int("make_env", "max_episode_steps", kwargs["max_episode_steps"], minimum=1)
    # Also consumed by gymnasium.make before the env sees it ("human" would add a pygame window wrapper).
    check_choice("make_env", "render_mode", kwargs.get("render_mode"), (None, "rgb_array"))
    return gym.make(cfg.id, **kwargs)


def accepts_our_options(env_id: str) -> bool:
    """Whether `env_id` is built by one of our tasks (a MujocoTaskEnv, whose constructor defines obs_mode,
    randomization, cameras, image_size, control_hz and timestep) rather than a foreign env.

    Decided by the registered entry point's class, not by its id or by parameter names: a foreign constructor may
    well take a `cameras` or `obs_mode` of its own that means something else, and a user's task built on
    MujocoTaskEnv under another namespace honours our options.
    """
    entry = gym.spec(env_id).entry_point
    creator = load_env_creator(entry) if isinstance(entry, str) else entry
    return isinstance(creator, type) and issubclass(creator, MujocoTaskEnv)


# Our options and their defaults: a foreign env cannot honour any other value (it never receives them).
_OUR_OPTION_DEFAULTS = {"obs_mode": "state", "cameras": None, "image_size": None, "timestep": None}


def check_foreign_options(cfg: EnvConfig) -> None:
    """Refuse our options on a foreign env, which never receives them: one error naming the option and the way out."""
    if cfg.randomization.enabled:
        raise ValueError(f"env.randomization.enabled=true: {cfg.id!r} is a foreign env without our domain "
                         f"randomization; set env.randomization.enabled=false (or randomize through its own "
                         f"env.kwargs, if it has any)")
    for name, default in _OUR_OPTION_DEFAULTS.items():
        value = getattr(cfg, name)
        if value != default:
            raise ValueError(f"env.{name}={value!r}: {cfg.id!r} is a foreign env and does not take our option "
                             f"{name!r} (it is never passed to it); leave it at {default!r} and give the env's own "
                             f"constructor arguments in env.kwargs (e.g. gym-pusht's obs_type)")


def register_hydra_schema() -> None:
    """Store EnvConfig as `env/base_env` so configs/env/*.yaml are type-checked and typos fail before any work."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(group="env", name="base_env", node=EnvConfig)
