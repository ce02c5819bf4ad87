"""Benchmark: the pixel quick start (`python scripts/quickstart.py +variant=pixels`) end to end on this machine, once per
seed: demos -> ACT from the front camera and the joints -> evaluation -> ONNX bundle -> bundle in closed loop.
Target: >= 90% success in <= 20 minutes end to end, for every seed; minimum and mean over the seeds.

Each seed is a whole quick start (its own demos, recorded on that seed, its own training seed), composed from
configs/quickstart.yaml + configs/variant/pixels.yaml exactly as the script composes it. Reference measured in the same
run: the scripted expert's success while recording (the pipeline's first line; the ceiling imitation can reach) and,
for the bundle, the checkpoint's outcome on the same episodes.

    MUJOCO_GL=egl python benchmarks/bench_quickstart_pixels.py                     # 3 seeds, about an hour on 2 cores
    MUJOCO_GL=egl python benchmarks/bench_quickstart_pixels.py --seeds 0
    MUJOCO_GL=egl python benchmarks/bench_quickstart_pixels.py --seeds 0 --smoke   # minutes: tiny sizes, no target
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("WANDB_MODE", "disabled")
sys.path.insert(0, str(CONFIGS.parent))

TARGET_SUCCESS = 0.90
TARGET_MINUTES = 20.0
SMOKE = ["demos=3", "steps=30", "eval_episodes=2", "video_episodes=0", "image_size=[48,48]"]


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    from apps.quickstart import PipelineConfig

    ConfigStore.instance().store(name="quickstart_schema", node=PipelineConfig)
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return OmegaConf.to_object(hydra_compose("quickstart", overrides=["+variant=pixels", *overrides]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--workdir", default="outputs/bench/quickstart_pixels")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks the path, not the target")
    parser.add_argument("overrides", nargs="*", help="quickstart overrides, e.g. steps=2000")
    args = parser.parse_args()

    from apps.quickstart import run_pipeline

    rows = []
    for seed in args.seeds:
        out = Path(args.workdir) / f"seed{seed}_{time.strftime('%Y%m%d_%H%M%S')}"
        cfg = compose([f"seed={seed}", f"output_dir={out}", *(SMOKE if args.smoke else []), *args.overrides])
        print(f"seed {seed}: load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs before the run",
              flush=True)
        start = time.perf_counter()
        result = run_pipeline(cfg, log=lambda line: print(f"  {line}", flush=True))
        minutes = (time.perf_counter() - start) / 60.0
        rows.append((seed, result, minutes))
        print(f"seed {seed}: {result.demos} demos, checkpoint success {result.checkpoint_success:.1%}, bundle "
              f"{result.bundle_success:.1%} (same outcome in {result.same_outcomes}/{result.episodes}), end to end "
              f"{minutes:.1f} min ({', '.join(f'{k} {v:.0f} s' for k, v in result.seconds.items())})", flush=True)

    rates = [r.checkpoint_success for _, r, _ in rows]
    bundles = [r.bundle_success for _, r, _ in rows]
    minutes = [m for _, _, m in rows]
    ok = min(rates) >= TARGET_SUCCESS and max(minutes) <= TARGET_MINUTES
    print(f"pixel quick start over seeds {args.seeds}: checkpoint success min {min(rates):.1%} mean "
          f"{sum(rates) / len(rates):.1%}; bundle min {min(bundles):.1%} mean {sum(bundles) / len(bundles):.1%}; end "
          f"to end max {max(minutes):.1f} min mean {sum(minutes) / len(minutes):.1f} -> target >= "
          f"{TARGET_SUCCESS:.0%} in <= {TARGET_MINUTES:g} min for every seed: "
          f"{'(smoke: not judged)' if args.smoke else ('PASS' if ok else 'FAIL')}")


if __name__ == "__main__":
    main()
