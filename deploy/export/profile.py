"""What the policy's training data did: per-key value ranges and frame-to-frame speeds, the basis of a bundle's
safety defaults (deploy.export.limits).

Imitation: the dataset statistics the checkpoint carries (dataset_stats.json: min / max, and max_abs_delta for
datasets recorded since it exists), else the dataset itself when its path still holds it. RL has no demonstrations:
the profile comes from closed-loop rollouts of the exported policy in the env it was trained in, i.e. what the policy
itself does there (the envs declare no joint speed limits to fall back on: MuJoCo position actuators have none, and
a limit from the joint ranges alone would not say how fast this policy needs to move).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from policies.features import ACTION_KEY
from training.datasets import DatasetMeta, load_numeric
from training.datasets.observations import ObservationMapping
from training.datasets.stats import MAX_ABS_DELTA

from .env_info import ENV_STATE_KEY, STATE_KEY

MOTION_KEYS = (ACTION_KEY, STATE_KEY, ENV_STATE_KEY)  # the keys whose ranges / speeds the defaults read
ROLLOUT_EPISODES = 10  # RL: enough resets to see the task's randomized starts and targets
MAX_ROLLOUT_STEPS = 5000  # per episode: an env without a time limit must not hang the export


@dataclass(frozen=True)
class MotionProfile:
    """Per dataset key (flattened): the smallest and largest value seen, and the largest |x[t+1] - x[t]| between
    consecutive frames of one episode; `fps` turns the latter into a speed."""

    fps: float
    source: str  # where the numbers come from, for the manifest and for error messages
    low: dict[str, np.ndarray] = field(default_factory=dict)
    high: dict[str, np.ndarray] = field(default_factory=dict)
    max_abs_delta: dict[str, np.ndarray] = field(default_factory=dict)  # keys without a measurement are absent

    def speed(self, key: str) -> np.ndarray | None:
        delta = self.max_abs_delta.get(key)
        return None if delta is None else delta * self.fps

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "fps": self.fps,
                "max_speed": {k: (v * self.fps).tolist() for k, v in self.max_abs_delta.items()}}


def _vector(stats: Mapping[str, Any], key: str, name: str, where: str) -> np.ndarray | None:
    entry = stats.get(key)
    if not isinstance(entry, Mapping) or name not in entry:
        return None
    try:
        value = np.asarray(entry[name], np.float64).reshape(-1)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where}: stats[{key!r}][{name!r}] is not a list of numbers ({e})") from e
    if not np.isfinite(value).all():
        raise ValueError(f"{where}: stats[{key!r}][{name!r}] holds NaN or inf")
    return value


def read_stats_file(path: Path) -> dict[str, Any]:
    """A dataset_stats.json, with errors that name it."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON ({e}); the checkpoint's dataset statistics are corrupted") from e
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object of per-feature statistics, got {type(data).__name__}")
    return data


def profile_from_stats(stats: Mapping[str, Any], fps: float, where: str) -> MotionProfile:
    low, high, delta = {}, {}, {}
    for key in MOTION_KEYS:
        lo, hi = _vector(stats, key, "min", where), _vector(stats, key, "max", where)
        if lo is not None and hi is not None:
            if lo.shape != hi.shape or (lo > hi).any():
                raise ValueError(f"{where}: stats[{key!r}] min and max disagree (shapes {lo.shape} / {hi.shape}, "
                                 "or some min above its max)")
            low[key], high[key] = lo, hi
        d = _vector(stats, key, MAX_ABS_DELTA, where)
        if d is not None:
            if (d < 0).any():
                raise ValueError(f"{where}: stats[{key!r}][{MAX_ABS_DELTA!r}] has negative entries")
            delta[key] = d
    return MotionProfile(fps=float(fps), source=f"dataset statistics in {where}", low=low, high=high,
                         max_abs_delta=delta)


