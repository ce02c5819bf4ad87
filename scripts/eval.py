"""Evaluate a checkpoint in simulation: python scripts/eval.py checkpoint=<dir> episodes=200 (see configs/eval.yaml)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
import sys
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import hydra
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig

from apps.closed_loop import BundleRunConfig, evaluate_bundle
from training import cli
from training.evaluation import EvaluateConfig, check_evaluation_inputs, evaluate_checkpoint, load_for_evaluation


@dataclass
class EvalAppConfig(EvaluateConfig):
    """EvaluateConfig plus how an exported bundle runs in closed loop (ignored for checkpoints).

    Declared here rather than in training.evaluation because apps.closed_loop itself builds on that module.
    """

    bundle: BundleRunConfig = field(default_factory=BundleRunConfig)


ConfigStore.instance().store(name="eval_schema", node=EvalAppConfig)


def prepare(cfg) -> EvalAppConfig:
    typed: EvalAppConfig = cli.to_object(cfg)
    if check_evaluation_inputs(typed) == "bundle":
        typed.bundle.validate()
    return typed


@hydra.main(config_path="../configs", config_name="eval", version_base="1.3")
def main(cfg) -> None:
    # A missing or invalid checkpoint or bundle, or a bad value: one line, exit 2.
    with cli.reported(ValueError, FileNotFoundError, NotADirectoryError):
        cfg = cli.prepared(cfg, prepare)
        output_dir = Path(cfg.output_dir or HydraConfig.get().runtime.output_dir)
        if check_evaluation_inputs(cfg) == "bundle":
            result = evaluate_bundle(cfg, output_dir)
        else:
            result = evaluate_checkpoint(cfg, output_dir, loaded=load_for_evaluation(cfg.checkpoint, cfg.device))
    print(result.summary())
    print(f"results: {output_dir / 'results.json'}" + (f"; videos: {output_dir / 'videos'}" if result.videos else ""))


if __name__ == "__main__":
    cli.start(main, "eval", prepare)
