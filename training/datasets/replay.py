"""Replay a recorded episode's actions in simulation from its recorded seed, optionally writing an mp4."""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import gymnasium as gym
import numpy as np

from envs.modules import import_user_module

from .env_factory import recording_kwargs
from .reader import DatasetMeta, load_numeric
from .video import VideoConfig, VideoStreamWriter


@dataclass
class ReplayConfig:
    """Which episodes to replay; mirrored by configs/replay.yaml."""

    # Named `root`, not `dataset`: configs/dataset/ is a Hydra group, so `dataset=<path>` would select a group.
    root: str = "data/transfer_cube_expert"
    episodes: List[int] = field(default_factory=lambda: [0])
    video_dir: Optional[str] = "replays"  # one mp4 per episode; null writes no video
    env_kwargs: Dict[str, Any] = field(default_factory=dict)  # overrides of the recorded env kwargs


@dataclass
class ReplayResult:
    episode: int
    seed: int
    steps: int
    recorded_success: Optional[bool]
    replayed_success: bool
    max_state_error: Optional[float]  # largest |recorded - replayed| over observation.state, when recorded
    video: Optional[Path]

    @property
    def reproduced(self) -> bool:
        """True when the replay ends as recorded (success flag) — the check expert datasets must pass."""
        return self.recorded_success is None or self.recorded_success == self.replayed_success


def replay_episode(dataset: Union[str, Path, DatasetMeta], episode: int, video_path: Union[str, Path, None] = None,
                   env_kwargs: Optional[Dict[str, Any]] = None) -> ReplayResult:
    """Reset the recording env with the episode's seed, apply its actions, compare the outcome."""
    meta = dataset if isinstance(dataset, DatasetMeta) else DatasetMeta(dataset)
    record = meta.collection
    if record is None:
        raise ValueError(f"{meta.root} has no collection record (meta/cerebellum_collection.json): "
                         "the env and seeds it was recorded with are unknown, so it cannot be replayed")
    row = meta.episode(episode)
    if row.get("seed") is None:
        raise ValueError(f"episode {episode} of {meta.root} has no recorded seed")
    for module in record.get("import_modules", []):
        import_user_module(module, "import_modules")
    # The recorder's own rule (a foreign env never gets collect's default obs_mode), so replay builds the same env.
    kwargs = {**recording_kwargs(record["env_id"], record["env_kwargs"]), **(env_kwargs or {})}
    if video_path is not None:
        kwargs["render_mode"] = "rgb_array"
    env = gym.make(record["env_id"], **kwargs)
    keys = ["action"] + (["observation.state"] if "observation.state" in meta.features else [])
    columns = load_numeric(meta, keys)
    start, end = int(row["dataset_from_index"]), int(row["dataset_to_index"])
    actions = columns["action"][start:end]
    recorded_state = columns["observation.state"][start:end] if "observation.state" in columns else None
    writer = None
    try:
        obs, info = env.reset(seed=int(row["seed"]))
        states, success = [], False
        for t, action in enumerate(actions):
            if video_path is not None:
                frame = np.asarray(env.render())
                h, w = frame.shape[0] // 2 * 2, frame.shape[1] // 2 * 2  # yuv420p needs even sizes
                if writer is None:
                    writer = VideoStreamWriter(Path(video_path), meta.fps, h, w,
                                               VideoConfig(codec="libx264", gop=meta.fps, crf=20))
                writer.write(frame[None, :h, :w])
            if "agent_pos" in obs:
                states.append(np.asarray(obs["agent_pos"], np.float32))
            obs, _, terminated, truncated, info = env.step(action)
            success = success or bool(info.get("is_success", False))
            if (terminated or truncated) and t < len(actions) - 1:
                break
        steps = t + 1
    finally:
        if writer is not None:
            writer.close()
        env.close()
    error = None
    if recorded_state is not None and states:
        n = min(len(states), len(recorded_state))
        error = float(np.abs(np.stack(states[:n]) - recorded_state[:n]).max())
    recorded_success = row.get("success")
    return ReplayResult(episode, int(row["seed"]), steps, None if recorded_success is None else bool(recorded_success),
                        success, error, Path(video_path) if video_path is not None else None)
