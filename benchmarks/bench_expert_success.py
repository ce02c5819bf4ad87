"""Benchmark: scripted-expert success rate over fixed seeds per task, with and without domain randomization."""

from __future__ import annotations

import argparse
import os
import time
from concurrent.futures import ProcessPoolExecutor

os.environ.setdefault("MUJOCO_GL", "egl")

TASKS = ("Reach", "PickCube", "TransferCube", "PushT")
TARGET = {False: 0.95, True: 0.90}


def run_seeds(task: str, seeds: list[int], randomization: bool) -> list[tuple[int, bool, int]]:
    import gymnasium as gym

    import envs  # noqa: F401  (registers the tasks)
    from envs.experts import make_expert

    env = gym.make(f"cerebellum/{task}-v0", randomization=randomization)
    expert = make_expert(env)
    results = []
    for seed in seeds:
        obs, info = env.reset(seed=seed)
        expert.reset()
        success, steps = bool(info["is_success"]), 0
        while True:
            obs, _, terminated, truncated, info = env.step(expert(obs))
            steps += 1
            success |= bool(info["is_success"])
            if terminated or truncated:
                break
        results.append((seed, success, steps))
    env.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--task", choices=TASKS, action="append", help="task(s); default: all")
    parser.add_argument("--episodes", type=int, default=200)
    parser.add_argument("--randomization", choices=("off", "on", "both"), default="both")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    modes = {"off": [False], "on": [True], "both": [False, True]}[args.randomization]
    print(f"expert success over seeds 0..{args.episodes - 1}; target >= 95% (off), >= 90% (randomization on)")
    for task in args.task or TASKS:
        for randomization in modes:
            seeds = list(range(args.episodes))
            shards = [seeds[i :: args.workers] for i in range(args.workers)]
            start = time.perf_counter()
            with ProcessPoolExecutor(args.workers) as pool:
                parts = pool.map(run_seeds, [task] * len(shards), shards, [randomization] * len(shards))
                results = sorted(r for part in parts for r in part)
            elapsed = time.perf_counter() - start
            rate = sum(ok for _, ok, _ in results) / len(results)
            failed = [seed for seed, ok, _ in results if not ok]
            verdict = "PASS" if rate >= TARGET[randomization] else "FAIL"
            print(
                f"{task:13s} randomization={'on ' if randomization else 'off'} success={rate:6.1%} "
                f"({len(results) - len(failed)}/{len(results)}) target>={TARGET[randomization]:.0%} {verdict} "
                f"[{elapsed:.0f}s] failed seeds: {failed[:20]}{' ...' if len(failed) > 20 else ''}",
                flush=True,
            )


if __name__ == "__main__":
    main()
