"""Train an RL policy with Stable-Baselines3: python scripts/train_rl.py env=reach algo=ppo (see configs/train_rl.yaml)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

from training.rl.config import finalize, register_configs
from training.rl.trainer import plan_run, train

register_configs()


@hydra.main(config_path="../configs", config_name="train_rl", version_base="1.3")
def main(cfg) -> None:
    try:  # bad input is reported as one line, before anything is built
        plan = plan_run(finalize(OmegaConf.to_object(cfg)), default_run_dir=HydraConfig.get().runtime.output_dir)
    except (ValueError, FileNotFoundError) as err:
        sys.exit(f"error: {err}")
    if plan.resume is not None:
        print(f"resuming {plan.run_dir} from step {plan.resume.checkpoint.step} with the run's saved config")
    result = train(plan.cfg, plan.run_dir, resume=plan.resume)
    print(f"trained {result.num_timesteps} steps in {result.train_seconds:.0f} s; checkpoint: {result.checkpoint}")
    if result.final_eval is not None:
        print(result.final_eval.summary())


if __name__ == "__main__":
    main()
