"""Train an imitation policy: python scripts/train.py env=transfer_cube policy=act dataset.root=<dir> (configs/train.yaml).

Data-parallel: torchrun --nproc_per_node=N scripts/train.py ... ; sweeps: python scripts/train.py -m ... (Hydra
multirun: basic, submitit and Optuna configs under configs/hydra/ and configs/sweep/).
"""

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
from training.distributed import launched_rank, worker_hydra_overrides
from training.imitation.checks import ImitationSetupError
from training.imitation.config import from_hydra, register_configs
from training.imitation.trainer import run, sweep_objective

register_configs()


@hydra.main(config_path="../configs", config_name="train", version_base="1.3")
def main(cfg) -> float | None:
    hydra_cfg = HydraConfig.get()
    # Bad input (config values, dataset, env/policy mismatch, resume): one `error:` line, exit 2, no run dir left.
    with cli.reported(ImitationSetupError, LockHeldError):
        cfg = cli.prepared(cfg, from_hydra)
        if cfg.env is None and launched_rank() == 0:
            print("env=null: training from the dataset alone (features from its meta/info.json); no evaluation")
        result = run(cfg, default_run_dir=hydra_cfg.runtime.output_dir, overrides=list(hydra_cfg.overrides.task))
    if launched_rank() > 0:  # under torchrun, rank 0 reports
        return None
    budget = " (time budget reached)" if result.stopped_by_time_budget else ""
    print(f"trained to step {result.step}{budget} in {result.train_seconds:.0f} s; checkpoint: {result.checkpoint}")
    if result.final_eval is not None:
        print(result.final_eval.summary())
    # Hydra sweepers (Optuna) optimize what the task function returns.
    return sweep_objective(result, cfg.objective) if cfg.objective else None


if __name__ == "__main__":
    sys.argv += worker_hydra_overrides()  # torchrun ranks > 0 leave Hydra's run dir and logs to rank 0
    cli.start(main, "train", from_hydra, null_groups=("env",))