def max_abs_delta_per_episode(values: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Largest |x[t+1] - x[t]| over consecutive frames of the same episode (rows [start, end) of `values`)."""
    x = np.asarray(values, np.float64).reshape(len(values), -1)
    diffs = np.abs(np.diff(x, axis=0))
    same_episode = np.zeros(max(len(x) - 1, 0), bool)
    for s, e in zip(starts, ends):
        same_episode[int(s):max(int(e) - 1, int(s))] = True
    if not same_episode.any():
        return np.zeros(x.shape[1])
    return diffs[same_episode].max(0)


def measure_dataset(profile: MotionProfile, root: Path, fps: float, frames: int | None) -> MotionProfile:
    """Fill the speeds `profile` lacks from the dataset at `root` (which must be the one the stats describe)."""
    meta = DatasetMeta(root)
    if abs(meta.fps - fps) > 1e-6:
        raise ValueError(f"dataset {root} is recorded at {meta.fps} fps, the policy runs at {fps:g} Hz")
    if frames is not None and meta.total_frames != frames:
        raise ValueError(f"dataset {root} now holds {meta.total_frames} frames, the checkpoint's statistics count "
                         f"{frames}: it is not the data the policy was trained on")
    keys = [k for k in MOTION_KEYS if k in meta.features and k not in profile.max_abs_delta]
    numeric = load_numeric(meta, keys)
    starts, ends = meta.episode_column("dataset_from_index"), meta.episode_column("dataset_to_index")
    delta = dict(profile.max_abs_delta)
    for key in keys:
        delta[key] = max_abs_delta_per_episode(numeric[key], starts, ends)
    return MotionProfile(fps=profile.fps, source=f"{profile.source}; speeds measured in dataset {root}",
                         low=profile.low, high=profile.high, max_abs_delta=delta)


def imitation_profile(stats_path: Path, dataset_root: str | None, fps: float) -> MotionProfile:
    """The checkpoint's statistics; speeds missing from them (datasets recorded before max_abs_delta existed) are
    measured in the training dataset when it is still at `dataset_root`, else they stay missing."""
    stats = read_stats_file(stats_path)
    profile = profile_from_stats(stats, fps, str(stats_path))
    if ACTION_KEY in profile.max_abs_delta or not dataset_root or not Path(dataset_root).is_dir():
        return profile
    count = stats.get(ACTION_KEY, {}).get("count") if isinstance(stats.get(ACTION_KEY), Mapping) else None
    frames = int(np.asarray(count).reshape(-1)[0]) if count is not None else None
    return measure_dataset(profile, Path(dataset_root), fps, frames)


def rollout_profile(sim, plan, fps: float, episodes: int = ROLLOUT_EPISODES, seed: int = 0,
                    mapping=None) -> MotionProfile:
    """Run the policy (the plan's torch reference, one chunk per tick) closed loop in `sim` for `episodes` episodes
    and record what it commanded and observed; `mapping`: the env config's ObservationMapping (default mapping when
    None)."""
    observation_to_dataset = mapping or ObservationMapping()

    if plan.control.n_obs_steps != 1 or plan.noise_shape is not None:
        raise ValueError("rollout profiles run single-observation deterministic policies (the SB3 actors)")
    keys = [f.key for f in plan.features]
    frames: dict[str, list[np.ndarray]] = {k: [] for k in MOTION_KEYS}
    bounds: list[tuple[int, int]] = []
    low, high = sim.action_space.low, sim.action_space.high
    for episode in range(episodes):
        obs, _ = sim.reset(seed=seed + episode)
        start = len(frames[ACTION_KEY])
        for _ in range(MAX_ROLLOUT_STEPS):
            data = observation_to_dataset(obs)
            inputs = {k: np.asarray(data[k], np.float32)[None] for k in keys}
            action = np.clip(np.asarray(plan.reference(inputs, None), np.float32)[0], low, high)
            for k in (STATE_KEY, ENV_STATE_KEY):
                if k in data:
                    frames[k].append(np.asarray(data[k], np.float64).reshape(-1))
            frames[ACTION_KEY].append(action.astype(np.float64))
            obs, _, terminated, truncated, _ = sim.step(action)
            if terminated or truncated:
                break
        bounds.append((start, len(frames[ACTION_KEY])))
    starts, ends = np.array([b[0] for b in bounds]), np.array([b[1] for b in bounds])
    out_low, out_high, delta = {}, {}, {}
    for key, rows in frames.items():
        if not rows:
            continue
        x = np.stack(rows)
        out_low[key], out_high[key] = x.min(0), x.max(0)
        delta[key] = max_abs_delta_per_episode(x, starts, ends)
    return MotionProfile(fps=float(fps), source=f"{episodes} closed-loop rollouts of the policy in the training env "
                                                f"(seeds {seed}..{seed + episodes - 1})",
                         low=out_low, high=out_high, max_abs_delta=delta)
