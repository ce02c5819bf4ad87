"""Benchmark: PPO on cerebellum/PickCube-v0 with the shaped (dense) reward for a wall-clock budget; report success.

Issue 5 asks for the success reached in 30 minutes of training (no target). Trained from
configs/algo/tuned/ppo_pick_cube.yaml, evaluated on seeded episodes (Wilson 95% interval); the same-run reference is
the scripted expert on the same seeds.

    python benchmarks/bench_rl_pick_cube.py                              # 30 minutes of training
    python benchmarks/bench_rl_pick_cube.py --seconds 120 --episodes 20  # a short version
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("WANDB_MODE", "disabled")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hydra import compose, initialize_config_dir  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from envs.config import make_env  # noqa: E402
from envs.experts import make_expert  # noqa: E402
from apps.evaluation import EvaluateConfig, evaluate_checkpoint  # noqa: E402
from training.evaluation import evaluate, make_eval_envs  # noqa: E402
from training.rl.config import finalize, register_configs  # noqa: E402
from training.rl.trainer import train  # noqa: E402

EVAL_SEED = 100_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=1800.0)
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--out", default=str(ROOT / "outputs" / "bench" / "rl_pick_cube" / time.strftime("%Y%m%d-%H%M%S")))
    args = parser.parse_args()
    out = Path(args.out)
    print(f"bench_rl_pick_cube: {os.cpu_count()} CPUs visible, load average {os.getloadavg()}, output {out}", flush=True)

    register_configs()
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = finalize(OmegaConf.to_object(compose("train_rl", overrides=[
            "env=pick_cube", "algo=ppo", "+env.kwargs.reward_type=dense",
            f"max_train_seconds={args.seconds}", "eval.every_steps=0", "eval.final_episodes=0",
            "checkpoint.every_steps=200000", "logger.mode=disabled", "progress_bar=false",
        ])))

    envs = make_eval_envs(cfg.env, 8)
    local = make_env(cfg.env)
    reference = evaluate(envs, [make_expert(local) for _ in range(8)], episodes=args.episodes, seed=EVAL_SEED)
    envs.close()
    print(f"[reference] scripted expert: {reference.summary()}", flush=True)

    result = train(cfg, out / "run")
    ev = evaluate_checkpoint(
        EvaluateConfig(checkpoint=str(result.checkpoint), episodes=args.episodes, seed=EVAL_SEED, n_envs=8,
                       video_episodes=2),
        out / "eval",
    )
    low, high = ev.success_ci95
    print(f"\nPPO on PickCube-v0 (dense reward): trained {result.train_seconds:.0f} s, {result.num_timesteps} steps")
    print(f"success {ev.success_rate:.1%} (95% CI {low:.1%}-{high:.1%}) over {ev.episodes} episodes, "
          f"mean return {ev.mean_return:.2f}")
    print(f"reference (scripted expert, same seeds): {reference.success_rate:.1%}, mean return "
          f"{reference.mean_return:.2f}")
    print(f"load average at the end: {os.getloadavg()}")
    summary = {"train_seconds": result.train_seconds, "timesteps": result.num_timesteps,
               "success_rate": ev.success_rate, "ci95": [low, high], "mean_return": ev.mean_return,
               "reference_success_rate": reference.success_rate, "reference_mean_return": reference.mean_return,
               "args": vars(args)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"summary: {out / 'summary.json'}; videos: {out / 'eval' / 'videos'}")


if __name__ == "__main__":
    main()
