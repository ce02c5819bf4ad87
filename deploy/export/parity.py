"""Parity of a bundle with its torch checkpoint: the same observations (and noise) through onnxruntime and torch."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np

from deploy.runtime import BundlePolicy
from envs.config import EnvConfig, make_env
from training.datasets.observations import ObservationMapping

from .config import DEFAULT_ATOL
from .plan import ExportPlan, input_shape

Inputs = dict[str, np.ndarray]


class ParityError(RuntimeError):
    """The exported bundle does not reproduce the checkpoint within the tolerance."""


@dataclass
class ParityReport:
    """How far the bundle's actions were from the checkpoint's: per observation set the largest |bundle - torch|, and
    per action dimension the tolerance it was judged by (`mode`: "relative" = rtol x the dimension's range, so an
    action in pixels (0-512) and one in radians are held to the same precision; "absolute" = atol action units)."""

    atol: float  # the tightest per-dimension tolerance, action units (the whole check in "absolute" mode)
    max_abs_diff: dict[str, float]  # observation set -> largest |bundle - torch| over its samples and actions
    samples: dict[str, int]
    output_scale: float  # largest |action| seen, so a tiny difference is not between two zero outputs
    mode: str = "absolute"
    tolerance: tuple[float, ...] = ()  # per action dimension, action units
    rtol: float | None = None  # relative mode: the fraction of each dimension's range
    worst_ratio: dict[str, float] = field(default_factory=dict)  # set -> max over dims of |diff| / tolerance

    @property
    def passed(self) -> bool:
        if self.worst_ratio:
            return all(r <= 1.0 for r in self.worst_ratio.values())
        return all(d <= self.atol for d in self.max_abs_diff.values())

    def to_dict(self) -> dict:
        out = {"atol": self.atol, "max_abs_diff": dict(self.max_abs_diff), "samples": dict(self.samples),
               "output_scale": self.output_scale, "passed": self.passed, "mode": self.mode,
               "tolerance": list(self.tolerance), "worst_ratio": dict(self.worst_ratio)}
        if self.rtol is not None:
            out["rtol"] = self.rtol
        return out


def tolerances(low, high, rtol: float | None, atol: float | None) -> tuple[str, np.ndarray]:
    """(mode, per-dimension tolerance in action units): atol when given (absolute), else rtol x (high - low)."""
    low, high = np.asarray(low, np.float64), np.asarray(high, np.float64)
    if atol is not None:
        return "absolute", np.full(low.shape, float(atol))
    if rtol is None:
        raise ValueError("parity needs a tolerance: parity_rtol (fraction of each action range) or parity_atol")
    return "relative", float(rtol) * (high - low)


def random_inputs(plan: ExportPlan, n: int, rng: np.random.Generator) -> list[Inputs]:
    """Observations with no structure: N(0, 1) physical values (radians / metres scale) and uniform pixels."""
    out = []
    n_obs = plan.control.n_obs_steps
    for _ in range(n):
        sample = {}
        for f in plan.features:
            shape = input_shape(tuple(f.shape), n_obs)
            if f.dtype == "uint8":
                sample[f.key] = rng.integers(0, 256, shape, dtype=np.uint8)
            else:
                sample[f.key] = rng.standard_normal(shape).astype(f.dtype)
        out.append(sample)
    return out


def env_inputs(env: EnvConfig, plan: ExportPlan, n: int, seed: int, sim=None) -> list[Inputs]:
    """Observations the robot would send: windows of consecutive env observations under random actions; camera
    features are the env's rendered frames in the bundle's layout.

    These come from the env the checkpoint was trained on (the distribution its dataset was recorded from); `sim`:
    an instance of it to use (reset here, left open), else one is built and closed.
    """
    observation_to_dataset = ObservationMapping.from_env_config(env)  # as the policy was trained
    n_obs = plan.control.n_obs_steps
    keys = [f.key for f in plan.features]
    layouts = {f.key: f.frame_layout for f in plan.features}
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
                stacked = np.stack([np.asarray(w[k]) for w in window])  # (n_obs, *shape), cameras (3, H, W)
                if layouts.get(k) == "HWC":  # the rendered frame as the camera delivers it
                    stacked = np.ascontiguousarray(np.moveaxis(stacked, -3, -1))
                sample[k] = stacked[None] if n_obs > 1 else stacked
            out.append(sample)
    finally:
        if owned:
            sim.close()
    return out


def check_parity(bundle_dir: str | Path, plan: ExportPlan, sets: Mapping[str, list[Inputs]],
                 atol: float = DEFAULT_ATOL, seed: int = 0, tolerance=None, mode: str = "absolute",
                 rtol: float | None = None) -> ParityReport:
    """Run every sample through the bundle (onnxruntime) and the torch reference; never raises on a mismatch (see
    ParityReport.passed). `tolerance`: per action dimension (action units), else `atol` for every dimension. The
    bundle's files are not hashed again: write_manifest has just checked them."""
    bundle = BundlePolicy(bundle_dir, verify_hash=False)
    offset = plan.control.chunk_offset
    rng = np.random.default_rng(seed)
    tol = None if tolerance is None else np.asarray(tolerance, np.float64)
    diffs, counts, ratios, scale = {}, {}, {}, 0.0
    for name, samples in sets.items():
        worst, per_dim = 0.0, None
        for inputs in samples:
            noise = rng.standard_normal(plan.noise_shape).astype(np.float32) if plan.noise_shape else None
            got = bundle.predict_chunk(inputs, noise=noise)[offset:]
            want = np.asarray(plan.reference(inputs, noise), np.float32)
            if got.shape != want.shape:
                raise ParityError(f"bundle chunk has shape {got.shape} from chunk_offset on, torch gives {want.shape}")
            diff = np.abs(got.astype(np.float64) - want.astype(np.float64)).reshape(-1, got.shape[-1]).max(axis=0)
            per_dim = diff if per_dim is None else np.maximum(per_dim, diff)
            worst = max(worst, float(diff.max()))
            scale = max(scale, float(np.abs(want).max()))
        diffs[name], counts[name] = worst, len(samples)
        if tol is not None and per_dim is not None:
            if tol.shape != per_dim.shape:
                raise ParityError(f"parity tolerance has {tol.size} entries, the bundle's actions {per_dim.size}")
            ratios[name] = float((per_dim / tol).max())
    if tol is None:  # judged by atol alone
        return ParityReport(atol=atol, max_abs_diff=diffs, samples=counts, output_scale=scale, mode="absolute")
    return ParityReport(atol=float(tol.min()), max_abs_diff=diffs, samples=counts, output_scale=scale, mode=mode,
                        tolerance=tuple(float(v) for v in tol), rtol=rtol, worst_ratio=ratios)
