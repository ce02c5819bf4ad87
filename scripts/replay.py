"""Replay recorded episodes in simulation from their seeds, write mp4s, report whether each reproduces."""

import sys
from pathlib import Path

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from training.datasets.replay import ReplayConfig, replay_episode  # noqa: E402

ConfigStore.instance().store(name="replay_schema", node=ReplayConfig)


@hydra.main(config_path="../configs", config_name="replay", version_base="1.3")
def main(cfg: ReplayConfig) -> None:
    cfg = OmegaConf.to_object(cfg)
    failures = 0
    for episode in cfg.episodes:
        video = Path(cfg.video_dir) / f"episode_{episode:06d}.mp4" if cfg.video_dir else None
        r = replay_episode(cfg.root, episode, video, cfg.env_kwargs)
        failures += not r.reproduced
        print(f"episode {r.episode} seed {r.seed}: {r.steps} steps, recorded success {r.recorded_success}, "
              f"replayed success {r.replayed_success}, max state error {r.max_state_error}, "
              f"{'reproduced' if r.reproduced else 'NOT reproduced'}{f', video {r.video}' if r.video else ''}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
