"""Evaluate a checkpoint, run dir or bundle in sim: python scripts/eval.py checkpoint=<dir> (see configs/eval.yaml)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import hydra  # noqa: E402
from hydra.core.config_store import ConfigStore  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402

from apps.evaluation import EvaluateConfig, check_evaluation_inputs, evaluate_checkpoint  # noqa: E402
from training import cli  # noqa: E402

ConfigStore.instance().store(name="eval_schema", node=EvaluateConfig)


def prepare(cfg) -> EvaluateConfig:
    typed: EvaluateConfig = cli.to_object(cfg)
    check_evaluation_inputs(typed)
    return typed


@hydra.main(config_path="../configs", config_name="eval", version_base="1.3")
def main(cfg) -> None:
    # A missing or invalid checkpoint or bundle, or a bad value: one line, exit 2.
    with cli.reported(ValueError, FileNotFoundError, NotADirectoryError):
        cfg = cli.prepared(cfg, prepare)
        output_dir = Path(cfg.output_dir or HydraConfig.get().runtime.output_dir)
        result = evaluate_checkpoint(cfg, output_dir)
    print(result.summary())
    print(f"results: {output_dir / 'results.json'}" + (f"; videos: {output_dir / 'videos'}" if result.videos else ""))


if __name__ == "__main__":
    cli.start(main, "eval", prepare)
