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
from omegaconf import OmegaConf

from deploy.pipeline import PipelineConfig, run_pipeline

ConfigStore.instance().store(name="quickstart_schema", node=PipelineConfig)


@hydra.main(config_path="../configs", config_name="quickstart", version_base="1.3")
def main(cfg) -> None:
    try:
        result = run_pipeline(OmegaConf.to_object(cfg))
    except (ValueError, FileNotFoundError) as err:  # bad config or input: one message, no traceback
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    print(result.summary())


if __name__ == "__main__":
    main()
