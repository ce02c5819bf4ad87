"""What the imitation and RL run configs share: finishing a Hydra-built config, reading a saved one, saving it."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, TypeVar

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from envs.config import EnvConfig
from training.cli import one_line
from training.logging import LoggerConfig

Config = TypeVar("Config")


def finalize(cfg: Config) -> Config:
    """Turn Hydra-built pieces (env, logger) into our dataclasses with their own checks, then validate the whole."""
    if cfg.env is not None:  # imitation without an env (env=null) trains from the dataset alone
        cfg.env = EnvConfig.from_any(dataclasses.asdict(cfg.env) if dataclasses.is_dataclass(cfg.env) else cfg.env)
    cfg.logger = LoggerConfig(**dataclasses.asdict(cfg.logger))
    cfg.validate()
    return cfg


def from_saved(schema: Config, data: Mapping[str, Any]) -> Config:
    """A saved (plain) config merged into `schema`, an instance of the typed config; finalized. An unknown key or
    a value of the wrong type fails as one ValueError line."""
    data = dict(data)
    if isinstance(data.get("env"), Mapping):  # checkpoints saved before issue 17 name env.kwargs task_kwargs
        data["env"] = EnvConfig.upgrade(data["env"])
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), data)
    except OmegaConfBaseException as err:
        raise ValueError(one_line(err)) from None
    return finalize(OmegaConf.to_object(merged))


def to_dict(cfg: Any) -> dict[str, Any]:
    """The config as plain, resolved data (what a run saves in config.json and checkpoints)."""
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)  # type: ignore[return-value]
