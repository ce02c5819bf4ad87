"""Export a checkpoint to a policy bundle: python scripts/export.py checkpoint=<ckpt or run dir> output=<bundle dir>
(see configs/export.yaml; the bundle is checked against the checkpoint before it is written)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from deploy.export.config import ExportConfig

ConfigStore.instance().store(name="export_schema", node=ExportConfig)


@hydra.main(config_path="../configs", config_name="export", version_base="1.3")
def main(cfg) -> None:
    cfg: ExportConfig = OmegaConf.to_object(cfg)
    from deploy.export import ParityError, export_checkpoint

    try:
        result = export_checkpoint(cfg)
    except (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, ParityError) as err:
        sys.exit(f"error: {err}")
    print(result.summary())
    if result.parity is not None:
        print(f"parity (max |bundle - checkpoint|, {cfg.parity_samples} samples per set): "
              f"{result.parity.max_abs_diff}")


if __name__ == "__main__":
    main()
