"""Benchmark: Diffusion Policy, state observations, cerebellum/PushT-v0, >= 100 expert demos, <= 45 min of CPU
training -> success rate over the evaluation episodes (target >= 90%).

Anchor (published, other setup): the Diffusion Policy paper scores 0.91-0.95 on state-based Push-T (human demos,
GPU-scale training). Measured in the same run: the scripted expert's own success while the demos are recorded.

Hyper-parameters for one CPU core (the other is left to the rest of the machine): the default UNet (down_dims
64/128, the size that meets the 30 ms per-chunk inference target), 2 observation steps, horizon 16, DDIM with 10
steps at inference, EMA, batch 64, AdamW 1e-3 with warm-up + cosine over the number of steps that fits the time
budget (measured on this machine before training). Two choices differ from the paper's Push-T setup and were
measured here: the block yaw enters as (sin, cos) (`angle_inputs`; the paper's low-dim Push-T observes keypoints,
which have no wrap at +-pi either), and 2 executed actions per chunk instead of 8 (re-planning every 0.2 s: on one
checkpoint 82% success with 2, 78% with 4, 68% with 8 over 100 episodes).

    MUJOCO_GL=egl python benchmarks/bench_diffusion_push_t.py                      # the full benchmark
    MUJOCO_GL=egl python benchmarks/bench_diffusion_push_t.py --demos 10 --train-minutes 1 --eval-episodes 8   # smoke
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ENV_ID = "cerebellum/PushT-v0"
TARGET = 0.90
ANCHORS = "Diffusion Policy paper, state Push-T: 0.91-0.95"
POLICY = dict(
    type="diffusion", n_obs_steps=2, horizon=16, n_action_steps=2, down_dims=[64, 128], kernel_size=5,
    n_groups=8, diffusion_step_embed_dim=128, num_train_timesteps=100, inference_scheduler="ddim",
    num_inference_steps=10, optimizer_lr=1e-3, optimizer_weight_decay=1e-6,
    angle_inputs={"observation.environment_state": [2]},  # block yaw in rad, wrapped to [-pi, pi)
)
# Planned steps use this fraction of the budget: the step time is measured once, and on a shared machine later steps
# can be slower; a run cut by the time budget stops before its cosine schedule has decayed.
BUDGET_MARGIN = 0.85


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demos", type=int, default=200)
    parser.add_argument("--train-minutes", type=float, default=45.0)
    parser.add_argument("--eval-episodes", type=int, default=200)
    parser.add_argument("--eval-envs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="torch threads for training (0: one per idle core)")
    parser.add_argument("--workdir", default="outputs/bench/diffusion_push_t")
    args = parser.parse_args()
    os.environ.setdefault("WANDB_MODE", "disabled")

    from training.datasets.collection import CollectConfig, collect
    from training.evaluation import EvaluateConfig, evaluate_checkpoint
    from training.imitation.budget import measure_seconds_per_step, steps_for_budget
    from training.imitation.config import config_from_dict
    from training.imitation.trainer import train

    work = Path(args.workdir)
    data = work / f"data_{args.demos}"
    t0 = time.perf_counter()
    collected = collect(CollectConfig(env_id=ENV_ID, n_episodes=args.demos, output_dir=str(data), seed=0,
                                      progress=False))
    if collected.attempts:
        print(f"demos: {collected.episodes} expert episodes in {data} ({time.perf_counter() - t0:.0f} s); expert "
              f"success while recording: {collected.successes}/{collected.attempts}")
    else:
        print(f"demos: {collected.episodes} expert episodes already in {data}")

    budget = args.train_minutes * 60.0
    cfg = config_from_dict({
        "env": {"id": ENV_ID}, "policy": POLICY, "dataset": {"root": str(data)},
        "steps": 1000, "batch_size": args.batch_size, "torch_threads": args.threads or None,
        "optim": {"warmup_steps": 500, "grad_clip_norm": 10.0},
        "eval": {"final_episodes": 0}, "checkpoint": {"every_steps": 2000},
        "logger": {"mode": "disabled"}, "log_every": 200, "progress_bar": False,
    })
    seconds_per_step = measure_seconds_per_step(cfg)
    cfg.steps = steps_for_budget(seconds_per_step, budget, margin=BUDGET_MARGIN)
    cfg.optim.warmup_steps = min(500, cfg.steps // 10)
    cfg.max_train_seconds = budget
    cfg.log_every = max(1, cfg.steps // 20)
    print(f"step time {seconds_per_step * 1000:.0f} ms (batch {args.batch_size}) -> {cfg.steps} steps for a "
          f"{args.train_minutes:g} min budget")
    run_dir = work / f"run_{time.strftime('%Y%m%d_%H%M%S')}"
    result = train(cfg, run_dir)
    losses = [row["train/loss"] for row in result.history if "train/loss" in row]
    print(f"trained {result.step} steps in {result.train_seconds / 60:.1f} min"
          f"{' (stopped by the time budget)' if result.stopped_by_time_budget else ''}; "
          f"train loss {losses[0]:.4f} -> {losses[-1]:.4f}")

    evaluation = evaluate_checkpoint(
        EvaluateConfig(checkpoint=str(run_dir), episodes=args.eval_episodes, n_envs=args.eval_envs, video_episodes=2),
        run_dir / "eval_benchmark",
    )
    low, high = evaluation.success_ci95
    verdict = "PASS" if evaluation.success_rate >= TARGET else "FAIL"
    print(f"Diffusion Policy state-only on {ENV_ID}: success {evaluation.successes}/{evaluation.episodes} = "
          f"{evaluation.success_rate:.1%} (95% CI {low:.1%}-{high:.1%}), mean return {evaluation.mean_return:.1f}, "
          f"{args.demos} demos, {result.train_seconds / 60:.1f} min training -> target >= {TARGET:.0%}: {verdict}")
    print(f"anchor: {ANCHORS}")
    print(f"results: {run_dir / 'eval_benchmark' / 'results.json'}")


if __name__ == "__main__":
    main()
