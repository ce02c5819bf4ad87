"""Dataclass configs of the imitation trainer (mirrored by configs/train.yaml) and their Hydra registration.

The policy field is typed per policy: `register_configs` stores every policy dataclass of policies.factory under the
`policy_schema` group and configs/train.yaml merges the one matching the chosen `policy=<name>` under the YAML, so
`policy.<field>=...` overrides are checked against that policy's own fields before anything is built.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

from omegaconf import MISSING

from envs.config import EnvConfig, register_hydra_schema
from policies.config import PolicyConfig
from policies.factory import config_from_dict as policy_config_from_dict, policy_config_classes
from training.cli import check_finite, to_object
from training.devices import check_device
from training.evaluation import PeriodicEvalConfig
from training.logging import LoggerConfig
from training.run_config import finalize, from_saved, to_dict  # noqa: F401 (finalize, to_dict: this config's API)

SCHEDULERS = ("cosine", "constant")
DEVICES = ("auto", "cpu", "cuda", "mps")
AMP_DTYPES = ("auto", "bf16", "fp16")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
# Metrics a run can return to a Hydra sweeper (the last logged value of the run), by where they come from.
OBJECTIVE_PREFIXES = ("train/", "val/", "eval/")


@dataclass
class DatasetConfig:
    """Which recorded dataset to train on (a LeRobot v3 directory written by scripts/collect.py)."""

    root: str = MISSING
    # Episode indices to use (None: all). The last `val_episodes` of them are held out for the validation loss.
    episodes: Optional[list[int]] = None
    val_episodes: int = 0
    # DataLoader worker processes; 0 loads batches in the training process (fastest for state-only data).
    num_workers: int = 0
    # Decode camera videos into RAM once instead of a memory-mapped cache file (small datasets).
    in_memory_images: bool = False

    def validate(self) -> None:
        if self.root in (MISSING, "", None):
            raise ValueError("dataset.root is not set: pass dataset.root=<dataset directory> (see scripts/collect.py)")
        if self.val_episodes < 0 or self.num_workers < 0:
            raise ValueError(f"dataset.val_episodes and dataset.num_workers must be >= 0, got {self.val_episodes}, "
                             f"{self.num_workers}")


@dataclass
class OptimConfig:
    """AdamW over the policy's parameter groups (their learning rates and weight decay come from the policy config:
    policy.optimizer_lr, ...), a warm-up + cosine (or constant) schedule and gradient clipping."""

    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    grad_clip_norm: float = 10.0  # 0: no clipping
    scheduler: str = "cosine"  # cosine: linear warm-up, then cosine decay to 0 at `steps`
    warmup_steps: int = 500

    def validate(self) -> None:
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"optim.betas must be two numbers in [0, 1), got {list(self.betas)}")
        if not self.eps > 0 or not self.grad_clip_norm >= 0 or self.warmup_steps < 0:
            raise ValueError(f"optim.eps must be > 0, optim.grad_clip_norm and optim.warmup_steps >= 0; got "
                             f"{self.eps}, {self.grad_clip_norm}, {self.warmup_steps}")
        if self.scheduler not in SCHEDULERS:
            raise ValueError(f"optim.scheduler must be one of {SCHEDULERS}, got {self.scheduler!r}")


@dataclass
class TrainCheckpointConfig:
    every_steps: int = 5_000  # 0: only the final checkpoint
    keep_last: int = 2

    def validate(self) -> None:
        if self.every_steps < 0 or self.keep_last < 1:
            raise ValueError(f"checkpoint.every_steps must be >= 0 and checkpoint.keep_last >= 1, got "
                             f"{self.every_steps}, {self.keep_last}")


@dataclass
class ImitationTrainConfig:
    # None (env=null): train from the dataset alone, e.g. one recorded on a real robot; features come from the
    # dataset's info.json and nothing is evaluated in simulation.
    env: Optional[EnvConfig] = None
    policy: PolicyConfig = MISSING
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    eval: PeriodicEvalConfig = field(default_factory=PeriodicEvalConfig)
    checkpoint: TrainCheckpointConfig = field(default_factory=TrainCheckpointConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    steps: int = 100_000
    batch_size: int = 8
    # Stop (and checkpoint) once this much training wall time has accumulated over all segments of the run;
    # evaluation time is not counted. None: no limit.
    max_train_seconds: Optional[float] = None
    seed: int = 0
    device: str = "auto"  # auto: cuda, else mps, else cpu; under torchrun each process uses cuda:<LOCAL_RANK>
    amp: bool = True  # mixed precision: autocast in amp_dtype (float16 with loss scaling)
    # auto: bfloat16 on CUDA (float16 where bf16 is missing), float32 on CPU/MPS; bf16 | fp16: that dtype on any device.
    amp_dtype: str = "auto"
    # torch.compile the policy's training loss (first steps are slow while it compiles); compile_mode: torch's mode.
    compile: bool = False
    compile_mode: str = "default"
    # None: one thread per idle core (see training.imitation.hardware.choose_threads).
    torch_threads: Optional[int] = None
    log_every: int = 100
    # Validation loss on the held-out episodes every this many steps (and at every evaluation); 0: never.
    val_every: int = 0
    val_batches: int = 8
    progress_bar: bool = True
    run_dir: Optional[str] = None  # None: Hydra's run directory
    resume: Optional[str] = None  # a run directory to continue from its latest checkpoint, with its saved config
    init_from: Optional[str] = None  # start from the weights of an imitation checkpoint of the same policy type
    # The metric scripts/train.py returns to a Hydra sweeper (e.g. Optuna): the last logged value of e.g.
    # "eval/success_rate", "val/loss" or "train/loss". None: nothing is returned.
    objective: Optional[str] = None

    def validate(self) -> None:
        check_finite(self)
        self.policy.validate()
        self.dataset.validate()
        self.optim.validate()
        self.eval.validate()
        self.checkpoint.validate()
        for name in ("steps", "batch_size", "log_every", "val_batches"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.val_every < 0:
            raise ValueError(f"val_every must be >= 0, got {self.val_every}")
        if self.max_train_seconds is not None and not self.max_train_seconds > 0:
            raise ValueError(f"max_train_seconds must be > 0 or null, got {self.max_train_seconds}")
        if self.device not in DEVICES and not self.device.startswith("cuda:"):
            raise ValueError(f"device must be one of {DEVICES} or 'cuda:<index>', got {self.device!r}")
        if self.torch_threads is not None and self.torch_threads < 1:
            raise ValueError(f"torch_threads must be >= 1 or null, got {self.torch_threads}")
        if self.amp_dtype not in AMP_DTYPES:
            raise ValueError(f"amp_dtype must be one of {AMP_DTYPES}, got {self.amp_dtype!r}")
        if self.compile_mode not in COMPILE_MODES:
            raise ValueError(f"compile_mode must be one of {COMPILE_MODES}, got {self.compile_mode!r}")
        if self.env is None and self.eval.every_steps:
            raise ValueError(f"eval.every_steps={self.eval.every_steps} evaluates in simulation, but env is null "
                             "(training from the dataset alone); set eval.every_steps=0 or choose an env=...")
        self._validate_objective()

    def _validate_objective(self) -> None:
        """A sweep must not learn only after its first trial that the metric it optimizes is never logged."""
        name = self.objective
        if name is None:
            return
        if not name.startswith(OBJECTIVE_PREFIXES):
            raise ValueError(f"objective must name a logged metric starting with {OBJECTIVE_PREFIXES} (e.g. "
                             f"eval/success_rate, val/loss, train/loss), got {name!r}")
        if name.startswith("eval/") and self.env is None:
            raise ValueError(f"objective={name} needs an evaluation in simulation, but env is null")
        if name.startswith("eval/") and self.eval.final_episodes == 0:
            raise ValueError(f"objective={name} needs the final evaluation: set eval.final_episodes >= 1")
        if name.startswith("val/") and self.dataset.val_episodes == 0:
            raise ValueError(f"objective={name} needs held-out episodes: set dataset.val_episodes >= 1")


def register_configs() -> None:
    """ConfigStore entries: train_schema, policy_schema/<name> (merged under configs/policy/<name>.yaml by the
    defaults list of configs/train.yaml, so the policy YAML files need no defaults list of their own), env, logger."""
    from hydra.core.config_store import ConfigStore

    register_hydra_schema()
    store = ConfigStore.instance()
    store.store(name="train_schema", node=ImitationTrainConfig)
    for name, cls in policy_config_classes().items():
        store.store(group="policy_schema", name=name, node=cls)
        if not cls.__module__.startswith("policies."):
            # A family from an installed package has no configs/policy/<name>.yaml: `policy=<name>` selects its
            # dataclass defaults (the YAML files of the built-in families come first on Hydra's search path).
            store.store(group="policy", name=name, node={"type": name})
    store.store(group="logger", name="base_logger", node=LoggerConfig)


def from_hydra(cfg: Any) -> ImitationTrainConfig:
    """scripts/train.py's config: the composed DictConfig typed, finalized and validated (devices included)."""
    typed = finalize(to_object(cfg))
    check_device(typed.device)  # here, not in validate(): a saved config may name a GPU this machine lacks
    if typed.run_dir is not None and Path(typed.run_dir).exists() and not Path(typed.run_dir).is_dir():
        raise ValueError(f"run_dir={typed.run_dir!r} is a file, not a directory")
    return typed


def config_from_dict(data: Mapping[str, Any]) -> ImitationTrainConfig:
    """A typed config from a plain one (e.g. a checkpoint's config.yaml); unknown fields fail clearly."""
    policy = dict(data.get("policy") or {})
    classes = policy_config_classes()
    if policy.get("type") not in classes:
        raise ValueError(f"config names policy type {policy.get('type')!r}; known policies: {sorted(classes)}")
    policy_config_from_dict(policy)  # unknown or bad policy fields, named with the closest known one
    return from_saved(ImitationTrainConfig(policy=classes[policy["type"]]()), data)
