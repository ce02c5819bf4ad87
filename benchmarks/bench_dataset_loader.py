"""Benchmark: training-window loader throughput (100-step action chunks), state only and with one 96x96 camera.

Targets (issue 3): >= 50,000 state samples/s and >= 2,000 samples/s with one 96x96 camera, single process.
Reference measured in the same run: the same WindowDataset read one sample at a time through a plain
DataLoader with default collation (the per-sample path LeRobot's loader takes).

    python benchmarks/bench_dataset_loader.py                      # synthetic TransferCube-shaped dataset
    python benchmarks/bench_dataset_loader.py --dataset data/transfer_cube_cam
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.datasets import DatasetMeta, DatasetWriter, WindowDataset, make_dataloader  # noqa: E402
from training.datasets.image_cache import load_images  # noqa: E402


def synthetic_dataset(root: Path, episodes: int, length: int, size: int) -> Path:
    """TransferCube-shaped data: 14-d state and action, 7-d environment state, one camera, smooth motion."""
    rng = np.random.default_rng(0)
    features = {
        "observation.state": {"dtype": "float32", "shape": [14], "names": None},
        "observation.environment_state": {"dtype": "float32", "shape": [7], "names": None},
        "observation.images.top": {"dtype": "video", "shape": [size, size, 3], "names": ["height", "width", "channels"]},
        "action": {"dtype": "float32", "shape": [14], "names": None},
        "next.reward": {"dtype": "float32", "shape": [1], "names": None},
        "next.done": {"dtype": "bool", "shape": [1], "names": None},
    }
    yy, xx = np.mgrid[0:size, 0:size]
    with DatasetWriter.create(root, 50, features, commit_every=10) as writer:
        for _ in range(episodes):
            walk = np.cumsum(rng.normal(0, 0.02, (length, 14)), 0).astype(np.float32)
            t = np.arange(length)[:, None, None]
            img = np.stack([(xx + t) % 256, (yy * 2 + t) % 256, np.full((length, size, size), 90)], -1).astype(np.uint8)
            writer.add_episode({
                "observation.state": walk, "observation.environment_state": walk[:, :7],
                "observation.images.top": img, "action": walk, "next.reward": np.zeros(length, np.float32),
                "next.done": np.arange(length) == length - 1}, "synthetic")
    return root


def add_dataset_options(parser: argparse.ArgumentParser, dataset_help: str) -> None:
    """--dataset, else a synthetic dataset of --episodes x --length frames: what dataset_or_synthetic reads."""
    parser.add_argument("--dataset", type=Path, help=dataset_help)
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--length", type=int, default=400)


def dataset_or_synthetic(args: argparse.Namespace, scratch: Path) -> Path:
    """The dataset given, or a synthetic one written (and timed) under `scratch`."""
    if args.dataset is not None:
        return args.dataset
    root = scratch / "synthetic"
    t0 = time.perf_counter()
    synthetic_dataset(root, args.episodes, args.length, 96)
    print(f"wrote synthetic dataset {root} ({args.episodes} x {args.length} frames) in "
          f"{time.perf_counter() - t0:.1f} s")
    return root


def throughput(loader, seconds: float) -> float:
    it = iter(loader)
    next(it)  # warm-up (worker start, first allocation)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        try:
            batch = next(it)
        except StopIteration:
            it = iter(loader)
            batch = next(it)
        n += len(batch["index"])
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dataset_options(parser, "an existing dataset with observation.images.<camera>")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--chunk", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    torch.set_num_threads(1)

    root = dataset_or_synthetic(args, Path(tempfile.mkdtemp()))
    meta = DatasetMeta(root)
    camera = meta.camera_keys[0] if meta.camera_keys else None
    t0 = time.perf_counter()
    if camera:
        load_images(meta, camera)
        print(f"decode-once image cache for {camera} {meta.shapes()[camera]}: {time.perf_counter() - t0:.1f} s "
              f"for {meta.total_frames} frames (later runs reuse the memory-mapped cache)")

    chunk = list(range(args.chunk))
    state = {"observation.state": [0], "observation.environment_state": [0], "action": chunk}
    diffusion = {"observation.state": [-1, 0], "observation.environment_state": [-1, 0],
                 "action": list(range(-1, args.chunk - 1))}
    cases = [("state, ACT windows (obs [0], action 0..99)", state, 50_000),
             ("state, diffusion windows (obs [-1,0], action -1..98)", diffusion, 50_000)]
    if camera:
        cases += [(f"state + {camera}, ACT windows", {**state, camera: [0]}, 2_000),
                  (f"state + {camera}, diffusion windows (2 frames)", {**diffusion, camera: [-1, 0]}, 2_000)]
    print(f"dataset {root}: {meta.total_episodes} episodes, {meta.total_frames} frames; batch {args.batch_size}, "
          f"single process, torch threads 1")
    for name, deltas, target in cases:
        ds = WindowDataset(meta, deltas)
        fast = throughput(make_dataloader(ds, args.batch_size, shuffle=True), args.seconds)
        plain = torch.utils.data.DataLoader(ds, batch_size=args.batch_size, shuffle=True, drop_last=True)
        reference = throughput(plain, args.seconds / 2)
        verdict = "meets" if fast >= target else "MISSES"
        print(f"  {name}: {fast:,.0f} samples/s ({verdict} target {target:,}); "
              f"reference per-sample DataLoader {reference:,.0f} samples/s ({fast / reference:.1f}x)")


if __name__ == "__main__":
    main()
