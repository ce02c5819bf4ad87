"""Roll out a policy callable (e.g. a scripted expert) for whole episodes and optionally record video frames."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import gymnasium as gym
import numpy as np


@dataclass
class EpisodeResult:
    seed: int
    success: bool
    steps: int
    total_reward: float
    frames: list[np.ndarray] = field(default_factory=list)
    physics_error: str | None = None


def run_episode(env: gym.Env, policy: Callable[[dict], np.ndarray], seed: int, record: bool = False) -> EpisodeResult:
    """One episode; success counts if the task reported success at any step (as in gym-aloha / LeRobot eval).

    The episode also ends after the env's declared length (its TimeLimit, or the task's max_episode_steps), so an env
    built without a TimeLimit never loops forever; an env that declares no length at all is refused up front.
    """
    limit = _episode_limit(env)
    if limit is None:
        raise ValueError(f"{env}: the env has no episode length limit, so an episode that never succeeds would never "
                         "end; create it with gymnasium.make (TimeLimit) or pass max_episode_steps=N")
    obs, info = env.reset(seed=seed)
    if hasattr(policy, "reset"):
        policy.reset()
    result = EpisodeResult(seed=seed, success=bool(info.get("is_success", False)), steps=0, total_reward=0.0)
    if record:
        result.frames.append(env.render())
    while True:
        obs, reward, terminated, truncated, info = env.step(policy(obs))
        result.steps += 1
        result.total_reward += float(reward)
        result.success |= bool(info.get("is_success", False))
        if record:
            result.frames.append(env.render())
        if "physics_error" in info:
            result.physics_error = info["physics_error"]
        if terminated or truncated or result.steps >= limit:
            return result


def _episode_limit(env: gym.Env) -> int | None:
    spec = getattr(env, "spec", None)
    if spec is not None and spec.max_episode_steps is not None:
        return spec.max_episode_steps
    return getattr(env.unwrapped, "max_episode_steps", None)


def write_video(path: str | os.PathLike, frames: Sequence[np.ndarray], fps: float) -> Path:
    """Write an mp4 atomically (temp file in the same folder, then rename) so a crash never leaves half a video."""
    import imageio.v3 as iio

    path = Path(path)
    if not frames:
        raise ValueError(f"no frames to write to {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    # Its own atomic write, not fileio's: envs imports nothing of ours.
    fd, tmp = tempfile.mkstemp(suffix=".mp4", dir=path.parent, prefix=f".{path.stem}-")
    os.close(fd)
    try:
        iio.imwrite(tmp, np.stack(frames), fps=fps, codec="libx264", plugin="pyav")
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; a video is meant to be shared like any other output
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
