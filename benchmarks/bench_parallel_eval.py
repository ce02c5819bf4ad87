"""Benchmark: evaluation with sub-envs in worker processes (AsyncVectorEnv) against in-process sub-envs (SyncVectorEnv),
same policy, same seeded episodes, same run; checks that both give identical per-episode results.

    python benchmarks/bench_parallel_eval.py                                   scripted TransferCube expert, state obs
    python benchmarks/bench_parallel_eval.py --obs-mode state_pixels           ... rendering a camera every step
    python benchmarks/bench_parallel_eval.py --checkpoint outputs/train/<run>  a trained checkpoint (any kind)

The speed-up is bounded by the free cores: the load average is printed before and after each timing, since other
processes on the machine take cores away from the workers.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from envs.config import EnvConfig, make_env  # noqa: E402
from envs.experts import make_expert  # noqa: E402
from apps.evaluation import load_for_evaluation  # noqa: E402
from training.evaluation import EvaluationResult, evaluate, make_eval_envs  # noqa: E402


def load_avg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def policy_factory(args):
    """(env config, n_envs -> vector policy or per-env policies) for the checkpoint, or the scripted expert."""
    if args.checkpoint:
        loaded = load_for_evaluation(args.checkpoint, "cpu")
        return loaded.env, loaded.make_policy
    env = EnvConfig(id=args.env_id, obs_mode=args.obs_mode, cameras=("top",) if args.obs_mode != "state" else None)

    def experts(n: int):
        local = make_env(env)  # experts read the task config from an unstepped local env, then act on observations
        return [make_expert(local) for _ in range(n)]

    return env, experts


def timed_evaluation(env: EnvConfig, make_policy, args, async_envs: bool
                     ) -> tuple[EvaluationResult, float, float, str]:
    """(result, seconds with the sub-envs' start-up, seconds of the evaluation alone, vector env class)."""
    before = load_avg()
    start = time.perf_counter()
    envs = make_eval_envs(env, args.n_envs, async_envs)
    started = time.perf_counter()
    kind = type(envs).__name__
    try:
        result = evaluate(envs, make_policy(args.n_envs), episodes=args.episodes, seed=args.seed)
    finally:
        envs.close()
    end = time.perf_counter()
    print(f"  {kind:15s} {end - start:7.1f} s, {end - started:7.1f} s without start-up  ({args.episodes} episodes, "
          f"{args.n_envs} sub-envs; load average {before} -> {load_avg()})  {result.summary()}", flush=True)
    return result, end - start, end - started, kind


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None, help="a checkpoint/run dir; default: the scripted expert")
    parser.add_argument("--env-id", default="cerebellum/TransferCube-v0", help="task of the scripted expert")
    parser.add_argument("--obs-mode", default="state", choices=("state", "state_pixels"),
                        help="scripted expert: state_pixels also renders the top camera at every step")
    parser.add_argument("--episodes", type=int, default=8)
    parser.add_argument("--n-envs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=1, help="alternate sync/async this many times")
    args = parser.parse_args()
    torch.set_num_threads(1)  # policy inference in the main process; the cores are for the sub-envs

    env, make_policy = policy_factory(args)
    cores = len(os.sched_getaffinity(0))
    print(f"{env.id}: {'checkpoint ' + args.checkpoint if args.checkpoint else 'scripted expert'}; "
          f"{cores} cores, load average {load_avg()} (1, 5, 15 min)")
    totals: dict[bool, list[float]] = {False: [], True: []}
    loops: dict[bool, list[float]] = {False: [], True: []}
    results: dict[bool, EvaluationResult] = {}
    for _ in range(args.repeats):
        for async_envs in (False, True):
            result, total, loop, kind = timed_evaluation(env, make_policy, args, async_envs)
            if async_envs and kind != "AsyncVectorEnv":
                sys.exit("worker processes could not be started; nothing to compare")
            totals[async_envs].append(total)
            loops[async_envs].append(loop)
            results[async_envs] = result
    same = [r.to_dict() for r in results[False].records] == [r.to_dict() for r in results[True].records]
    sync_s, async_s = min(totals[False]), min(totals[True])
    sync_loop, async_loop = min(loops[False]), min(loops[True])
    print(f"reference (SyncVectorEnv, in-process): {sync_s:.1f} s; AsyncVectorEnv: {async_s:.1f} s with worker "
          f"start-up, {async_loop:.1f} s without; speed-up {sync_s / async_s:.2f}x with start-up, "
          f"{sync_loop / async_loop:.2f}x without (best of {args.repeats}); identical per-episode results: {same}")
    if not same:
        sys.exit("asynchronous and synchronous evaluations disagree")


if __name__ == "__main__":
    main()
