"""Record expert (or any policy) demonstrations into a LeRobot v3 dataset: python scripts/collect.py [overrides]."""

import sys
from pathlib import Path

import hydra
from hydra.core.config_store import ConfigStore

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from envs.config import register_hydra_schema  # noqa: E402
from training import cli  # noqa: E402
from apps.recording import CollectConfig, collect  # noqa: E402

ConfigStore.instance().store(name="collect_schema", node=CollectConfig)
register_hydra_schema()  # configs/env/*.yaml: `env=gym_pusht` works for recording as for train/eval


def prepare(cfg) -> CollectConfig:
    typed: CollectConfig = cli.to_object(cfg)
    typed.validate()
    typed.resolve()  # modules, policy factory and env id: named before Hydra makes its run dir
    return typed


@hydra.main(config_path="../configs", config_name="collect", version_base="1.3")
def main(cfg) -> None:
    # FileExistsError: a dataset there with resume=false; the others: bad values, env kwargs, cameras.
    with cli.reported(ValueError, FileExistsError):
        result = collect(cli.prepared(cfg, prepare))
    print(
        f"{result.root}: {result.episodes} episodes ({result.recorded} new, {result.frames} frames) from "
        f"{result.attempts} rollouts, {result.successes} successful, in {result.seconds:.1f} s"
    )


if __name__ == "__main__":
    cli.start(main, "collect", prepare)
