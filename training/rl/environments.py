"""Training envs for SB3: flattened Dict observations, Monitor, Subproc/Dummy vector envs, VecNormalize."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, Mapping

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.wrappers import FlattenObservation

from envs.config import EnvConfig, make_env


@dataclass(frozen=True)
class ObservationLayout:
    """How a Dict observation is flattened into the policy's input vector: keys in order, with their sizes.

    Recorded in every RL checkpoint so evaluation and export rebuild the exact vector the policy was trained on.
    """

    keys: tuple[str, ...]
    sizes: tuple[int, ...]

    @classmethod
    def from_space(cls, space: spaces.Space) -> "ObservationLayout":
        if not isinstance(space, spaces.Dict):
            raise ValueError(f"expected a Dict observation space, got {space}")
        keys, sizes = [], []
        for key, sub in space.spaces.items():
            if not isinstance(sub, spaces.Box):
                raise ValueError(f"observation {key!r} is {sub}; the RL trainer handles Box (state) entries only")
            keys.append(key)
            sizes.append(int(np.prod(sub.shape)))
        return cls(tuple(keys), tuple(sizes))

    @property
    def size(self) -> int:
        return int(sum(self.sizes))

    def flatten(self, observation: Mapping[str, Any]) -> np.ndarray:
        """Batched Dict observation {key: (n, ...)} -> (n, size) float32, in FlattenObservation's order."""
        missing = [k for k in self.keys if k not in observation]
        if missing:
            raise ValueError(f"observation lacks {missing}; the policy expects keys {list(self.keys)}")
        n = np.shape(observation[self.keys[0]])[0]
        parts = []
        for key, size in zip(self.keys, self.sizes):
            value = np.asarray(observation[key], dtype=np.float32).reshape(n, -1)
            if value.shape[1] != size:
                raise ValueError(f"observation {key!r} has {value.shape[1]} values per env, the policy expects {size}")
            parts.append(value)
        return np.concatenate(parts, axis=1)

    def to_dict(self) -> dict[str, Any]:
        return {"keys": list(self.keys), "sizes": list(self.sizes)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ObservationLayout":
        return cls(tuple(data["keys"]), tuple(int(s) for s in data["sizes"]))


def make_flat_env(env_config: EnvConfig, **overrides: Any) -> gym.Env:
    """One task env with its Dict observation flattened (sorted keys, as gymnasium's Dict space orders them)."""
    return FlattenObservation(make_env(env_config, **overrides))


def probe_spaces(env_config: EnvConfig) -> tuple[ObservationLayout, spaces.Space, spaces.Space]:
    """Build one env to read its spaces (fails early with the env's own message on a bad env config)."""
    env = make_env(env_config)
    try:
        layout = ObservationLayout.from_space(env.observation_space)
        return layout, FlattenObservation(env).observation_space, env.action_space
    finally:
        env.close()


def make_training_vec_env(env_config: EnvConfig, n_envs: int, seed: int, vec_env: str, normalize_obs: bool,
                          normalize_reward: bool, gamma: float, clip_obs: float):
    """SB3 VecEnv of `n_envs` monitored, flattened task envs wrapped in VecNormalize (sub-env i seeded seed + i)."""
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecNormalize

    use_subproc = vec_env == "subproc" and n_envs > 1
    venv = make_vec_env(
        partial(make_flat_env, env_config),
        n_envs=n_envs,
        seed=seed,
        vec_env_cls=SubprocVecEnv if use_subproc else DummyVecEnv,
        # forkserver: workers do not inherit the parent's torch threads or open GL contexts.
        vec_env_kwargs={"start_method": "forkserver"} if use_subproc else None,
    )
    return VecNormalize(venv, training=True, norm_obs=normalize_obs, norm_reward=normalize_reward,
                        clip_obs=clip_obs, gamma=gamma)
