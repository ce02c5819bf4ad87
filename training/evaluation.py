"""Evaluate any policy in simulation on seeded episodes over a vector env: success (Wilson 95%), returns, videos, JSON.

Episode i of an evaluation always runs on seed `seed + i`, whichever sub-env runs it, so two evaluations of one
deterministic policy agree episode by episode (and do not depend on n_envs). Success counts if the task reported
`info["is_success"]` at any step of the episode (gym-aloha / LeRobot convention, as in envs.rollout.run_episode).

Results JSON (schema_version 1), written by `write_results`:
    {
      "schema_version": 1,
      "env_id": str,
      "episodes": int,                       number of episodes
      "seed": int,                           episode i used seed + i
      "successes": int,
      "success_rate": float,                 successes / episodes
      "success_ci95": [float, float],        Wilson score interval, z = 1.959964
      "mean_return": float, "std_return": float,   undiscounted, population std
      "mean_length": float,                  control steps
      "physics_errors": int,                 episodes that ended in a physics blow-up
      "wall_time_s": float,
      "videos": [str],                       mp4 paths of the first `video_episodes` episodes
      "per_episode": [{"episode": int, "seed": int, "success": bool, "return": float, "length": int,
                       "physics_error": str | null}],
      "metadata": {...}                      what the caller adds (checkpoint path, kind, type, step, ...)
    }

Policies: a *vector policy* is a callable taking the batched observation of a gymnasium vector env
(dict of arrays with a leading n_envs axis) and returning actions (n_envs, *action_shape); it may define
`reset(env_index)`, called whenever that sub-env starts a new episode. A sequence of per-env callables
(unbatched obs -> action, optional `reset()`, like envs.rollout) is accepted too, for stateful policies.

A checkpoint loader (training.imitation.checkpoint, training.rl.checkpoint, apps.closed_loop for bundles) returns a
LoadedPolicy; apps.evaluation picks the loader by kind and runs this loop on it.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import time
import warnings
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode

from envs.config import EnvConfig, make_env
from envs.rollout import write_video
from fileio.atomic import write_text_atomic
from training.progress import Progress

RESULTS_SCHEMA_VERSION = 1
Z_95 = 1.959963984540054  # two-sided 95% normal quantile


# ---------------------------------------------------------------------------------------------- statistics
def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (better than the normal interval near 0 and 1)."""
    if n <= 0:
        raise ValueError(f"wilson_interval needs n >= 1 trials, got {n}")
    if not 0 <= successes <= n:
        raise ValueError(f"wilson_interval needs 0 <= successes <= n, got successes={successes}, n={n}")
    p = successes / n
    z2 = z * z
    denom = 1.0 + z2 / n
    center = (p + z2 / (2 * n)) / denom
    half = (z / denom) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return max(0.0, center - half), min(1.0, center + half)


@dataclass
class EpisodeRecord:
    episode: int
    seed: int
    success: bool
    episode_return: float
    length: int
    physics_error: Optional[str] = None

    def to_dict(self) -> dict[str, Any]:
        return {"episode": self.episode, "seed": self.seed, "success": self.success,
                "return": self.episode_return, "length": self.length, "physics_error": self.physics_error}


@dataclass
class EvaluationResult:
    env_id: str
    seed: int
    records: list[EpisodeRecord]
    videos: list[str] = field(default_factory=list)
    wall_time_s: float = 0.0
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def episodes(self) -> int:
        return len(self.records)

    @property
    def successes(self) -> int:
        return sum(r.success for r in self.records)

    @property
    def success_rate(self) -> float:
        return self.successes / self.episodes

    @property
    def success_ci95(self) -> tuple[float, float]:
        return wilson_interval(self.successes, self.episodes)

    @property
    def mean_return(self) -> float:
        return float(np.mean([r.episode_return for r in self.records]))

    @property
    def mean_length(self) -> float:
        return float(np.mean([r.length for r in self.records]))

    def to_dict(self) -> dict[str, Any]:
        returns = np.array([r.episode_return for r in self.records], dtype=np.float64)
        low, high = self.success_ci95
        return {
            "schema_version": RESULTS_SCHEMA_VERSION,
            "env_id": self.env_id,
            "episodes": self.episodes,
            "seed": self.seed,
            "successes": self.successes,
            "success_rate": self.success_rate,
            "success_ci95": [low, high],
            "mean_return": float(returns.mean()),
            "std_return": float(returns.std()),
            "mean_length": self.mean_length,
            "physics_errors": sum(r.physics_error is not None for r in self.records),
            "wall_time_s": self.wall_time_s,
            "videos": list(self.videos),
            "per_episode": [r.to_dict() for r in self.records],
            "metadata": self.metadata,
        }

    def summary(self) -> str:
        low, high = self.success_ci95
        return (f"{self.env_id}: success {self.successes}/{self.episodes} = {self.success_rate:.1%} "
                f"(95% CI {low:.1%}-{high:.1%}), mean return {self.mean_return:.3f}, "
                f"mean length {self.mean_length:.1f}")


