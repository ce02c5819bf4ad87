"""Parity of a bundle with its torch checkpoint: the same observations (and noise) through onnxruntime and torch."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from deploy.runtime import BundlePolicy
from envs.config import EnvConfig, make_env

from .config import DEFAULT_ATOL
from .plan import ExportPlan, input_shape

Inputs = dict[str, np.ndarray]


class ParityError(RuntimeError):
    """The exported bundle does not reproduce the checkpoint within the tolerance."""


@dataclass
class ParityReport:
    atol: float
    max_abs_diff: dict[str, float]  # observation set -> largest |bundle - torch| over its samples and actions
    samples: dict[str, int]
    output_scale: float  # largest |action| seen, so a tiny difference is not between two zero outputs

    @property
    def passed(self) -> bool:
        return all(d <= self.atol for d in self.max_abs_diff.values())

    def to_dict(self) -> dict:
        return {"atol": self.atol, "max_abs_diff": dict(self.max_abs_diff), "samples": dict(self.samples),
                "output_scale": self.output_scale, "passed": self.passed}


def random_inputs(plan: ExportPlan, n: int, rng: np.random.Generator) -> list[Inputs]:
    """Observations with no structure: N(0, 1) physical values (radians / metres scale) and uniform pixels."""
    out = []
    n_obs = plan.control.n_obs_steps
    for _ in range(n):
        sample = {}
        for f in plan.features:
            shape = input_shape(f, n_obs)
            if f.dtype == "uint8":
                sample[f.key] = rng.integers(0, 256, shape, dtype=np.uint8)
            else:
                sample[f.key] = rng.standard_normal(shape).astype(f.dtype)
        out.append(sample)
    return out


def env_inputs(env: EnvConfig, plan: ExportPlan, n: int, seed: int, sim=None) -> list[Inputs]:
    """Observations the robot would send: windows of consecutive env observations under random actions.

    These come from the env the checkpoint was trained on (the distribution its dataset was recorded from); `sim`:
    an instance of it to use (reset here, left open), else one is built and closed.
    """
    from training.datasets import observation_to_dataset

    n_obs = plan.control.n_obs_steps
    keys = [f.key for f in plan.features]
    rng = np.random.default_rng(seed)
    out: list[Inputs] = []
    owned = sim is None
    if owned:
        sim = make_env(env)
    try:
        episode = 0
        while len(out) < n:
            obs, _ = sim.reset(seed=seed + episode)
            episode += 1
            frames = [observation_to_dataset(obs)]
            low, high = sim.action_space.low, sim.action_space.high
            reference = np.asarray(obs.get("agent_pos", (low + high) / 2), np.float32)
            for _ in range(int(rng.integers(n_obs, n_obs + 12))):
                # Small moves around the start pose: random but physically plausible states.
                target = reference + rng.normal(0.0, 0.2, size=low.shape).astype(np.float32) \
                    if reference.shape == low.shape else rng.uniform(low, high).astype(np.float32)
                obs, _, terminated, truncated, _ = sim.step(np.clip(target, low, high))
                frames.append(observation_to_dataset(obs))
                if terminated or truncated:
                    break
            window = frames[-n_obs:]
            while len(window) < n_obs:
                window.insert(0, window[0])
            sample = {}
            for k in keys:
                if k not in window[-1]:
                    raise ValueError(f"env {env.id} does not observe {k!r}, which the bundle reads")
                stacked = np.stack([np.asarray(w[k]) for w in window])  # (n_obs, *shape)
                sample[k] = stacked[None] if n_obs > 1 else stacked
            out.append(sample)
    finally:
        if owned:
            sim.close()
    return out


def check_parity(bundle_dir: str | Path, plan: ExportPlan, sets: Mapping[str, list[Inputs]],
                 atol: float = DEFAULT_ATOL, seed: int = 0) -> ParityReport:
    """Run every sample through the bundle (onnxruntime) and the torch reference; never raises on a mismatch (see
    ParityReport.passed). The bundle's files are not hashed again: write_manifest has just checked them."""
    bundle = BundlePolicy(bundle_dir, verify_hash=False)
    offset = plan.control.chunk_offset
    rng = np.random.default_rng(seed)
    diffs, counts, scale = {}, {}, 0.0
    for name, samples in sets.items():
        worst = 0.0
        for inputs in samples:
            noise = rng.standard_normal(plan.noise_shape).astype(np.float32) if plan.noise_shape else None
            got = bundle.predict_chunk(inputs, noise=noise)[offset:]
            want = np.asarray(plan.reference(inputs, noise), np.float32)
            if got.shape != want.shape:
                raise ParityError(f"bundle chunk has shape {got.shape} from chunk_offset on, torch gives {want.shape}")
            worst = max(worst, float(np.abs(got - want).max()))
            scale = max(scale, float(np.abs(want).max()))
        diffs[name], counts[name] = worst, len(samples)
    return ParityReport(atol=atol, max_abs_diff=diffs, samples=counts, output_scale=scale)
