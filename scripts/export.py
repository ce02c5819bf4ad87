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

from deploy.export.config import ExportConfig
from training import cli
from training.checkpoints import read_checkpoint

ConfigStore.instance().store(name="export_schema", node=ExportConfig)


def prepare(cfg) -> ExportConfig:
    typed: ExportConfig = cli.to_object(cfg)
    typed.validate()
    source = read_checkpoint(typed.checkpoint, verify_files=False)  # named before Hydra makes its run dir
    if source.config.get("env", {}) is None:
        raise ValueError(f"{source.path} was trained without an env (env=null): a bundle's manifest takes the joint "
                         "names, units and control rate from the env, so this checkpoint cannot be exported yet")
    output = Path(typed.output)
    if output.exists() and not output.is_dir():
        raise NotADirectoryError(f"output={typed.output!r} is a file; a bundle is a directory")
    return typed


@hydra.main(config_path="../configs", config_name="export", version_base="1.3")
def main(cfg) -> None:
    from deploy.export import ParityError, export_checkpoint

    with cli.reported(ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, ParityError):
        cfg = cli.prepared(cfg, prepare)
        result = export_checkpoint(cfg)
    print(result.summary())
    if result.parity is not None:
        print(f"parity (max |bundle - checkpoint|, {cfg.parity_samples} samples per set): "
              f"{result.parity.max_abs_diff}")


if __name__ == "__main__":
    cli.start(main, "export", prepare)
