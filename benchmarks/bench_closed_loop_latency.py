"""Closed-loop success of a trained checkpoint vs its exported bundle: 0 ms (sync) and injected async latency.

Claims (issue 6): with zero latency the bundle's success equals the checkpoint's on the same seeds (within noise);
with 100 ms latency in async mode it keeps >= 90% of the zero-latency success. All three runs use the same episode
seeds; the async runs use the runtime's latency-aware scheduling (n_action_steps shortened to chunk - delay), or
temporal ensembling with --ensemble-coeff.
Camera bundles (issue 18): --randomization visual runs every evaluation on visually randomized scenes, and
--keep-target 0.95 judges the bundle against the checkpoint's success (sync and async) instead of the sync bundle's.
    python benchmarks/bench_closed_loop_latency.py --checkpoint outputs/train/<run> [--episodes 50]
        [--bundle <its bundle>] [--latency-ms 20 40 60 100] [--ensemble-coeff 0.01]
    python benchmarks/bench_closed_loop_latency.py --checkpoint <camera run> --latency-ms 100 --jitter-ms 20 \
        --randomization visual --keep-target 0.95 --against checkpoint --episodes 100
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

KEEP_TARGET = 0.9


def line(label: str, result, seconds: float, extra: str = "") -> str:
    low, high = result.success_ci95
    return (f"{label:34s} success {result.successes:3d}/{result.episodes} = {result.success_rate:6.1%} "
            f"(95% CI {low:.1%}-{high:.1%}), mean return {result.mean_return:8.3f}  [{seconds:.0f} s] {extra}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="a trained imitation or RL checkpoint (or run dir)")
    parser.add_argument("--bundle", type=Path, help="its exported bundle (default: export into a temp dir)")
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--n-envs", type=int, default=4)
    parser.add_argument("--seed", type=int, default=100_000)
    parser.add_argument("--latency-ms", type=float, nargs="+", default=[100.0],
                        help="one or more injected latencies (a sweep: --latency-ms 20 40 60 100)")
    parser.add_argument("--jitter-ms", type=float, default=0.0)
    parser.add_argument("--ensemble-coeff", type=float, default=None,
                        help="also run each latency with temporal ensembling at this coefficient (ACT: 0.01)")
    parser.add_argument("--randomization", choices=["as-trained", "off", "visual"], default="as-trained",
                        help="scenes of every evaluation: as trained, plain, or visually randomized (cameras)")
    parser.add_argument("--keep-target", type=float, default=KEEP_TARGET)
    parser.add_argument("--against", choices=["sync", "checkpoint"], default="sync",
                        help="what the async runs keep a share of: the sync bundle's success or the checkpoint's")
    args = parser.parse_args()
    randomization = {"as-trained": None, "off": False, "visual": "visual"}[args.randomization]

    import torch

    from apps.closed_loop import BundleRunConfig, effective_n_action_steps
    from deploy.export import ExportConfig, export_checkpoint
    from deploy.runtime import load_manifest
    from apps.evaluation import EvaluateConfig, evaluate_bundle, evaluate_checkpoint

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        bundle = args.bundle
        if bundle is None:
            bundle = tmp / "bundle"
            result = export_checkpoint(ExportConfig(checkpoint=args.checkpoint, output=str(bundle)))
            print(f"export: {result.summary()}")
        m = load_manifest(bundle)

        def cfg(path) -> EvaluateConfig:
            return EvaluateConfig(checkpoint=str(path), episodes=args.episodes, n_envs=args.n_envs, seed=args.seed,
                                  video_episodes=0, randomization=randomization, progress=False,
                                  async_envs=None)  # sub-envs in worker processes when there is a second core

        print(f"checkpoint {args.checkpoint}: {m.policy_type}, chunk {m.control.chunk_size}, n_action_steps "
              f"{m.control.n_action_steps}, {m.control.frequency_hz:g} Hz; {args.episodes} episodes from seed "
              f"{args.seed}, {args.n_envs} envs, scenes {args.randomization}; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
        start = time.perf_counter()
        reference = evaluate_checkpoint(cfg(args.checkpoint), tmp / "torch")
        print(line("checkpoint (torch), 0 ms", reference, time.perf_counter() - start), flush=True)

        start = time.perf_counter()
        sync = evaluate_bundle(cfg(bundle), tmp / "sync", BundleRunConfig())
        same = sum(a.success == b.success for a, b in zip(sync.records, reference.records))
        print(line("bundle, sync 0 ms", sync, time.perf_counter() - start,
                   f"same outcome as the checkpoint in {same}/{args.episodes} episodes"), flush=True)
        if args.against == "checkpoint":
            judge("sync bundle", sync, reference, "checkpoint's", args.keep_target)
        base, base_name = (reference, "checkpoint's") if args.against == "checkpoint" else (sync, "zero-latency")

        runs = [BundleRunConfig(mode="async", latency_ms=ms, jitter_ms=args.jitter_ms) for ms in args.latency_ms]
        if args.ensemble_coeff is not None:
            runs += [BundleRunConfig(mode="async", latency_ms=ms, jitter_ms=args.jitter_ms,
                                     temporal_ensemble_coeff=args.ensemble_coeff) for ms in args.latency_ms]
        for k, run in enumerate(runs):
            label = f"bundle, async {run.latency_ms:g}+-{run.jitter_ms:g} ms"
            try:
                steps = effective_n_action_steps(m, run)
            except ValueError as err:
                print(f"{label}: not runnable: {err}")
                continue
            coeff = run.temporal_ensemble_coeff
            if coeff is None:
                coeff = m.control.temporal_ensemble_coeff
            if coeff is not None:
                label, schedule = f"{label}, ensembled", f"temporal ensembling {coeff:g}"
            else:
                schedule = f"n_action_steps {steps or m.control.n_action_steps}"
            start = time.perf_counter()
            delayed = evaluate_bundle(cfg(bundle), tmp / f"async_{k}", run)
            stats = delayed.metadata["runner"]
            print(line(label, delayed, time.perf_counter() - start,
                       f"{schedule}, held ticks {stats['held_ticks']}, stale chunks {stats['stale_chunks']}, "
                       f"delivery ticks p50 {stats['delivery_ticks']['p50']}"))
            judge(label, delayed, base, base_name, args.keep_target)


def judge(label: str, result, base, base_name: str, target: float) -> None:
    if base.success_rate > 0:
        kept = result.success_rate / base.success_rate
        print(f"  {label} keeps {kept:.1%} of the {base_name} success -> target >= {target:.0%}: "
              f"{'MET' if kept >= target else 'NOT MET'}", flush=True)
    else:
        print(f"  the {base_name} success is 0: the claim cannot be judged with this checkpoint")


if __name__ == "__main__":
    main()
