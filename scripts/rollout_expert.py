"""Roll out a task's scripted expert for a few episodes and save an mp4 (the quick start's first step)."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import hydra
from hydra.core.config_store import ConfigStore

from envs.config import EnvConfig, make_env, register_hydra_schema
from envs.experts import make_expert
from envs.rollout import run_episode, write_video
from training import cli


@dataclass
class RolloutConfig:
    env: EnvConfig = field(default_factory=EnvConfig)
    episodes: int = 2
    seed: int = 0
    video: str = "rollout.mp4"


register_hydra_schema()
ConfigStore.instance().store(name="rollout_schema", node=RolloutConfig)


def prepare(cfg) -> RolloutConfig:
    typed: RolloutConfig = cli.to_object(cfg)
    typed.env = EnvConfig.from_any(typed.env)
    if typed.episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {typed.episodes}")
    video = Path(typed.video)
    if video.is_dir() or video.suffix.lower() != ".mp4":
        raise ValueError(f"video={typed.video!r} must name an .mp4 file to write")
    return typed


@hydra.main(config_path="../configs", config_name="rollout", version_base="1.3")
def main(cfg) -> None:
    with cli.reported(ValueError, TypeError):  # TypeError: an env option the task does not take
        cfg = cli.prepared(cfg, prepare)
        env = make_env(cfg.env, render_mode="rgb_array")
        expert = make_expert(env)
    frames, results = [], []
    for episode in range(cfg.episodes):
        result = run_episode(env, expert, seed=cfg.seed + episode, record=True)
        frames += result.frames
        results.append(result)
        print(f"episode {episode} seed={result.seed} success={result.success} steps={result.steps}")
    env.close()
    video = write_video(Path(cfg.video).absolute(), frames, fps=env.unwrapped.control_hz)
    print(f"success {sum(r.success for r in results)}/{len(results)}; video: {video}")


if __name__ == "__main__":
    cli.start(main, "rollout", prepare)
