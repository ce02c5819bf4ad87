"""Dataclass configs of the RL trainer (mirrored by configs/train_rl.yaml, configs/algo/*.yaml, configs/logger/*.yaml).

One dataclass per algorithm so Hydra type-checks `algo.<field>=...` overrides against that algorithm's own fields:
a PPO-only field given to SAC, or a typo, fails before anything is built.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

from omegaconf import MISSING

from envs.config import EnvConfig, register_hydra_schema
from training.cli import check_finite, to_object
from training.devices import check_device
from training.evaluation import PeriodicEvalConfig
from training.logging import LoggerConfig
from training.run_config import finalize, from_saved, to_dict  # noqa: F401 (finalize, to_dict: this config's API)

ACTIVATIONS = ("tanh", "relu", "elu", "gelu", "leaky_relu", "silu")
SCHEDULES = ("constant", "linear")
ACTION_NOISES = ("none", "normal", "ornstein_uhlenbeck")
VEC_ENVS = ("subproc", "dummy")


@dataclass
class AlgoConfig:
    """Fields every algorithm has. `name` selects the SB3 class (see training.rl.algorithms.ALGORITHMS)."""

    name: str = MISSING
    policy: str = "MlpPolicy"
    learning_rate: float = 3e-4
    # "linear": decays to 0 over total_timesteps (SB3 progress_remaining), "constant": fixed.
    learning_rate_schedule: str = "constant"
    gamma: float = 0.99
    # Parallel training envs and observation/reward normalization (VecNormalize) belong to the algorithm's
    # hyperparameters, as in rl-baselines3-zoo.
    n_envs: int = 1
    normalize_obs: bool = True
    normalize_reward: bool = False
    clip_obs: float = 10.0
    net_arch: list[int] = field(default_factory=lambda: [256, 256])
    activation_fn: str = "relu"
    device: str = "cpu"

    def validate(self) -> None:
        if not self.learning_rate > 0:
            raise ValueError(f"algo.learning_rate must be > 0, got {self.learning_rate}")
        if self.learning_rate_schedule not in SCHEDULES:
            raise ValueError(f"algo.learning_rate_schedule must be one of {SCHEDULES}, got {self.learning_rate_schedule!r}")
        if not 0 < self.gamma <= 1:
            raise ValueError(f"algo.gamma must be in (0, 1], got {self.gamma}")
        if self.n_envs < 1:
            raise ValueError(f"algo.n_envs must be >= 1, got {self.n_envs}")
        if not self.clip_obs > 0:
            raise ValueError(f"algo.clip_obs must be > 0, got {self.clip_obs}")
        if not self.net_arch or any(int(w) < 1 for w in self.net_arch):
            raise ValueError(f"algo.net_arch must list layer widths >= 1, got {list(self.net_arch)}")
        if self.activation_fn not in ACTIVATIONS:
            raise ValueError(f"algo.activation_fn must be one of {ACTIVATIONS}, got {self.activation_fn!r}")


@dataclass
class PPOConfig(AlgoConfig):
    name: str = "ppo"
    n_steps: int = 2048
    batch_size: int = 64
    n_epochs: int = 10
    gae_lambda: float = 0.95
    clip_range: float = 0.2
    ent_coef: float = 0.0
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    target_kl: Optional[float] = None
    normalize_advantage: bool = True
    use_sde: bool = False
    sde_sample_freq: int = -1
    log_std_init: float = 0.0
    ortho_init: bool = True
    net_arch: list[int] = field(default_factory=lambda: [64, 64])
    activation_fn: str = "tanh"

    def validate(self) -> None:
        super().validate()
        if self.n_steps < 1 or self.batch_size < 1 or self.n_epochs < 1:
            raise ValueError(f"algo.n_steps, batch_size and n_epochs must be >= 1, got "
                             f"{self.n_steps}, {self.batch_size}, {self.n_epochs}")
        rollout = self.n_steps * self.n_envs
        if self.batch_size > rollout:
            raise ValueError(f"algo.batch_size={self.batch_size} exceeds the rollout size n_steps*n_envs={rollout}")
        if rollout < 2:
            raise ValueError("PPO needs n_steps * n_envs > 1 (advantage normalization)")
        if not 0 <= self.gae_lambda <= 1:
            raise ValueError(f"algo.gae_lambda must be in [0, 1], got {self.gae_lambda}")
        for name in ("clip_range", "max_grad_norm"):
            if not getattr(self, name) > 0:
                raise ValueError(f"algo.{name} must be > 0, got {getattr(self, name)}")
        for name in ("ent_coef", "vf_coef"):
            if getattr(self, name) < 0:
                raise ValueError(f"algo.{name} must be >= 0, got {getattr(self, name)}")
        if self.target_kl is not None and not self.target_kl > 0:
            raise ValueError(f"algo.target_kl must be > 0 or null, got {self.target_kl}")


@dataclass
class OffPolicyConfig(AlgoConfig):
    buffer_size: int = 1_000_000
    learning_starts: int = 100
    batch_size: int = 256
    tau: float = 0.005
    train_freq: int = 1
    gradient_steps: int = 1

    def validate(self) -> None:
        super().validate()
        if self.buffer_size < 1 or self.batch_size < 1 or self.train_freq < 1:
            raise ValueError(f"algo.buffer_size, batch_size and train_freq must be >= 1, got "
                             f"{self.buffer_size}, {self.batch_size}, {self.train_freq}")
        if self.learning_starts < 0:
            raise ValueError(f"algo.learning_starts must be >= 0, got {self.learning_starts}")
        if self.gradient_steps == 0 or self.gradient_steps < -1:
            raise ValueError(f"algo.gradient_steps must be >= 1 or -1 (as many as env steps), got {self.gradient_steps}")
        if not 0 < self.tau <= 1:
            raise ValueError(f"algo.tau must be in (0, 1], got {self.tau}")


@dataclass
class SACConfig(OffPolicyConfig):
    name: str = "sac"
    # "auto", "auto_<initial value>" (learned) or a fixed number written as a string, e.g. "0.01" (SB3 convention).
    ent_coef: str = "auto"
    target_entropy: str = "auto"
    target_update_interval: int = 1
    use_sde: bool = False
    sde_sample_freq: int = -1
    log_std_init: float = -3.0
    n_critics: int = 2

    def validate(self) -> None:
        super().validate()
        _check_auto_or_number("algo.ent_coef", self.ent_coef, allow_auto_init=True)
        _check_auto_or_number("algo.target_entropy", self.target_entropy, allow_auto_init=False)


@dataclass
class TQCConfig(SACConfig):
    name: str = "tqc"
    n_quantiles: int = 25
    top_quantiles_to_drop_per_net: int = 2
    n_critics: int = 2

    def validate(self) -> None:
        super().validate()
        if not 0 <= self.top_quantiles_to_drop_per_net < self.n_quantiles:
            raise ValueError(f"algo.top_quantiles_to_drop_per_net must be in [0, n_quantiles={self.n_quantiles}), "
                             f"got {self.top_quantiles_to_drop_per_net}")


@dataclass
class TD3Config(OffPolicyConfig):
    name: str = "td3"
    learning_rate: float = 1e-3
    learning_starts: int = 1000
    policy_delay: int = 2
    target_policy_noise: float = 0.2
    target_noise_clip: float = 0.5
    # Exploration noise on the policy's [-1, 1]-scaled actions.
    action_noise: str = "normal"
    action_noise_sigma: float = 0.1
    n_critics: int = 2
    net_arch: list[int] = field(default_factory=lambda: [400, 300])

    def validate(self) -> None:
        super().validate()
        if self.action_noise not in ACTION_NOISES:
            raise ValueError(f"algo.action_noise must be one of {ACTION_NOISES}, got {self.action_noise!r}")
        for name in ("action_noise_sigma", "target_policy_noise", "target_noise_clip"):
            if getattr(self, name) < 0:
                raise ValueError(f"algo.{name} must be >= 0, got {getattr(self, name)}")
        if self.policy_delay < 1:
            raise ValueError(f"algo.policy_delay must be >= 1, got {self.policy_delay}")


@dataclass
class DQNConfig(OffPolicyConfig):
    """Discrete actions only; kept so `algo=dqn` on a continuous task fails with a clear message, and for
    discrete-action envs registered by users."""

    name: str = "dqn"
    learning_rate: float = 1e-4
    buffer_size: int = 1_000_000
    batch_size: int = 32
    tau: float = 1.0
    train_freq: int = 4
    target_update_interval: int = 10_000
    exploration_fraction: float = 0.1
    exploration_initial_eps: float = 1.0
    exploration_final_eps: float = 0.05
    max_grad_norm: float = 10.0
    net_arch: list[int] = field(default_factory=lambda: [64, 64])

    def validate(self) -> None:
        super().validate()
        if not 0 < self.exploration_fraction <= 1:
            raise ValueError(f"algo.exploration_fraction must be in (0, 1], got {self.exploration_fraction}")
        if not 0 <= self.exploration_final_eps <= self.exploration_initial_eps <= 1:
            raise ValueError(f"algo: need 0 <= exploration_final_eps <= exploration_initial_eps <= 1, got "
                             f"{self.exploration_final_eps}, {self.exploration_initial_eps}")
        if self.target_update_interval < 1 or not self.max_grad_norm > 0:
            raise ValueError(f"algo.target_update_interval must be >= 1 and algo.max_grad_norm > 0, got "
                             f"{self.target_update_interval}, {self.max_grad_norm}")


ALGO_CONFIGS: dict[str, type[AlgoConfig]] = {
    "ppo": PPOConfig, "sac": SACConfig, "tqc": TQCConfig, "td3": TD3Config, "dqn": DQNConfig,
}


def _check_auto_or_number(name: str, value: str, allow_auto_init: bool) -> None:
    text = str(value)
    if text == "auto":
        return
    if allow_auto_init and text.startswith("auto_"):
        text = text[len("auto_"):]
    try:
        number = float(text)
    except ValueError:
        raise ValueError(f"{name} must be 'auto'{', auto_<float>' if allow_auto_init else ''} or a number, "
                         f"got {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if allow_auto_init and number <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")


@dataclass
class RLEvalConfig(PeriodicEvalConfig):
    """Periodic evaluation during RL training; videos only on every `video_every`-th periodic evaluation and the final
    one (rendering is slow on CPU-only machines; video_episodes=0 switches videos off)."""

    every_steps: int = 20_000
    video_episodes: int = 1
    video_every: int = 5

    def validate(self) -> None:
        super().validate()
        if self.video_every < 0:
            raise ValueError(f"eval.video_every must be >= 0, got {self.video_every}")


@dataclass
class TrainCheckpointConfig:
    every_steps: int = 50_000  # 0: only the final checkpoint
    keep_last: int = 3
    # Off-policy algorithms: store the replay buffer (safetensors) so a resumed run continues with the same data.
    save_replay_buffer: bool = True

    def validate(self) -> None:
        if self.every_steps < 0:
            raise ValueError(f"checkpoint.every_steps must be >= 0, got {self.every_steps}")
        if self.keep_last < 1:
            raise ValueError(f"checkpoint.keep_last must be >= 1, got {self.keep_last}")


@dataclass
class RLTrainConfig:
    env: EnvConfig = field(default_factory=lambda: EnvConfig(id="cerebellum/Reach-v0"))
    algo: AlgoConfig = MISSING
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    eval: RLEvalConfig = field(default_factory=RLEvalConfig)
    checkpoint: TrainCheckpointConfig = field(default_factory=TrainCheckpointConfig)
    total_timesteps: int = 200_000
    # Stop early (and checkpoint) once training has run this long; None: no limit. Benchmarks use it.
    max_train_seconds: Optional[float] = None
    seed: int = 0
    vec_env: str = "dummy"
    torch_threads: int = 1
    progress_bar: bool = True
    # SB3 console tables (0: none, 1: every log interval).
    verbose: int = 0
    # None: Hydra's run directory.
    run_dir: Optional[str] = None
    # A run directory to continue from its latest checkpoint (its saved config is used).
    resume: Optional[str] = None
    # Set by configs/algo/tuned/<algo>_<env>.yaml: the env id its hyperparameters were tuned for. The tuned file is
    # picked by the env *group* name, so `env.id=<another env>` on top of env=reach would silently train with Reach's
    # tuning; validate refuses that. null (a user's own algo/tuned file may leave it so): applies to any env.
    tuned_for: Optional[str] = None

    def validate(self) -> None:
        check_finite(self)
        if self.tuned_for is not None and self.tuned_for != self.env.id:
            raise ValueError(
                f"the tuned hyperparameters applied (configs/algo/tuned/, tuned_for={self.tuned_for!r}) were tuned for "
                f"{self.tuned_for}, not env.id={self.env.id!r}: add '~algo/tuned' to start from the generic "
                f"configs/algo/<algo>.yaml, or 'algo/tuned=<file>' for tuning of your own (an env group of its own, "
                f"e.g. env=gym_pusht, gets the generic settings by itself)")
        self.algo.validate()
        self.eval.validate()
        self.checkpoint.validate()
        if self.total_timesteps < 1:
            raise ValueError(f"total_timesteps must be >= 1, got {self.total_timesteps}")
        if self.max_train_seconds is not None and not self.max_train_seconds > 0:
            raise ValueError(f"max_train_seconds must be > 0 or null, got {self.max_train_seconds}")
        if self.vec_env not in VEC_ENVS:
            raise ValueError(f"vec_env must be one of {VEC_ENVS}, got {self.vec_env!r}")
        if self.torch_threads < 1:
            raise ValueError(f"torch_threads must be >= 1, got {self.torch_threads}")
        if self.env.obs_mode != "state":
            raise ValueError(f"the RL trainer uses state observations (MLP policies); env.obs_mode must be 'state', "
                             f"got {self.env.obs_mode!r}")


def register_configs() -> None:
    """Store the schemas in Hydra's ConfigStore: train_rl_schema, algo/<name>_schema, logger/base_logger, env."""
    from hydra.core.config_store import ConfigStore

    register_hydra_schema()
    store = ConfigStore.instance()
    store.store(name="train_rl_schema", node=RLTrainConfig)
    for name, cls in ALGO_CONFIGS.items():
        store.store(group="algo", name=f"{name}_schema", node=cls)
    store.store(group="logger", name="base_logger", node=LoggerConfig)


def config_from_dict(data: Mapping[str, Any]) -> RLTrainConfig:
    """Rebuild a typed config from a saved (plain) one, e.g. a checkpoint's config.yaml; validates field names."""
    name = dict(data.get("algo") or {}).get("name")
    if name not in ALGO_CONFIGS:
        raise ValueError(f"config names algorithm {name!r}; known algorithms: {sorted(ALGO_CONFIGS)}")
    return from_saved(RLTrainConfig(algo=ALGO_CONFIGS[name]()), data)


def from_hydra(cfg: Any) -> RLTrainConfig:
    """scripts/train_rl.py's config: the composed DictConfig typed, finalized and validated (the device included)."""
    typed = finalize(to_object(cfg))
    check_device(typed.algo.device, "algo.device")  # not in validate(): a saved config may name a missing GPU
    return typed
