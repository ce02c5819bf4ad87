"""The built-in default job: collect demos -> train -> evaluate -> export -> closed-loop check (configs/quickstart.yaml)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("WANDB_MODE", "offline")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import hydra
from hydra.core.config_store import ConfigStore

from apps.quickstart import PipelineConfig, run_pipeline
from training import cli

ConfigStore.instance().store(name="quickstart_schema", node=PipelineConfig)


def prepare(cfg) -> PipelineConfig:
    typed: PipelineConfig = cli.to_object(cfg)
    typed.validate()  # every stage's config: nothing is recorded before all of them pass
    return typed


@hydra.main(config_path="../configs", config_name="quickstart", version_base="1.3")
def main(cfg) -> None:
    # Bad config or input: one message, no traceback. Hydra's run dir (under output_dir) is kept: the config was
    # checked before it existed, so what fails here fails mid-job and its log is worth keeping.
    with cli.reported(ValueError, FileNotFoundError, cleanup=False):
        result = run_pipeline(cli.prepared(cfg, prepare))
    print(result.summary())


if __name__ == "__main__":
    cli.start(main, "quickstart", prepare)
