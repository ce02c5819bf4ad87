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
from training.resume import ResumeError
from training.rl.config import from_hydra, register_configs
from training.rl.trainer import RLSetupError, run

register_configs()


@hydra.main(config_path="../configs", config_name="train_rl", version_base="1.3")
def main(cfg) -> None:
    hydra_cfg = HydraConfig.get()
    # Bad input (config values, env/algorithm mismatch, resume, a run dir in use): one `error:` line, exit 2.
    with cli.reported(RLSetupError, ResumeError, LockHeldError):
        result = run(cli.prepared(cfg, from_hydra), default_run_dir=hydra_cfg.runtime.output_dir,
                     overrides=list(hydra_cfg.overrides.task))
    print(f"trained {result.num_timesteps} steps in {result.train_seconds:.0f} s; checkpoint: {result.checkpoint}")
    if result.final_eval is not None:
        print(result.final_eval.summary())


if __name__ == "__main__":
    cli.start(main, "train_rl", from_hydra)
