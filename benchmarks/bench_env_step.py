"""Benchmark: env.step throughput vs raw MuJoCo physics (state obs), and vs physics + mujoco.Renderer (pixels)."""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("MUJOCO_GL", "egl")

import gymnasium as gym
import mujoco
import numpy as np

import envs  # noqa: F401  (registers the tasks)

TASKS = ("Reach", "PickCube", "TransferCube", "PushT")


def smooth_actions(env: gym.Env, n: int, seed: int) -> np.ndarray:
    """A bounded random walk inside the action box: realistic joint motion without blow-ups."""
    space = env.action_space
    rng = np.random.default_rng(seed)
    mid, half = (space.high + space.low) / 2, (space.high - space.low) / 2
    walk = np.cumsum(rng.normal(0, 0.02, size=(n, space.shape[0])), axis=0)
    return (mid + half * 0.5 * np.tanh(walk)).astype(np.float32)


def time_env(env: gym.Env, actions: np.ndarray, seed: int) -> tuple[float, float]:
    """(wall seconds, this thread's CPU seconds) for the action sequence."""
    env.reset(seed=seed)
    step = env.step
    start, start_cpu = time.perf_counter(), time.thread_time()
    for a in actions:
        _, _, terminated, truncated, _ = step(a)
        if terminated or truncated:
            env.reset()
    return time.perf_counter() - start, time.thread_time() - start_cpu


def time_raw(env: gym.Env, actions: np.ndarray, seed: int, camera: str | None, size: tuple[int, int]
             ) -> tuple[float, float]:
    """The reference: the same model and substeps driven by bare mujoco calls (plus one Renderer if camera)."""
    task = env.unwrapped
    env.reset(seed=seed)
    model = task.model
    data = mujoco.MjData(model)
    mujoco.mj_resetData(model, data)
    data.qpos[:] = task.data.qpos
    data.ctrl[:] = task.data.ctrl
    mujoco.mj_forward(model, data)
    nstep, ctrl = task.n_substeps, data.ctrl
    renderer = mujoco.Renderer(model, *size) if camera else None
    start, start_cpu = time.perf_counter(), time.thread_time()
    for a in actions:
        ctrl[:] = a
        mujoco.mj_step(model, data, nstep=nstep)
        if renderer is not None:
            renderer.update_scene(data, camera=camera)
            renderer.render()
    elapsed = time.perf_counter() - start, time.thread_time() - start_cpu
    if renderer is not None:
        renderer.close()
    return elapsed


def measure(task: str, pixels: bool, steps: int, repeats: int) -> None:
    kwargs = {"obs_mode": "pixels", "cameras": ("top",), "image_size": (128, 128)} if pixels else {}
    # One long episode, so the figures are step cost only (no resets inside the timed loop).
    env = gym.make(f"cerebellum/{task}-v0", max_episode_steps=steps + 1, **kwargs)
    actions = smooth_actions(env, steps, seed=0)
    time_env(env, actions[: steps // 10], 0)  # warm-up (renderer creation, caches)
    env_times, raw_times = [], []
    for r in range(repeats):  # interleaved so machine noise hits both alike
        raw_times.append(time_raw(env, actions, r, "top" if pixels else None, (128, 128)))
        env_times.append(time_env(env, actions, r))
    env.close()
    # The fastest of the interleaved repeats (as timeit advises): other processes only ever add time, so the minimum
    # is the figure least disturbed by a shared machine; the median is printed beside it. The CPU-time ratio (this
    # thread's CPU seconds, so time spent descheduled does not count) is printed too: on a loaded machine it is the
    # steadier of the two.
    env_wall, env_cpu = zip(*env_times)
    raw_wall, raw_cpu = zip(*raw_times)
    env_sps, raw_sps = steps / min(env_wall), steps / min(raw_wall)
    median_ratio = statistics.median(raw_wall) / statistics.median(env_wall)
    cpu_ratio = min(raw_cpu) / min(env_cpu)
    ratio = env_sps / raw_sps
    target = 0.85 if pixels else 0.90
    label = "pixels 1x128x128" if pixels else "state"
    reference = "physics + Renderer(top)" if pixels else f"mj_step(nstep={env.unwrapped.n_substeps})"
    print(
        f"{task:13s} {label:17s} env.step {env_sps:9.1f} steps/s | raw {reference:24s} {raw_sps:9.1f} steps/s | "
        f"ratio {ratio:.3f} (target >= {target}) {'PASS' if ratio >= target else 'FAIL'} "
        f"[median-based {median_ratio:.3f}; CPU-time {cpu_ratio:.3f}]",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--task", choices=TASKS, action="append")
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--pixel-steps", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    print(f"fastest of interleaved repeats (median-based ratio in brackets); one process; load average {os.getloadavg()[0]:.1f}")
    for task in args.task or TASKS:
        measure(task, pixels=False, steps=args.steps, repeats=args.repeats)
        if args.pixel_steps > 0:  # --pixel-steps 0 measures state observations only
            measure(task, pixels=True, steps=args.pixel_steps, repeats=args.repeats)


if __name__ == "__main__":
    main()
