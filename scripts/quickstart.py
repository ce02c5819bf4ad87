"""The built-in default job: roll out the TransferCube expert and write a video (extended as the pipeline grows)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from envs.config import EnvConfig, make_env
from envs.experts import make_expert
from envs.rollout import run_episode, write_video


def main(output_dir: str = "outputs/quickstart") -> None:
    env = make_env(EnvConfig(id="cerebellum/TransferCube-v0"), render_mode="rgb_array")
    expert = make_expert(env)
    result = run_episode(env, expert, seed=0, record=True)
    env.close()
    video = write_video(Path(output_dir) / "transfer_cube_expert.mp4", result.frames, fps=env.unwrapped.control_hz)
    print(f"TransferCube expert: success={result.success} in {result.steps} steps; video: {video}")


if __name__ == "__main__":
    main(*sys.argv[1:])
