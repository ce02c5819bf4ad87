"""Benchmark: what verifying meta/checksums.json costs next to loading the dataset it protects.

Loads a 50-episode dataset (by default the synthetic TransferCube-shaped one of bench_dataset_loader: 14-d state and
action, one 96x96 camera) the way training does — metadata, every numeric column, the camera frames — with
verification off and on, and hashes every file alone. The reader verifies each file at most once per process, so the
figure that matters is the first load's; a second load in the same process hashes nothing.

    python benchmarks/bench_dataset_checksums.py
    python benchmarks/bench_dataset_checksums.py --dataset data/transfer_cube_cam
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_dataset_loader import add_dataset_options, dataset_or_synthetic  # noqa: E402

from training.datasets import DatasetMeta, checksums, load_images, load_numeric  # noqa: E402


def load(root: Path, verify: bool, cache_dir: Path | None, in_memory: bool) -> float:
    """Seconds for one training-style load: metadata, all numeric columns, every camera."""
    start = time.perf_counter()
    meta = DatasetMeta(root, verify=verify)
    load_numeric(meta, meta.numeric_keys)
    for camera in meta.camera_keys:
        load_images(meta, camera, in_memory=in_memory, cache_dir=cache_dir)
    return time.perf_counter() - start


def best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        checksums.clear_cache()  # every repeat is a first load in a fresh process, as far as hashing goes
        times.append(fn())
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dataset_options(parser, "an existing dataset written by this project (with checksums)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        run(args, Path(scratch))


def run(args: argparse.Namespace, scratch: Path) -> None:
    root = dataset_or_synthetic(args, scratch)
    files = checksums.read_manifest(root)
    if files is None:
        sys.exit(f"error: {root} carries no checksums ({checksums.CHECKSUMS_PATH}); nothing to measure")
    total = sum(int(f["size"]) for f in files.values())
    meta = DatasetMeta(root)
    print(f"dataset {root}: {meta.total_episodes} episodes, {meta.total_frames} frames, {len(files)} files, "
          f"{total / 1e6:.1f} MB")
    cache = scratch / "cache"

    start = time.perf_counter()
    for rel in files:
        checksums.sha256_file(root / rel)
    hash_all = time.perf_counter() - start
    print(f"sha256 of every file: {hash_all * 1e3:.0f} ms ({total / 1e6 / max(hash_all, 1e-9):.0f} MB/s)")

    # Build the decoded-image cache entries once: verified loads key them by the recorded digests, unverified ones
    # by file location, size and mtime.
    load(root, False, cache, in_memory=False)
    load(root, True, cache, in_memory=False)
    rows = [
        ("numeric + cached frames (a training start)", False),
        ("numeric + decoding every frame (first start, no cache)", True),
    ]
    for name, in_memory in rows:
        plain = best(lambda: load(root, False, cache, in_memory), args.repeats)
        checked = best(lambda: load(root, True, cache, in_memory), args.repeats)
        print(f"  {name}: {plain * 1e3:.0f} ms unverified, {checked * 1e3:.0f} ms verified "
              f"(+{(checked - plain) * 1e3:.0f} ms, {100 * (checked - plain) / plain:+.0f}%)")
    checksums.clear_cache()
    load(root, True, cache, in_memory=False)
    start = time.perf_counter()
    load(root, True, cache, in_memory=False)  # same process, files unchanged: nothing is hashed again
    print(f"  second verified load in the same process: {(time.perf_counter() - start) * 1e3:.0f} ms")
    print("(with cached frames the videos are not read, so not hashed: the cache entry is keyed by their recorded "
          "digests and was built from verified files)")


if __name__ == "__main__":
    main()
