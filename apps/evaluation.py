"""Evaluate any checkpoint kind (imitation, RL) or exported bundle in simulation: scripts/eval.py's config and dispatch.

The kind is read from the path (a bundle's manifest.json, else the checkpoint's checkpoint.json) and picks one loader
from LOADERS; every kind then runs through the same training.evaluation loop and writes the same results.json and
videos/ (a bundle adds its runner statistics, and with bundle.rollouts its rollouts/).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

from omegaconf import MISSING

from apps import closed_loop
from apps.closed_loop import BundleRunConfig
from envs.config import EnvConfig
from envs.randomization import DomainRandomizationConfig
from training.checkpoints import META_FILE, resolve_checkpoint
from training.devices import check_device
from training.evaluation import EvaluationResult, LoadedPolicy, evaluate, make_eval_envs, write_results
from training.imitation import checkpoint as imitation_checkpoint
from training.rl import checkpoint as rl_checkpoint

BUNDLE_MANIFEST = "manifest.json"
RANDOMIZATION_CHOICES = (None, True, False, "visual")

# kind -> loader(path, device) returning a LoadedPolicy ("bundle" also takes how it runs: a BundleRunConfig).
LOADERS: dict[str, Callable[..., LoadedPolicy]] = {
    "imitation": imitation_checkpoint.load_for_evaluation,
    "rl": rl_checkpoint.load_for_evaluation,
    "bundle": closed_loop.load_for_evaluation,
}


@dataclass
class EvaluateConfig:
    """scripts/eval.py's config (mirrored by configs/eval.yaml)."""

    checkpoint: str = MISSING
    episodes: int = 50
    # Episode i runs on seed + i; away from the small seeds that expert demonstrations are usually recorded on.
    seed: int = 100_000
    n_envs: int = 4
    # Sub-envs in worker processes (AsyncVectorEnv); null: when the machine has more than one core. Same results.
    async_envs: Optional[bool] = False
    video_episodes: int = 2
    # None: the Hydra run directory.
    output_dir: Optional[str] = None
    # None: as trained; true/false switches the env's domain randomization (its trained ranges) on/off for this
    # evaluation; "visual": camera pose, lights and colours only, physics nominal (DomainRandomizationConfig.visual_only).
    randomization: Optional[Any] = None
    device: str = "cpu"
    progress: bool = True  # finished episodes: a bar on a terminal, a plain line every 30 s elsewhere
    # Exported bundles only (ignored for checkpoints): how ChunkRunner runs in closed loop.
    bundle: BundleRunConfig = field(default_factory=BundleRunConfig)

    def __post_init__(self) -> None:
        if isinstance(self.bundle, Mapping):
            self.bundle = BundleRunConfig(**self.bundle)
        self.validate()

    def validate(self) -> None:
        for name in ("episodes", "n_envs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.video_episodes < 0:
            raise ValueError(f"video_episodes must be >= 0, got {self.video_episodes}")
        if self.randomization not in RANDOMIZATION_CHOICES:
            raise ValueError(f"randomization must be one of null (as trained), true, false or 'visual', got "
                             f"{self.randomization!r}")
        if self.output_dir is not None and Path(self.output_dir).exists() and not Path(self.output_dir).is_dir():
            raise ValueError(f"output_dir={self.output_dir!r} is a file, not a directory")


def with_randomization(env: EnvConfig, choice: Any) -> EnvConfig:
    """The env config with an evaluation's `randomization` choice applied (see EvaluateConfig.randomization)."""
    if choice is None:
        return env
    if choice == "visual":
        return dataclasses.replace(env, randomization=DomainRandomizationConfig.visual_only())
    return dataclasses.replace(env, randomization=dataclasses.replace(env.randomization, enabled=bool(choice)))


def detect_kind(path: str | Path) -> str:
    """'bundle' for an exported bundle (manifest.json), else the kind in the checkpoint's checkpoint.json."""
    path = Path(path).expanduser()
    if path.is_dir() and (path / BUNDLE_MANIFEST).is_file():
        return "bundle"
    ckpt = resolve_checkpoint(path)
    try:
        kind = json.loads((ckpt / META_FILE).read_text()).get("kind")
    except (json.JSONDecodeError, AttributeError) as err:
        raise ValueError(f"{ckpt / META_FILE} is not a valid checkpoint metadata file: {err}") from err
    if not isinstance(kind, str):
        raise ValueError(f"{ckpt / META_FILE} has no 'kind' field")
    return kind


def _loader(kind: str, path: str | Path) -> Callable[..., LoadedPolicy]:
    if kind not in LOADERS:
        raise ValueError(f"no evaluation loader for {kind!r} checkpoints ({path}); known kinds: {sorted(LOADERS)}")
    return LOADERS[kind]


def load_for_evaluation(path: str | Path, device: str = "cpu", bundle: BundleRunConfig | None = None
                        ) -> LoadedPolicy:
    """The env and policy factory of any checkpoint, run directory or bundle; `bundle` (default BundleRunConfig())
    says how a bundle runs and is ignored for checkpoints."""
    kind = detect_kind(path)
    loader = _loader(kind, path)
    if kind == "bundle":
        return loader(Path(path), device, bundle)
    return loader(Path(path), device)


def check_evaluation_inputs(cfg: EvaluateConfig) -> str:
    """What scripts/eval.py checks before any work: the values, the device and that `checkpoint` names a checkpoint,
    run dir or bundle (returns its kind; for a bundle, its run config is checked too)."""
    if cfg.checkpoint in (MISSING, "", None):
        raise ValueError("no checkpoint given: pass checkpoint=<checkpoint dir, run dir or bundle dir>")
    cfg.validate()
    check_device(cfg.device)
    kind = detect_kind(cfg.checkpoint)
    _loader(kind, cfg.checkpoint)
    if kind == "bundle":
        cfg.bundle.validate()
    return kind


def evaluate_checkpoint(cfg: EvaluateConfig, output_dir: str | Path, loaded: LoadedPolicy | None = None
                        ) -> EvaluationResult:
    """Load any checkpoint kind or bundle (unless already `loaded`), evaluate it, write videos/ and results.json (and
    what the policy adds, e.g. a bundle's rollouts/) to output_dir."""
    if cfg.checkpoint in (MISSING, "", None):
        raise ValueError("no checkpoint given: pass checkpoint=<checkpoint dir, run dir or bundle dir>")
    if loaded is None:
        loaded = load_for_evaluation(cfg.checkpoint, cfg.device, cfg.bundle)
    env = loaded.env
    env = with_randomization(env, cfg.randomization)
    output_dir = Path(output_dir)
    envs = make_eval_envs(env, cfg.n_envs, cfg.async_envs)
    policy = None
    try:
        policy = loaded.make_policy(cfg.n_envs)
        result = evaluate(
            envs,
            policy,
            episodes=cfg.episodes,
            seed=cfg.seed,
            video_episodes=cfg.video_episodes,
            video_dir=output_dir / "videos",
            metadata={**loaded.metadata, "checkpoint": str(Path(cfg.checkpoint).resolve()),
                      "randomization": bool(env.randomization.enabled)},
            progress=cfg.progress,
        )
    finally:
        envs.close()
        if hasattr(policy, "close"):
            policy.close()
    if hasattr(policy, "results"):
        result.metadata.update(policy.results(result, output_dir))
    write_results(result, output_dir / "results.json")
    return result


def evaluate_bundle(cfg: EvaluateConfig, output_dir: str | Path, run: BundleRunConfig | None = None
                    ) -> EvaluationResult:
    """evaluate_checkpoint for the bundle at cfg.checkpoint, run as `run` (default: cfg.bundle)."""
    return evaluate_checkpoint(cfg, output_dir, closed_loop.load_for_evaluation(cfg.checkpoint, cfg.device,
                                                                                run or cfg.bundle))
