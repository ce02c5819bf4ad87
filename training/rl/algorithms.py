"""Algorithm registry: config -> Stable-Baselines3 model, and the action-space check that runs before training."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from gymnasium import spaces
from sb3_contrib import TQC
from stable_baselines3 import DQN, PPO, SAC, TD3

from training.rl.config import (
    ALGO_CONFIGS,
    AlgoConfig,
    DQNConfig,
    OffPolicyConfig,
    PPOConfig,
    SACConfig,
    TD3Config,
    TQCConfig,
)


@dataclass(frozen=True)
class AlgorithmSpec:
    cls: type  # the Stable-Baselines3 (or sb3-contrib) algorithm class
    action_spaces: tuple[type[spaces.Space], ...]
    off_policy: bool


_ANY_ACTIONS = (spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)
ALGORITHMS: dict[str, AlgorithmSpec] = {
    "ppo": AlgorithmSpec(PPO, _ANY_ACTIONS, off_policy=False),
    "sac": AlgorithmSpec(SAC, (spaces.Box,), off_policy=True),
    "td3": AlgorithmSpec(TD3, (spaces.Box,), off_policy=True),
    "tqc": AlgorithmSpec(TQC, (spaces.Box,), off_policy=True),
    "dqn": AlgorithmSpec(DQN, (spaces.Discrete,), off_policy=True),
}
assert set(ALGORITHMS) == set(ALGO_CONFIGS), "every algorithm needs a config class and a spec"


def algorithm_spec(name: str) -> AlgorithmSpec:
    if name not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {name!r}; choose one of {sorted(ALGORITHMS)} (algo=<name>)")
    return ALGORITHMS[name]


def check_action_space(algo: AlgoConfig, action_space: spaces.Space, env_id: str) -> None:
    """Refuse an algorithm that cannot act in this env, naming both and the algorithms that can."""
    spec = algorithm_spec(algo.name)
    if not isinstance(action_space, spec.action_spaces):
        fitting = sorted(n for n, s in ALGORITHMS.items() if isinstance(action_space, s.action_spaces))
        allowed = ", ".join(s.__name__ for s in spec.action_spaces)
        raise ValueError(
            f"algorithm {algo.name!r} needs a {allowed} action space, but {env_id} has {action_space}; "
            f"algorithms that fit this env: {fitting}"
        )
    if isinstance(action_space, spaces.Box) and not (
        np.isfinite(action_space.low).all() and np.isfinite(action_space.high).all()
    ):
        raise ValueError(f"{env_id} has an unbounded action space {action_space}; SB3 needs finite bounds")


def _activation(name: str):
    import torch.nn as nn

    return {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU, "gelu": nn.GELU, "leaky_relu": nn.LeakyReLU,
            "silu": nn.SiLU}[name]


def _number_or_auto(value: str) -> str | float:
    return value if str(value).startswith("auto") else float(value)


def sb3_kwargs(algo: AlgoConfig, n_actions: int) -> dict:
    """Constructor keyword arguments for the SB3 class (everything except policy, env, seed, verbose)."""
    from stable_baselines3.common.utils import LinearSchedule

    lr = (LinearSchedule(algo.learning_rate, 0.0, 1.0) if algo.learning_rate_schedule == "linear"
          else algo.learning_rate)
    net_arch = [int(w) for w in algo.net_arch]
    policy_kwargs: dict = {"net_arch": net_arch, "activation_fn": _activation(algo.activation_fn)}
    kw: dict = {"learning_rate": lr, "gamma": algo.gamma, "device": algo.device}
    if isinstance(algo, PPOConfig):
        policy_kwargs.update(log_std_init=algo.log_std_init, ortho_init=algo.ortho_init)
        kw.update(n_steps=algo.n_steps, batch_size=algo.batch_size, n_epochs=algo.n_epochs,
                  gae_lambda=algo.gae_lambda, clip_range=algo.clip_range, ent_coef=algo.ent_coef,
                  vf_coef=algo.vf_coef, max_grad_norm=algo.max_grad_norm, target_kl=algo.target_kl,
                  normalize_advantage=algo.normalize_advantage, use_sde=algo.use_sde,
                  sde_sample_freq=algo.sde_sample_freq)
    if isinstance(algo, OffPolicyConfig):
        kw.update(buffer_size=algo.buffer_size, learning_starts=algo.learning_starts, batch_size=algo.batch_size,
                  tau=algo.tau, train_freq=algo.train_freq, gradient_steps=algo.gradient_steps)
    if isinstance(algo, SACConfig):  # and TQC
        policy_kwargs.update(log_std_init=algo.log_std_init, n_critics=algo.n_critics)
        kw.update(ent_coef=_number_or_auto(algo.ent_coef), target_entropy=_number_or_auto(algo.target_entropy),
                  target_update_interval=algo.target_update_interval, use_sde=algo.use_sde,
                  sde_sample_freq=algo.sde_sample_freq)
    if isinstance(algo, TQCConfig):
        policy_kwargs.update(n_quantiles=algo.n_quantiles)
        kw.update(top_quantiles_to_drop_per_net=algo.top_quantiles_to_drop_per_net)
    if isinstance(algo, TD3Config):
        policy_kwargs.update(n_critics=algo.n_critics)
        kw.update(policy_delay=algo.policy_delay, target_policy_noise=algo.target_policy_noise,
                  target_noise_clip=algo.target_noise_clip, action_noise=_action_noise(algo, n_actions))
    if isinstance(algo, DQNConfig):
        kw.update(target_update_interval=algo.target_update_interval, exploration_fraction=algo.exploration_fraction,
                  exploration_initial_eps=algo.exploration_initial_eps,
                  exploration_final_eps=algo.exploration_final_eps, max_grad_norm=algo.max_grad_norm)
    kw["policy_kwargs"] = policy_kwargs
    return kw


def _action_noise(algo: TD3Config, n_actions: int):
    from stable_baselines3.common.noise import NormalActionNoise, OrnsteinUhlenbeckActionNoise

    if algo.action_noise == "none" or algo.action_noise_sigma == 0:
        return None
    mean, sigma = np.zeros(n_actions), np.full(n_actions, algo.action_noise_sigma)
    if algo.action_noise == "normal":
        return NormalActionNoise(mean, sigma)
    return OrnsteinUhlenbeckActionNoise(mean, sigma)


def build_model(algo: AlgoConfig, vec_env, seed: int, verbose: int = 0, inference_only: bool = False):
    """A fresh SB3 model for `vec_env`. inference_only shrinks the replay buffer: the model only serves weights."""
    spec = algorithm_spec(algo.name)
    if inference_only and isinstance(algo, OffPolicyConfig):
        algo = dataclasses.replace(algo, buffer_size=1)
    if inference_only and isinstance(algo, PPOConfig):
        # One local env instead of n_envs: keep the minibatch within the (unused) rollout so SB3 does not warn.
        algo = dataclasses.replace(algo, n_envs=1, batch_size=min(algo.batch_size, algo.n_steps))
    action_space = vec_env.action_space
    n_actions = int(np.prod(action_space.shape)) if isinstance(action_space, spaces.Box) else 1
    return spec.cls(algo.policy, vec_env, seed=seed, verbose=verbose, **sb3_kwargs(algo, n_actions))
