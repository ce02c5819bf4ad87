"""Benchmark: recording TransferCube expert episodes into a LeRobot v3 dataset, state only and with a 96x96 camera.

Target (issue 3): 50 episodes, state only, <= 60 s wall time on the 2-core CPU. References measured in the
same run: the same expert rollouts with no recording at all (env + expert cost, the floor any recorder sits
on), and the recorder's own share (DatasetWriter.add_episode + commit, timed inside the run).

    MUJOCO_GL=egl python benchmarks/bench_dataset_record.py [--episodes 50 --n-envs 2 --no-camera]
    python benchmarks/bench_dataset_record.py --env-id cerebellum_test/ToyReach-v0 ...   # any registered env
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402

from training.datasets import DatasetMeta  # noqa: E402
from training.datasets import writer as writer_module  # noqa: E402
from apps.recording import CollectConfig, collect  # noqa: E402
from envs.modules import import_object  # noqa: E402


class WriterClock:
    """Accumulates time spent inside the dataset writer (what recording adds on top of the rollouts)."""

    def __init__(self):
        self.seconds = 0.0
        cls = writer_module.DatasetWriter
        for name in ("add_episode", "commit"):
            original = getattr(cls, name)

            def timed(self_, *a, _original=original, **k):
                start = time.perf_counter()
                try:
                    return _original(self_, *a, **k)
                finally:
                    self.seconds += time.perf_counter() - start

            setattr(cls, name, timed)


def plain_rollouts(cfg: CollectConfig, episodes: int) -> tuple[float, int]:
    """The same expert in the same env, nothing recorded: seconds and steps for ``episodes`` rollouts."""
    for module in cfg.import_modules:
        importlib.import_module(module)
    env = gym.make(cfg.env_id, **cfg.env_kwargs)
    policy = import_object(cfg.policy_factory)(env)
    steps, start = 0, time.perf_counter()
    for seed in range(episodes):
        obs, _ = env.reset(seed=cfg.seed + seed)
        policy.reset()
        while True:
            obs, _, terminated, truncated, _ = env.step(np.asarray(policy(obs), np.float32))
            steps += 1
            if terminated or truncated:
                break
    env.close()
    return time.perf_counter() - start, steps


def run(name: str, cfg: CollectConfig, clock: WriterClock, target: float | None) -> None:
    clock.seconds = 0.0
    start = time.perf_counter()
    result = collect(cfg)
    wall = time.perf_counter() - start
    meta = DatasetMeta(cfg.output_dir)
    size = sum(p.stat().st_size for p in Path(cfg.output_dir).rglob("*") if p.is_file()) / 1e6
    verdict = "" if target is None else f" ({'meets' if wall <= target else 'MISSES'} target <= {target:.0f} s)"
    print(f"{name}: {result.episodes} episodes, {meta.total_frames} frames, {result.attempts} rollouts "
          f"({result.successes} successful) in {wall:.1f} s{verdict}; {meta.total_frames / wall:,.0f} frames/s; "
          f"recorder share {clock.seconds:.1f} s ({100 * clock.seconds / wall:.0f}%); {size:.1f} MB on disk")
    return wall, meta.total_frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env-id", default="cerebellum/TransferCube-v0")
    parser.add_argument("--import-module", default="envs")
    parser.add_argument("--policy-factory", default="envs.experts:make_expert")
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--n-envs", type=int, nargs="+", default=[1, 2], help="state-only runs, one per value")
    parser.add_argument("--camera-episodes", type=int, default=3,
                        help="episodes of the camera run (software EGL renders ~10-40 frames/s on this CPU)")
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--camera", default="top")
    parser.add_argument("--no-camera", action="store_true", help="skip the camera run")
    parser.add_argument("--reference-episodes", type=int, default=5, help="plain rollouts timed as the reference")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp())
    clock = WriterClock()
    base = dict(env_id=args.env_id, import_modules=[args.import_module], policy_factory=args.policy_factory,
                progress=False, seed=0)
    print(f"{args.env_id}, expert {args.policy_factory}, {os.cpu_count()} CPUs visible, "
          f"load average {os.getloadavg()[0]:.1f} at start")

    state_kwargs = {"obs_mode": "state"}
    probe_cfg = CollectConfig(**base, env_kwargs=state_kwargs)
    ref_seconds, ref_steps = plain_rollouts(probe_cfg, args.reference_episodes)
    pace = ref_steps / ref_seconds
    print(f"reference, no recording, 1 env: {args.reference_episodes} expert rollouts, {ref_steps} steps in "
          f"{ref_seconds:.1f} s = {pace:,.0f} steps/s")
    for n_envs in args.n_envs:
        cfg = CollectConfig(**base, env_kwargs=state_kwargs, n_episodes=args.episodes, n_envs=n_envs,
                            output_dir=str(out / f"state_{n_envs}env"))
        wall, frames = run(f"state only, n_envs={n_envs}", cfg, clock, target=60.0)
        print(f"  reference pace for the same {frames} frames without recording, 1 env: {frames / pace:.1f} s")

    if not args.no_camera:
        cam_kwargs = {"obs_mode": "state_pixels", "cameras": [args.camera], "image_size": [args.size, args.size]}
        n_envs = max(args.n_envs)
        cfg = CollectConfig(**base, env_kwargs=cam_kwargs, cameras=[args.camera], n_episodes=args.camera_episodes,
                            n_envs=n_envs, output_dir=str(out / "camera"))
        ref_seconds, ref_steps = plain_rollouts(cfg, 1)
        cam_pace = ref_steps / ref_seconds
        print(f"reference, no recording, 1 env, rendering {args.size}x{args.size}: {cam_pace:,.1f} steps/s")
        wall, frames = run(f"state + {args.size}x{args.size} camera '{args.camera}', n_envs={n_envs}", cfg, clock, None)
        print(f"  projected for {args.episodes} episodes: {wall * args.episodes / args.camera_episodes:.0f} s "
              f"(reference pace without recording, 1 env: {frames / cam_pace * args.episodes / args.camera_episodes:.0f} s)")
    print(f"datasets under {out}")


if __name__ == "__main__":
    main()
