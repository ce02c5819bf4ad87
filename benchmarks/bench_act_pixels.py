"""Benchmark: ACT with one camera ("top", 96x96) learns on TransferCube: its validation loss on held-out episodes falls
(test-sized on a CPU); with --eval-episodes > 0 (a GPU run) it also reports success in simulation and step time.

Inputs are the camera and the arm joints (observation.state), not the cube pose, so the policy must find the cube
in the image. Reference measured in the same run: the validation loss of the untrained policy (step 0).

    MUJOCO_GL=egl python benchmarks/bench_act_pixels.py                          # test-sized (CPU, a few minutes)
    MUJOCO_GL=egl python benchmarks/bench_act_pixels.py --demos 50 --steps 20000 --batch-size 32 --eval-episodes 50
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ENV_ID = "cerebellum/TransferCube-v0"
CAMERA = "top"
IMAGE_SIZE = [96, 96]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demos", type=int, default=6)
    parser.add_argument("--val-episodes", type=int, default=1)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--val-every", type=int, default=50)
    parser.add_argument("--eval-episodes", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: idle cores)")
    parser.add_argument("--workdir", default="outputs/bench/act_pixels")
    args = parser.parse_args()
    os.environ.setdefault("WANDB_MODE", "disabled")

    from apps.recording import CollectConfig, collect
    from training.imitation.config import config_from_dict
    from training.imitation.trainer import train

    work = Path(args.workdir)
    data = work / f"data_{args.demos}"
    env_kwargs = {"obs_mode": "state_pixels", "cameras": [CAMERA], "image_size": IMAGE_SIZE}
    t0 = time.perf_counter()
    collect(CollectConfig(env_id=ENV_ID, env_kwargs=env_kwargs, cameras=[CAMERA], n_episodes=args.demos,
                          output_dir=str(data), seed=0, progress=False))
    print(f"demos: {args.demos} expert episodes with camera {CAMERA!r} {IMAGE_SIZE} in {data} "
          f"({time.perf_counter() - t0:.0f} s)")

    image_key = f"observation.images.{CAMERA}"
    cfg = config_from_dict({
        "env": {"id": ENV_ID, "obs_mode": "state_pixels", "cameras": [CAMERA], "image_size": IMAGE_SIZE},
        "policy": {
            "type": "act", "input_features": {"observation.state": [14], image_key: [3, *IMAGE_SIZE]},
            "chunk_size": 50, "n_action_steps": 1, "temporal_ensemble_coeff": 0.01, "dim_model": 128,
            "dim_feedforward": 512, "n_encoder_layers": 2, "n_decoder_layers": 1, "use_vae": False, "dropout": 0.0,
            "optimizer_lr": 3e-4, "optimizer_lr_backbone": 1e-4,
        },
        "dataset": {"root": str(data), "val_episodes": args.val_episodes, "in_memory_images": True},
        "steps": args.steps, "batch_size": args.batch_size, "torch_threads": args.threads,
        "optim": {"warmup_steps": min(100, args.steps // 10)}, "val_every": args.val_every, "val_batches": 8,
        "log_every": args.val_every, "checkpoint": {"every_steps": 0},
        "eval": {"final_episodes": args.eval_episodes, "n_envs": 4, "video_episodes": 2 if args.eval_episodes else 0},
        "logger": {"mode": "disabled"}, "progress_bar": False,
    })
    run_dir = work / f"run_{time.strftime('%Y%m%d_%H%M%S')}"
    result = train(cfg, run_dir)
    vals = [(row["step"], row["val/loss"]) for row in result.history if "val/loss" in row]
    (_, val0), vals = vals[0], vals[1:]  # step 0: the untrained policy, measured by the same validation code
    rates = [row["train/steps_per_second"] for row in result.history if "train/steps_per_second" in row]
    print(f"device {'cuda' if _cuda() else 'cpu'}: {result.step} steps in "
          f"{result.train_seconds:.0f} s, {1000 / (sum(rates) / len(rates)):.0f} ms per step (batch {args.batch_size})")
    print("validation loss: step 0 (untrained) {:.4f}; ".format(val0)
          + "; ".join(f"step {s} {v:.4f}" for s, v in vals))
    falls = vals[-1][1] < 0.8 * val0
    print(f"ACT + camera on {ENV_ID}: validation loss {val0:.4f} -> {vals[-1][1]:.4f} "
          f"({vals[-1][1] / val0:.0%} of the untrained loss) -> target: falls: {'PASS' if falls else 'FAIL'}")
    if result.final_eval is not None:
        low, high = result.final_eval.success_ci95
        print(f"success {result.final_eval.successes}/{result.final_eval.episodes} = "
              f"{result.final_eval.success_rate:.1%} (95% CI {low:.1%}-{high:.1%})")


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


if __name__ == "__main__":
    main()
