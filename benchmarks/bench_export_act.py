"""Exported ACT (default config) chunk inference in onnxruntime, one thread, vs the same checkpoint in torch eager.

Builds the default ACT for TransferCube (14 joints, cube pose; random weights and statistics -- inference cost does
not depend on training), saves it as an imitation checkpoint, exports it with deploy.export (parity checked), then
times one chunk (batch 1) both ways in the same run. Target (issue 6): onnxruntime <= 2 ms per chunk.
    python benchmarks/bench_export_act.py [--camera 96] [--output bundles/act_default --control-hz 500]
    python benchmarks/bench_export_act.py --camera 96 --backbone resnet18 resnet10_narrow   # both, same run
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

import numpy as np  # noqa: E402
import torch  # noqa: E402

from policies.backbones import BACKBONES  # noqa: E402

TARGET_MS = 2.0
CAMERA_TARGET_MS = 8.0  # issue 18: ACT with one 96x96 camera, per chunk
TRANSFER_CUBE = "cerebellum/TransferCube-v0"


def default_act_checkpoint(run_dir: Path, camera: int, control_hz: float | None, n_action_steps: int | None,
                           temporal_ensemble_coeff: float | None, backbone: str = "resnet18") -> Path:
    from policies.factory import make_policy
    from training.imitation.checkpoint import save_imitation_checkpoint
    from training.imitation.config import config_from_dict

    rng = np.random.default_rng(0)
    features = {"observation.state": [14], "observation.environment_state": [7], "action": [14]}
    if camera:
        features["observation.images.top"] = [3, camera, camera]
    stats = {}
    for key, shape in features.items():
        if key.startswith("observation.images."):
            stats[key] = {"mean": [[[0.4]]] * 3, "std": [[[0.2]]] * 3, "min": [[[0.0]]] * 3, "max": [[[1.0]]] * 3}
        else:
            std = rng.uniform(0.2, 1.0, shape[0])
            stats[key] = {"mean": rng.normal(0, 0.3, shape[0]).tolist(), "std": std.tolist(),
                          "min": (-3 * std).tolist(), "max": (3 * std).tolist()}
    policy_cfg: dict = {"type": "act"}  # the default config: dim 256, ff 1024, 4 enc / 1 dec layers, chunk 100
    if camera:
        policy_cfg["vision_backbone"] = backbone
    if n_action_steps is not None:
        policy_cfg["n_action_steps"] = n_action_steps
    if temporal_ensemble_coeff is not None:
        policy_cfg.update(temporal_ensemble_coeff=temporal_ensemble_coeff, n_action_steps=1)
    torch.manual_seed(0)
    policy = make_policy(policy_cfg, features, stats).eval()
    env: dict = {"id": TRANSFER_CUBE}
    if camera:
        env.update(obs_mode="state_pixels", cameras=["top"], image_size=[camera, camera])
    if control_hz is not None:
        env["control_hz"] = control_hz
    cfg = config_from_dict({"env": env, "policy": policy_cfg, "dataset": {"root": "benchmark-no-dataset"}})
    return save_imitation_checkpoint(run_dir, cfg, policy, step=0, state={}, tensors={"unused": torch.zeros(1)},
                                     dataset_stats_json="{}")


def timed(fn, repeats: int, warmup: int) -> dict[str, float]:
    for _ in range(warmup):
        fn()
    wall, cpu = [], []
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.thread_time()
        fn()
        cpu.append(time.thread_time() - c0)
        wall.append(time.perf_counter() - w0)
    ms = lambda xs, p: float(np.percentile(np.asarray(xs) * 1e3, p))  # noqa: E731
    return {"median": ms(wall, 50), "p90": ms(wall, 90), "cpu_median": ms(cpu, 50)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--camera", type=int, default=0, help="add one camera of this size")
    parser.add_argument("--backbone", nargs="+", default=["resnet18"], choices=BACKBONES,
                        help="with --camera: the vision backbone(s) to time, one after another in this run "
                             "(e.g. --backbone resnet18 resnet10_narrow)")
    parser.add_argument("--repeats", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--no-optimize", action="store_true", help="export without the onnxscript optimizer")
    parser.add_argument("--output", type=Path, help="keep the bundle here (e.g. for bench_runtime_control_loop.py)")
    parser.add_argument("--control-hz", type=float, help="env control rate written into the manifest (default 50)")
    parser.add_argument("--n-action-steps", type=int, help="ACT n_action_steps (default: the config's 100)")
    parser.add_argument("--temporal-ensemble-coeff", type=float, help="ACT temporal ensembling (n_action_steps 1)")
    args = parser.parse_args()
    if len(args.backbone) > 1 and args.output is not None:
        parser.error("--output keeps one bundle: give a single --backbone with it")
    if not args.camera and args.backbone != ["resnet18"]:
        parser.error("--backbone needs --camera (the state-only ACT has no vision backbone)")
    torch.set_num_threads(1)
    for backbone in args.backbone:
        run_one(args, backbone)


def run_one(args: argparse.Namespace, backbone: str) -> None:

    from deploy.export import ExportConfig, export_checkpoint
    from deploy.runtime import BundlePolicy
    from policies.export import to_torch
    from training.imitation.checkpoint import read_imitation_checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        ckpt = default_act_checkpoint(Path(tmp) / "run", args.camera, args.control_hz, args.n_action_steps,
                                      args.temporal_ensemble_coeff, backbone)
        out = args.output or Path(tmp) / "bundle"
        start = time.perf_counter()
        # An untrained policy with made-up statistics has no joint speeds to derive a velocity limit from.
        result = export_checkpoint(ExportConfig(checkpoint=str(ckpt), output=str(out), optimize=not args.no_optimize,
                                                overwrite=args.output is not None, max_velocity=[3.0]))
        print(f"export: {result.summary()} (export + parity {time.perf_counter() - start:.1f} s)")
        policy = read_imitation_checkpoint(ckpt).load_policy("cpu").eval()
        bundle = BundlePolicy(out, intra_op_threads=1)
        rng = np.random.default_rng(1)
        inputs = {}
        for f in bundle.manifest.observation:
            shape = (1, *f.shape)
            inputs[f.key] = (rng.integers(0, 256, shape, dtype=np.uint8) if f.dtype == "uint8"
                             else rng.standard_normal(shape).astype(np.float32))
        # The checkpoint takes channel-first images; the bundle takes frames as the manifest declares them (HWC).
        obs = to_torch(inputs, list(inputs), stacked=False,
                       layouts={f.key: f.layout for f in bundle.manifest.observation if f.layout})
        with torch.inference_mode():
            diff = np.abs(bundle.predict_chunk(inputs) - policy.predict_chunk(obs)[0].numpy()).max()

            def torch_chunk():
                policy.predict_chunk(obs)

            load = os.getloadavg()[0]
            ort_t = timed(lambda: bundle.predict_chunk(inputs), args.repeats, args.warmup)
            torch_t = timed(torch_chunk, max(args.repeats // 3, 20), args.warmup // 3)
            ort_again = timed(lambda: bundle.predict_chunk(inputs), args.repeats, args.warmup)  # drift check
        n_params = sum(p.numel() for p in policy.parameters() if p.requires_grad) / 1e6
        import onnxruntime as ort

        print(f"ACT default (dim {policy.config.dim_model}, ff {policy.config.dim_feedforward}, chunk "
              f"{policy.config.chunk_size}, {n_params:.1f}M params incl. training-only CVAE encoder), TransferCube "
              f"dims, camera {f'{args.camera} ({backbone})' if args.camera else 'none'}; batch 1, one thread; "
              f"torch {torch.__version__}, onnxruntime "
              f"{ort.__version__}; load average {load:.2f} on {os.cpu_count()} CPUs")
        print(f"{'':28s} {'median':>9s} {'p90':>9s} {'cpu med':>9s}")
        for label, t in (("onnxruntime (bundle)", ort_t), ("torch eager (checkpoint)", torch_t),
                         ("onnxruntime, again", ort_again)):
            print(f"{label:28s} {t['median']:8.3f}ms {t['p90']:8.3f}ms {t['cpu_median']:8.3f}ms")
        best = min(ort_t["median"], ort_again["median"])
        print(f"speed-up onnxruntime vs torch eager: {torch_t['median'] / best:.2f}x wall, "
              f"{torch_t['cpu_median'] / min(ort_t['cpu_median'], ort_again['cpu_median']):.2f}x cpu; "
              f"max |bundle - torch| on the timed input {diff:.2e}")
        if args.camera:
            print(f"(the {TARGET_MS:g} ms target is for the state-only default ACT; this run adds a camera; issue 18's "
                  f"camera target is <= {CAMERA_TARGET_MS:g} ms -> {'MET' if best <= CAMERA_TARGET_MS else 'NOT MET'})")
        else:
            print(f"target onnxruntime <= {TARGET_MS:g} ms per chunk -> {'MET' if best <= TARGET_MS else 'NOT MET'} "
                  f"({best:.3f} ms median)")


if __name__ == "__main__":
    main()
