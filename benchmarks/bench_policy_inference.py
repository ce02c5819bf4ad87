"""Per-chunk inference latency of the policies in torch: batch 1, one CPU thread, against the issue's targets.

--backbone NAME [NAME ...] adds, per vision backbone, ACT with one 96x96 camera (inference) and, with --train-step,
the training-step throughput (forward + backward + AdamW step, one thread by default) in image samples/s of the camera
recipe's ACT (configs/experiment/act_pick_cube_pixels.yaml: its sizes and 4 px random shifts) with that backbone:
    python benchmarks/bench_policy_inference.py --backbone resnet18 resnet10_narrow cnn_small --train-step \
        --train-batch-sizes 8 64 --train-threads 2
Reference (issue 18, LeRobot's ACT with one 480x640 camera on this machine class): 7.1 s per step at batch 8, 36 s at
batch 32: 1.1 image samples/s.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from policies import make_policy  # noqa: E402
from policies.backbones import BACKBONES  # noqa: E402

# Figures from the issue (LeRobot measured on this 2-core CPU, torch, batch 1, one thread).
LEROBOT_ACT_STATE_MS = 22.0
LEROBOT_DIFFUSION_10_DDIM_MS = 1970.0
LEROBOT_ACT_IMAGE_SAMPLES_PER_S = 1.1  # 7.1 s per step at batch 8, 36 s at batch 32 (one 480x640 camera)
ACT_TARGET_MS = 5.0
DIFFUSION_TARGET_MS = 30.0

# Task-shaped feature sizes: TransferCube (14 joints, cube pose) for ACT/MLP, Push-T (pusher xy, block xy+yaw).
TRANSFER_CUBE = {"state": 14, "env": 7, "action": 14}
PUSH_T = {"state": 2, "env": 3, "action": 2}


def _stats(dim: int) -> dict:
    return {"mean": [0.0] * dim, "std": [1.0] * dim, "min": [-1.0] * dim, "max": [1.0] * dim}


def camera_recipe_policy() -> dict:
    """The policy fields of configs/experiment/act_pick_cube_pixels.yaml that shape a training step (not its inputs,
    backbone or learning rates)."""
    import yaml

    path = Path(__file__).resolve().parents[1] / "configs" / "experiment" / "act_pick_cube_pixels.yaml"
    policy = yaml.safe_load(path.read_text())["policy"]
    keep = ("chunk_size", "n_action_steps", "dim_model", "n_heads", "dim_feedforward", "n_encoder_layers",
            "n_decoder_layers", "use_vae", "dropout", "image_shift")
    return {k: policy[k] for k in keep}


def build(name: str, dims: dict, camera: int | None = None, **overrides):
    """A policy of `name` with unit stats for these feature sizes, and one observation window for it."""
    keys = {"observation.state": "state", "observation.environment_state": "env", "action": "action"}
    features = {key: [dims[short]] for key, short in keys.items()}
    stats = {key: _stats(dims[short]) for key, short in keys.items()}
    if camera:
        features["observation.images.top"] = [3, camera, camera]
        stats["observation.images.top"] = {"mean": [[[0.5]]] * 3, "std": [[[0.25]]] * 3}
    policy = make_policy({"type": name, **overrides}, features, stats).eval()
    return policy, random_observations(policy, 1, torch.Generator().manual_seed(0))


def random_observations(policy, batch_size: int, g: torch.Generator) -> dict[str, torch.Tensor]:
    """One random observation window per batch row: uint8 frames (as the dataset loader and cameras give them)."""
    n_obs = policy.config.n_obs_steps
    obs = {}
    for key, spec in policy.input_specs.items():
        if spec.kind.value == "image":
            obs[key] = torch.randint(0, 256, (batch_size, n_obs, *spec.shape), generator=g, dtype=torch.uint8)
        else:
            obs[key] = torch.randn(batch_size, n_obs, *spec.shape, generator=g)
    return obs


def measure(policy, obs, repeats: int, warmup: int) -> dict[str, float]:
    """Wall-clock and this thread's CPU time per predict_chunk call (CPU time is less disturbed by other jobs)."""
    wall, cpu = [], []
    with torch.inference_mode():
        for _ in range(warmup):
            policy.predict_chunk(obs)
        for _ in range(repeats):
            w0, c0 = time.perf_counter(), time.thread_time()
            policy.predict_chunk(obs)
            cpu.append(time.thread_time() - c0)
            wall.append(time.perf_counter() - w0)
    q = lambda xs, p: float(np.percentile(np.asarray(xs) * 1e3, p))  # noqa: E731
    return {"median": q(wall, 50), "p90": q(wall, 90), "cpu_median": q(cpu, 50), "cpu_p90": q(cpu, 90)}


def measure_train_step(policy, batch_size: int, steps: int, warmup: int) -> dict[str, float]:
    """Seconds per training step (compute_loss, backward, AdamW step) on one fixed random batch; samples/s from it."""
    window = build_batch_window(policy, batch_size)
    optimizer = torch.optim.AdamW(policy.optim_param_groups(), lr=1e-4)
    policy.train()
    wall, cpu = [], []
    for i in range(warmup + steps):
        w0, c0 = time.perf_counter(), time.thread_time()
        loss, _ = policy.compute_loss(window)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if i >= warmup:
            cpu.append(time.thread_time() - c0)
            wall.append(time.perf_counter() - w0)
    med = float(np.median(wall))
    return {"median_ms": med * 1e3, "cpu_median_ms": float(np.median(cpu)) * 1e3, "samples_per_s": batch_size / med}


