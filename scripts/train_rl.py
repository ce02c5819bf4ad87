"""Train an RL policy with Stable-Baselines3: python scripts/train_rl.py env=reach algo=ppo (see configs/train_rl.yaml)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import hydra
from hydra.core.hydra_config import HydraConfig

from training import cli
from fileio.locks import LockHeldError
from training.rl.config import from_hydra, register_configs
from training.rl.trainer import plan_run, train

register_configs()


@hydra.main(config_path="../configs", config_name="train_rl", version_base="1.3")
def main(cfg) -> None:
    with cli.reported(ValueError, FileNotFoundError):  # bad input: one line, before anything is built
        plan = plan_run(cli.prepared(cfg, from_hydra), default_run_dir=HydraConfig.get().runtime.output_dir)
    if plan.resume is not None:
        print(f"resuming {plan.run_dir} from step {plan.resume.checkpoint.step} with the run's saved config")
    with cli.reported(LockHeldError, cleanup=False):  # another training holds the run dir: nothing was written
        result = train(plan.cfg, plan.run_dir, resume=plan.resume)
    print(f"trained {result.num_timesteps} steps in {result.train_seconds:.0f} s; checkpoint: {result.checkpoint}")
    if result.final_eval is not None:
        print(result.final_eval.summary())


if __name__ == "__main__":
    cli.start(main, "train_rl", from_hydra)
