"""Fixed-seed behaviour fingerprints of the training and export paths, through the scripts a user runs.

A fingerprint is every logged training loss of a short fixed-seed run (ACT, Diffusion, MLP on a Reach dataset; PPO on
Reach), the sha256 of each final checkpoint's weights, and an exported ACT bundle's actions for fixed observations.
`golden.json` holds the fingerprints recorded before the architecture refactor; test_behaviour_unchanged compares a
fresh run with it. Re-record (only when behaviour is meant to change): python -m tests.regression.behaviour --record
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).with_name("golden.json")
IMITATION_POLICIES = {
    "act": ["policy.dim_model=64", "policy.n_heads=2", "policy.dim_feedforward=128", "policy.chunk_size=8",
            "policy.n_action_steps=4"],
    "diffusion": ["policy.horizon=8", "policy.n_action_steps=4", "policy.down_dims=[32,64]",
                  "policy.num_train_timesteps=20", "policy.num_inference_steps=4"],
    "mlp": [],
}
TRAIN_STEPS = 12
PPO_TIMESTEPS = 256


def _run(script: str, *overrides: str) -> None:
    env = {**os.environ, "WANDB_MODE": "disabled", "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"),
           "PYTHONHASHSEED": "0", "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / script), *overrides], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"{script} {' '.join(overrides)} failed ({done.returncode}):\n{done.stdout[-3000:]}\n"
                           f"{done.stderr[-3000:]}")


def _weights_sha256(checkpoint: Path) -> str:
    """One digest over every *.safetensors file of a checkpoint (names and bytes)."""
    digest = hashlib.sha256()
    for path in sorted(checkpoint.rglob("*.safetensors")):
        digest.update(str(path.relative_to(checkpoint)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _latest_checkpoint(run_dir: Path) -> Path:
    return sorted((run_dir / "checkpoints").iterdir())[-1]


def record_dataset(workdir: Path) -> Path:
    root = workdir / "reach_demos"
    _run("collect.py", "env_id=cerebellum/Reach-v0", "n_episodes=6", f"output_dir={root}", "seed=0",
         "progress=false")
    return root


def imitation_fingerprint(policy: str, dataset: Path, workdir: Path) -> dict:
    run_dir = workdir / f"train_{policy}"
    _run("train.py", "env=reach", f"policy={policy}", *IMITATION_POLICIES[policy], f"dataset.root={dataset}",
         f"steps={TRAIN_STEPS}", "log_every=1", "batch_size=4", "optim.warmup_steps=2", "seed=0", "device=cpu",
         "amp=false", "torch_threads=1", "progress_bar=false", "eval.every_steps=0", "eval.final_episodes=0",
         "logger.mode=disabled", f"run_dir={run_dir}", "dataset.num_workers=0")
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    losses = [[row["step"], row["train/loss"]] for row in rows if "train/loss" in row]
    return {"losses": losses, "weights_sha256": _weights_sha256(_latest_checkpoint(run_dir)),
            "run_dir": str(run_dir)}


def ppo_fingerprint(workdir: Path) -> dict:
    run_dir = workdir / "train_ppo"
    _run("train_rl.py", "env=reach", "algo=ppo", "~algo/tuned", f"total_timesteps={PPO_TIMESTEPS}", "algo.n_steps=64",
         "algo.batch_size=64", "algo.n_epochs=2", "seed=0", "progress_bar=false", "eval.every_steps=0",
         "eval.final_episodes=0", "logger.mode=disabled", f"run_dir={run_dir}", "torch_threads=1")
    losses = []
    with open(run_dir / "progress.csv", newline="") as f:
        for row in csv.DictReader(f):
            if row.get("train/loss"):
                losses.append([int(row["time/total_timesteps"]), float(row["train/loss"])])
    return {"losses": losses, "weights_sha256": _weights_sha256(_latest_checkpoint(run_dir)), "run_dir": str(run_dir)}


def bundle_fingerprint(checkpoint_run: Path, bundle_dir: Path) -> dict:
    """Export a run's checkpoint and run the bundle on fixed random observations (and fixed diffusion noise)."""
    from deploy.runtime import BundlePolicy

    _run("export.py", f"checkpoint={checkpoint_run}", f"output={bundle_dir}", "seed=0")
    policy = BundlePolicy(bundle_dir)
    rng = np.random.default_rng(0)
    outputs = []
    for _ in range(3):
        inputs = {feature.key: rng.standard_normal(policy.input_shape(tuple(feature.shape))).astype(np.float32)
                  for feature in policy.manifest.observation}
        chunk = policy.predict_chunk(inputs, rng=np.random.default_rng(1))
        outputs.append(np.asarray(chunk, dtype=np.float32).ravel().tolist())
    return {"actions": outputs}


def fingerprints(workdir: Path) -> dict:
    import torch

    dataset = record_dataset(workdir)
    result = {"torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability()}
    for policy in IMITATION_POLICIES:
        result[policy] = imitation_fingerprint(policy, dataset, workdir)
    result["ppo"] = ppo_fingerprint(workdir)
    for name in (*IMITATION_POLICIES, "ppo"):
        run_dir = Path(result[name].pop("run_dir"))
        result[f"bundle_{name}"] = bundle_fingerprint(run_dir, workdir / f"bundle_{name}")
    return result


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        found = fingerprints(Path(tmp))
    if "--record" in sys.argv:
        GOLDEN.write_text(json.dumps(found, indent=1) + "\n")
        print(f"wrote {GOLDEN}")
    else:
        print(json.dumps(found, indent=1))