def build_batch_window(policy, batch_size: int) -> dict[str, torch.Tensor]:
    """A random training batch (uint8 frames, as the dataset loader gives them) for `policy`'s delta indices."""
    g = torch.Generator().manual_seed(0)
    batch = random_observations(policy, batch_size, g)
    n_obs = policy.config.n_obs_steps
    batch.update({f"{key}_is_pad": torch.zeros(batch_size, n_obs, dtype=torch.bool) for key in policy.input_specs})
    n_act = len(policy.delta_indices()["action"])
    batch["action"] = torch.randn(batch_size, n_act, TRANSFER_CUBE["action"], generator=g)
    batch["action_is_pad"] = torch.zeros(batch_size, n_act, dtype=torch.bool)
    return batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=100, help="timed calls per case (fewer for slow cases)")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--paper-size", action="store_true", help="also time the paper-size ACT and Diffusion UNet")
    parser.add_argument("--backbone", nargs="+", choices=BACKBONES, default=[],
                        help="also time ACT + one 96x96 camera with each of these vision backbones")
    parser.add_argument("--train-step", action="store_true",
                        help="with --backbone: also time ACT training steps at batch 8 (image samples/s)")
    parser.add_argument("--train-steps", type=int, default=20, help="timed training steps per backbone")
    parser.add_argument("--train-batch-sizes", type=int, nargs="+", default=[8])
    parser.add_argument("--train-threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)

    act_ref = f"LeRobot ACT state-only: {LEROBOT_ACT_STATE_MS:g} ms"
    diffusion_ref = f"LeRobot Diffusion 10 DDIM: {LEROBOT_DIFFUSION_10_DDIM_MS:g} ms"
    # (title, (policy, feature sizes, camera size, overrides), timed calls, target, reference)
    cases = [
        ("ACT default, state (TransferCube dims)", ("act", TRANSFER_CUBE, None, {}), args.repeats,
         f"target <= {ACT_TARGET_MS:g} ms;", act_ref),
        ("ACT default, state + one 96x96 camera", ("act", TRANSFER_CUBE, 96, {}), max(args.repeats // 4, 5),
         "(no target)", ""),
        ("Diffusion default, 10 DDIM steps, state (Push-T dims)", ("diffusion", PUSH_T, None, {}),
         max(args.repeats // 2, 5), f"target <= {DIFFUSION_TARGET_MS:g} ms;", diffusion_ref),
        ("MLP default, state (TransferCube dims)", ("mlp", TRANSFER_CUBE, None, {}), args.repeats, "(no target)", ""),
    ]
    if args.paper_size:
        paper_act = {"dim_model": 512, "dim_feedforward": 3200}
        paper_unet = {"down_dims": [512, 1024, 2048]}
        cases += [
            ("ACT paper size (dim 512, ff 3200), state", ("act", TRANSFER_CUBE, None, paper_act),
             max(args.repeats // 4, 5), "(paper size)", act_ref),
            ("Diffusion paper UNet [512,1024,2048], 10 DDIM", ("diffusion", PUSH_T, None, paper_unet), 5,
             "(paper size)", diffusion_ref),
        ]

    for backbone in args.backbone:
        cases.append((f"ACT default, state + one 96x96 camera, {backbone}",
                      ("act", TRANSFER_CUBE, 96, {"vision_backbone": backbone}), max(args.repeats // 4, 5),
                      "(no target)", ""))

    load_before = os.getloadavg()
    cpu = platform.processor() or platform.machine()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread, {cpu}, {os.cpu_count()} CPUs, "
          f"load average {load_before[0]:.2f}")
    header = f"{'case':58s} {'median':>8s} {'p90':>8s} {'cpu med':>8s} {'cpu p90':>8s}  target / reference"
    print(header)
    print("-" * len(header))
    for title, (name, dims, camera, overrides), repeats, target, reference in cases:
        policy, obs = build(name, dims, camera, **overrides)
        r = measure(policy, obs, repeats, args.warmup)
        n_params = sum(p.numel() for p in policy.parameters()) / 1e6
        figures = f"{r['median']:7.2f}ms {r['p90']:7.2f}ms {r['cpu_median']:7.2f}ms {r['cpu_p90']:7.2f}ms"
        extra = f"[chunk {policy.chunk_length}, {n_params:.1f}M params, n={repeats}]"
        print(f"{title:58s} {figures}  {target} {reference} {extra}", flush=True)
    if args.train_step:
        torch.set_num_threads(args.train_threads)
        recipe = camera_recipe_policy()
        print(f"training steps: the camera recipe's ACT ({', '.join(f'{k} {v}' for k, v in recipe.items())}), "
              f"{args.train_threads} thread(s); reference: LeRobot ACT, one 480x640 camera, "
              f"{LEROBOT_ACT_IMAGE_SAMPLES_PER_S:g} image samples/s")
        for backbone in args.backbone or ["resnet18"]:
            norm = "group" if backbone == "cnn_small" else "batch"
            for batch_size in args.train_batch_sizes:
                policy, _ = build("act", TRANSFER_CUBE, 96, **{**recipe, "vision_backbone": backbone,
                                                                "backbone_norm": norm})
                r = measure_train_step(policy, batch_size, args.train_steps, warmup=3)
                print(f"ACT training step, batch {batch_size:3d}, one 96x96 camera, {backbone:16s} "
                      f"{r['median_ms']:8.1f}ms/step (cpu {r['cpu_median_ms']:.1f} ms) -> "
                      f"{r['samples_per_s']:.1f} image samples/s = "
                      f"{r['samples_per_s'] / LEROBOT_ACT_IMAGE_SAMPLES_PER_S:.0f}x the reference "
                      f"[n={args.train_steps}]", flush=True)
    load_after = os.getloadavg()
    print(f"load average after: {load_after[0]:.2f} (figures taken on a shared machine inflate with load; "
          "'cpu' columns count only this thread's CPU time)")


if __name__ == "__main__":
    main()
