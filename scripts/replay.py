"""Replay recorded episodes in simulation from their seeds, write mp4s, report whether each reproduces."""

import sys
from pathlib import Path

import hydra
from hydra.core.config_store import ConfigStore

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from training import cli  # noqa: E402
from training.datasets import DatasetMeta  # noqa: E402
from training.datasets.replay import ReplayConfig, replay_episode  # noqa: E402

ConfigStore.instance().store(name="replay_schema", node=ReplayConfig)


def prepare(cfg) -> ReplayConfig:
    typed: ReplayConfig = cli.to_object(cfg)
    meta = DatasetMeta(typed.root)  # a missing or unreadable dataset is named here, before anything is replayed
    if meta.collection is None:
        raise ValueError(f"{meta.root} has no collection record: the env and seeds it was recorded with are unknown")
    bad = [e for e in typed.episodes if not 0 <= e < meta.total_episodes]
    if not typed.episodes or bad:
        raise ValueError(f"episodes must list episode indices in [0, {meta.total_episodes}) of {meta.root}, got "
                         f"{list(typed.episodes)}")
    if typed.video_dir and Path(typed.video_dir).exists() and not Path(typed.video_dir).is_dir():
        raise ValueError(f"video_dir={typed.video_dir!r} is a file, not a directory")
    return typed


@hydra.main(config_path="../configs", config_name="replay", version_base="1.3")
def main(cfg) -> None:
    failures = 0
    with cli.reported(ValueError, FileNotFoundError, TypeError):  # TypeError: an env_kwargs key the env lacks
        cfg = cli.prepared(cfg, prepare)
        for episode in cfg.episodes:
            video = Path(cfg.video_dir) / f"episode_{episode:06d}.mp4" if cfg.video_dir else None
            r = replay_episode(cfg.root, episode, video, cfg.env_kwargs)
            failures += not r.reproduced
            print(f"episode {r.episode} seed {r.seed}: {r.steps} steps, recorded success {r.recorded_success}, "
                  f"replayed success {r.replayed_success}, max state error {r.max_state_error}, "
                  f"{'reproduced' if r.reproduced else 'NOT reproduced'}{f', video {r.video}' if r.video else ''}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    cli.start(main, "replay", prepare)
