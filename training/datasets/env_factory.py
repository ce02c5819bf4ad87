"""Picklable env constructor, so vector-env workers can be started with 'spawn' (see collection)."""

import inspect
from typing import Any, Dict, List

import gymnasium as gym

from envs.config import accepts_our_options
from envs.modules import import_user_module


def recording_kwargs(env_id: str, env_kwargs: Dict[str, Any]) -> Dict[str, Any]:
    """`env_kwargs` as the env can take them: collect.yaml's default `obs_mode: state` is one of our options, so it
    is dropped for a foreign env whose constructor has no `obs_mode` (gym-pusht would reject it); any other value
    there is refused, naming the option, since that env could not honour it. Everything else is passed verbatim."""
    kwargs = dict(env_kwargs)
    if "obs_mode" not in kwargs or accepts_our_options(env_id):
        return kwargs
    from gymnasium.envs.registration import load_env_creator

    entry = gym.spec(env_id).entry_point
    creator = load_env_creator(entry) if isinstance(entry, str) else entry
    try:
        params = inspect.signature(creator).parameters
    except (TypeError, ValueError):  # a builtin or C callable: no signature to read, pass it as written
        return kwargs
    if "obs_mode" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return kwargs
    if kwargs["obs_mode"] != "state":
        raise ValueError(f"env_kwargs.obs_mode={kwargs['obs_mode']!r}: {env_id!r} is a foreign env whose constructor "
                         f"has no obs_mode; give its own arguments instead (e.g. gym-pusht's "
                         f"+env_kwargs.obs_type=pixels_agent_pos) and drop obs_mode (~env_kwargs.obs_mode)")
    del kwargs["obs_mode"]
    return kwargs


class EnvFactory:
    """Imports the modules that register ``env_id`` (a fresh worker has not), then makes the env."""

    def __init__(self, env_id: str, env_kwargs: Dict[str, Any], import_modules: List[str]):
        self.env_id = env_id
        self.env_kwargs = dict(env_kwargs)
        self.import_modules = list(import_modules)

    def __call__(self) -> gym.Env:
        for module in self.import_modules:
            import_user_module(module, "import_modules")
        return gym.make(self.env_id, **recording_kwargs(self.env_id, self.env_kwargs))