def write_results(result: EvaluationResult, path: str | Path) -> Path:
    """Write the results JSON atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(result.to_dict(), indent=2))
    return path


# ---------------------------------------------------------------------------------------------- environments
# Async sub-envs start in processes forked from a fresh server process, not from this one: a child forked from a
# process that has rendered inherits its EGL state, and MuJoCo rendering in that child hangs.
ASYNC_START_METHOD = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


def use_async_envs(async_envs: bool | None, n_envs: int) -> bool:
    """Whether sub-envs run in worker processes: as asked, and for None ("auto") when the machine has a second core.
    One sub-env never does (a worker process would only add a round trip)."""
    if n_envs < 2:
        return False
    if async_envs is None:
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:  # not on Linux
            cores = os.cpu_count() or 1
        return cores > 1
    return bool(async_envs)


def make_eval_envs(env: EnvConfig | Mapping[str, Any], n_envs: int, async_envs: bool | None = False
                   ) -> gym.vector.VectorEnv:
    """A vector env for `evaluate`: autoreset disabled (evaluate resets each sub-env with its episode's seed).

    async_envs: sub-envs in worker processes (gymnasium AsyncVectorEnv; None: when there is more than one core),
    falling back to in-process sub-envs with a warning when worker processes cannot be started. The results are the
    same either way: evaluate seeds every episode itself.

    Sub-envs are always built with render_mode="rgb_array" (rendering itself only happens for recorded episodes):
    under domain randomization the env draws visual parameters only when it can render, so building every eval env
    the same way keeps an episode identical whether or not its video is recorded.
    """
    if n_envs < 1:
        raise ValueError(f"n_envs must be >= 1, got {n_envs}")
    config = EnvConfig.from_any(env)
    fns = [partial(make_env, config, render_mode="rgb_array") for _ in range(n_envs)]
    if use_async_envs(async_envs, n_envs):
        try:
            return gym.vector.AsyncVectorEnv(fns, autoreset_mode=AutoresetMode.DISABLED, context=ASYNC_START_METHOD)
        except Exception as err:  # noqa: BLE001 - any failure to start workers: in-process envs still work
            warnings.warn(f"could not start {n_envs} evaluation worker processes ({type(err).__name__}: {err}); "
                          "evaluating with in-process sub-envs instead", RuntimeWarning, stacklevel=2)
    return gym.vector.SyncVectorEnv(fns, autoreset_mode=AutoresetMode.DISABLED)


class PerEnvPolicies:
    """Adapts one unbatched policy callable per sub-env (each with an optional reset()) to a vector policy."""

    def __init__(self, policies: Sequence[Callable[[Any], Any]]):
        self.policies = list(policies)

    def __call__(self, observations: Any) -> np.ndarray:
        return np.stack([np.asarray(p(_index(observations, i))) for i, p in enumerate(self.policies)])

    def reset(self, env_index: int) -> None:
        policy = self.policies[env_index]
        if hasattr(policy, "reset"):
            policy.reset()


def _index(tree: Any, i: int) -> Any:
    if isinstance(tree, Mapping):
        return {k: _index(v, i) for k, v in tree.items()}
    return tree[i]


def _render(envs: gym.vector.VectorEnv, indices: list[int]) -> dict[int, np.ndarray]:
    if isinstance(envs, gym.vector.SyncVectorEnv):
        return {i: envs.envs[i].render() for i in indices}
    frames = envs.call("render")
    return {i: frames[i] for i in indices}


def _info_value(info: Mapping[str, Any], key: str, i: int) -> Any:
    mask = info.get(f"_{key}")
    if key not in info or (mask is not None and not mask[i]):
        return None
    return info[key][i]


# ---------------------------------------------------------------------------------------------- evaluation loop
def evaluate(
    envs: gym.vector.VectorEnv,
    policy: Callable[[Any], Any] | Sequence[Callable[[Any], Any]],
    *,
    episodes: int,
    seed: int = 0,
    video_episodes: int = 0,
    video_dir: str | Path | None = None,
    metadata: Mapping[str, Any] | None = None,
    progress: bool = False,
) -> EvaluationResult:
    """Run `episodes` episodes (episode i on seed `seed + i`) and collect success, return, length and videos.
    progress: report finished episodes (training.progress: a bar on a terminal, plain lines elsewhere)."""
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    if video_episodes < 0:
        raise ValueError(f"video_episodes must be >= 0, got {video_episodes}")
    if video_episodes and video_dir is None:
        raise ValueError("video_episodes > 0 needs a video_dir to write the mp4 files to")
    if envs.metadata.get("autoreset_mode") != AutoresetMode.DISABLED:
        raise ValueError("evaluate needs a vector env built with autoreset_mode=DISABLED (use make_eval_envs)")
    if not callable(policy):
        policy = PerEnvPolicies(policy)
        if len(policy.policies) != envs.num_envs:
            raise ValueError(f"got {len(policy.policies)} per-env policies for {envs.num_envs} sub-envs")
    reset_one = getattr(policy, "reset", None)
    n = envs.num_envs
    action_shape = (n, *envs.single_action_space.shape)
    fps = float(envs.metadata.get("render_fps") or 30.0)
    start = time.perf_counter()
    env_id = _env_id(envs)
    bar = Progress(episodes, f"evaluate {env_id}", unit="episode", enabled=progress)

    episode_of = np.full(n, -1)  # episode index each sub-env is running, -1 when idle
    returns, lengths = np.zeros(n), np.zeros(n, dtype=np.int64)
    success = np.zeros(n, dtype=bool)
    errors: list[Optional[str]] = [None] * n
    frames: dict[int, list[np.ndarray]] = {}
    records: dict[int, EpisodeRecord] = {}
    next_episode = 0

    def assign(mask: np.ndarray) -> list[int | None]:
        """Give each masked sub-env the next episode (or mark it idle); returns the reset seeds."""
        nonlocal next_episode
        seeds: list[int | None] = [None] * n
        for i in np.flatnonzero(mask):
            if next_episode < episodes:
                episode_of[i] = next_episode
                seeds[i] = seed + next_episode
                next_episode += 1
            else:
                episode_of[i] = -1
            returns[i], lengths[i], success[i], errors[i] = 0.0, 0, False, None
        return seeds

    def after_reset(mask: np.ndarray, info: Mapping[str, Any]) -> None:
        recorded = [i for i in np.flatnonzero(mask) if 0 <= episode_of[i] < video_episodes]
        for i in np.flatnonzero(mask):
            if episode_of[i] >= 0:
                success[i] = bool(_info_value(info, "is_success", i) or False)
                if reset_one is not None:
                    reset_one(int(i))
        for i, frame in _render(envs, recorded).items() if recorded else ():
            frames[int(episode_of[i])] = [frame]

    everyone = np.ones(n, dtype=bool)
    obs, info = envs.reset(seed=assign(everyone))
    after_reset(everyone, info)
    while (episode_of >= 0).any():
        actions = np.asarray(policy(obs))
        if actions.shape != action_shape:
            raise ValueError(f"policy returned actions of shape {actions.shape}, expected {action_shape}")
        obs, reward, terminated, truncated, info = envs.step(actions)
        active = episode_of >= 0
        returns[active] += reward[active]
        lengths[active] += 1
        for i in np.flatnonzero(active):
            success[i] |= bool(_info_value(info, "is_success", i) or False)
            error = _info_value(info, "physics_error", i)
            if error:
                errors[i] = str(error)
        recording = [i for i in np.flatnonzero(active) if episode_of[i] < video_episodes]
        for i, frame in _render(envs, recording).items() if recording else ():
            frames[int(episode_of[i])].append(frame)
        done = terminated | truncated
        for i in np.flatnonzero(done & active):
            e = int(episode_of[i])
            records[e] = EpisodeRecord(e, seed + e, bool(success[i]), float(returns[i]), int(lengths[i]), errors[i])
            bar.update(1, success=f"{sum(r.success for r in records.values())}/{len(records)}")
        if done.any():
            # Idle sub-envs that finished are reset too: a DISABLED-autoreset vector env refuses to step them otherwise.
            seeds = assign(done)
            obs, info = envs.reset(seed=seeds, options={"reset_mask": done.copy()})
            after_reset(done, info)

    bar.close()
    videos = []
    for e in sorted(frames):
        videos.append(str(write_video(Path(video_dir) / f"episode_{e:03d}.mp4", frames[e], fps=fps)))
    return EvaluationResult(
        env_id=env_id,
        seed=seed,
        records=[records[e] for e in range(episodes)],
        videos=videos,
        wall_time_s=time.perf_counter() - start,
        metadata=dict(metadata or {}),
    )


def _env_id(envs: gym.vector.VectorEnv) -> str:
    spec = envs.get_attr("spec")[0]
    return spec.id if spec is not None else "unknown"


# ---------------------------------------------------------------------------------------------- loaded checkpoints
@dataclass
class LoadedPolicy:
    """What a checkpoint loader returns: the env it was trained on and a factory of policies for n sub-envs.

    A policy that make_policy returns may define close() (called after the episodes) and
    results(result, output_dir) -> dict (extra results metadata, e.g. a bundle runner's statistics).
    """

    env: EnvConfig
    make_policy: Callable[[int], Any]
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class PeriodicEvalConfig:
    """The trainers' `eval` group: evaluation in simulation during and after training, on seeded episodes."""

    every_steps: int = 0  # 0: only the final evaluation
    episodes: int = 20
    n_envs: int = 4
    # Sub-envs in worker processes (gymnasium AsyncVectorEnv); null: when the machine has more than one core.
    # Results are identical either way (episode i always runs on seed + i).
    async_envs: Optional[bool] = False
    seed: int = 100_000
    video_episodes: int = 2
    final_episodes: int = 50  # 0: no final evaluation

    def validate(self) -> None:
        for name in ("every_steps", "video_episodes", "final_episodes"):
            if getattr(self, name) < 0:
                raise ValueError(f"eval.{name} must be >= 0, got {getattr(self, name)}")
        if self.episodes < 1 or self.n_envs < 1:
            raise ValueError(f"eval.episodes and eval.n_envs must be >= 1, got {self.episodes}, {self.n_envs}")
