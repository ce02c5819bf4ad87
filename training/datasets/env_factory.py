"""Picklable env constructor, so vector-env workers can be started with 'spawn' (see collection)."""

import importlib
from typing import Any, Dict, List

import gymnasium as gym


class EnvFactory:
    """Imports the modules that register ``env_id`` (a fresh worker has not), then makes the env."""

    def __init__(self, env_id: str, env_kwargs: Dict[str, Any], import_modules: List[str]):
        self.env_id = env_id
        self.env_kwargs = dict(env_kwargs)
        self.import_modules = list(import_modules)

    def __call__(self) -> gym.Env:
        for module in self.import_modules:
            importlib.import_module(module)
        return gym.make(self.env_id, **self.env_kwargs)
