"""Dataclass config for building an environment (mirrored by configs/env/*.yaml) and the factory that uses it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

import gymnasium as gym

from envs.randomization import DomainRandomizationConfig
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
    # Task-specific keyword arguments (e.g. reward_type for Reach), passed through unchanged.
    task_kwargs: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_any(cls, value: "EnvConfig | Mapping[str, Any]") -> "EnvConfig":
        if isinstance(value, cls):
            return value
        data = dict(value.items())
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
        task_kwargs = data.get("task_kwargs") or {}
        if not (isinstance(task_kwargs, Mapping) or hasattr(task_kwargs, "items")):
            raise ValueError(f"env.task_kwargs must be a mapping of task arguments, got {task_kwargs!r}")
        data["task_kwargs"] = dict(task_kwargs.items())
        return cls(**data)

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments for gymnasium.make."""
        out: dict[str, Any] = {"obs_mode": self.obs_mode, "randomization": self.randomization}
        for name in ("cameras", "image_size", "control_hz", "timestep", "max_episode_steps"):
            value = getattr(self, name)
            if value is not None:
                out[name] = tuple(value) if isinstance(value, (list, tuple)) else value
        out.update(self.task_kwargs)
        return out


def make_env(config: EnvConfig | Mapping[str, Any], **overrides: Any) -> gym.Env:
    """Build one environment from a config; `overrides` win (e.g. render_mode="rgb_array")."""
    import envs  # noqa: F401  (registration)

    cfg = EnvConfig.from_any(config)
    if not isinstance(cfg.id, str) or cfg.id not in gym.registry:
        ours = sorted(k for k in gym.registry if k.startswith("cerebellum/"))
        raise ValueError(f"unknown environment id {cfg.id!r}{did_you_mean(cfg.id, ours)}; registered tasks: {ours}")
    kwargs = {**cfg.kwargs(), **overrides}
    if kwargs.get("max_episode_steps") is not None:
        # gymnasium.make consumes this one itself (its TimeLimit), where -1 silently means "no limit" and True means 1.
        check_int("make_env", "max_episode_steps", kwargs["max_episode_steps"], minimum=1)
    # Also consumed by gymnasium.make before the env sees it ("human" would add a pygame window wrapper).
    check_choice("make_env", "render_mode", kwargs.get("render_mode"), (None, "rgb_array"))
    return gym.make(cfg.id, **kwargs)


def register_hydra_schema() -> None:
    """Store EnvConfig as `env/base_env` so configs/env/*.yaml are type-checked and typos fail before any work."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(group="env", name="base_env", node=EnvConfig)
