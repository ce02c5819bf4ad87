"""VecNormalize statistics as plain JSON (no pickle) and the numpy observation normalizer used at inference/export.

normalization.json (written into RL checkpoints):
    {"norm_obs": bool, "norm_reward": bool, "clip_obs": float, "clip_reward": float, "epsilon": float, "gamma": float,
     "obs": {"mean": [float], "var": [float], "count": float} | null,      over the flattened observation vector
     "ret": {"mean": float, "var": float, "count": float}}                  running discounted-return statistics
A policy input is  clip((x - obs.mean) / sqrt(obs.var + epsilon), -clip_obs, clip_obs)  (VecNormalize's formula).
Python's JSON writes float64 values with their shortest exact repr, so the round trip is bit-exact.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np


def _rms_to_dict(rms) -> dict[str, Any]:
    mean, var = np.asarray(rms.mean, dtype=np.float64), np.asarray(rms.var, dtype=np.float64)
    return {"mean": mean.tolist(), "var": var.tolist(), "count": float(rms.count)}


def _rms_from_dict(rms, data: Mapping[str, Any], where: str) -> None:
    mean = np.asarray(data["mean"], dtype=np.float64)
    var = np.asarray(data["var"], dtype=np.float64)
    if mean.shape != np.shape(rms.mean) or var.shape != np.shape(rms.var):
        raise ValueError(f"{where}: statistics have shape {mean.shape}, the environment needs {np.shape(rms.mean)}")
    if not (np.isfinite(mean).all() and np.isfinite(var).all() and (var >= 0).all()):
        raise ValueError(f"{where}: statistics must be finite with var >= 0")
    rms.mean, rms.var, rms.count = mean, var, float(data["count"])


def vecnormalize_state(venv) -> dict[str, Any]:
    """The statistics and settings of an SB3 VecNormalize as a JSON-able dict."""
    return {
        "norm_obs": bool(venv.norm_obs),
        "norm_reward": bool(venv.norm_reward),
        "clip_obs": float(venv.clip_obs),
        "clip_reward": float(venv.clip_reward),
        "epsilon": float(venv.epsilon),
        "gamma": float(venv.gamma),
        "obs": _rms_to_dict(venv.obs_rms) if venv.norm_obs else None,
        "ret": _rms_to_dict(venv.ret_rms),
    }


def restore_vecnormalize(venv, state: Mapping[str, Any], where: str = "normalization.json") -> None:
    """Load saved statistics into a freshly built VecNormalize with the same settings."""
    if bool(state["norm_obs"]) != bool(venv.norm_obs) or bool(state["norm_reward"]) != bool(venv.norm_reward):
        raise ValueError(f"{where}: saved with norm_obs={state['norm_obs']}, norm_reward={state['norm_reward']} but the "
                         f"env is built with norm_obs={venv.norm_obs}, norm_reward={venv.norm_reward}")
    if venv.norm_obs:
        _rms_from_dict(venv.obs_rms, state["obs"], f"{where} obs")
    _rms_from_dict(venv.ret_rms, state["ret"], f"{where} ret")
    venv.clip_obs, venv.clip_reward = float(state["clip_obs"]), float(state["clip_reward"])
    venv.epsilon, venv.gamma = float(state["epsilon"]), float(state["gamma"])


def save_state(state: Mapping[str, Any], path: Path) -> None:
    path.write_text(json.dumps(state, indent=2))


def load_state(path: Path) -> dict[str, Any]:
    try:
        state = json.loads(Path(path).read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from err
    required = {"norm_obs", "norm_reward", "clip_obs", "clip_reward", "epsilon", "gamma", "obs", "ret"}
    missing = sorted(required - set(state))
    if missing:
        raise ValueError(f"{path} lacks {missing}")
    return state


@dataclass(frozen=True)
class ObservationNormalizer:
    """numpy twin of VecNormalize.normalize_obs over the flattened observation; identity when norm_obs is off."""

    mean: np.ndarray | None
    var: np.ndarray | None
    epsilon: float
    clip: float

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> "ObservationNormalizer":
        if not state["norm_obs"]:
            return cls(None, None, float(state["epsilon"]), float(state["clip_obs"]))
        return cls(np.asarray(state["obs"]["mean"], dtype=np.float64), np.asarray(state["obs"]["var"], dtype=np.float64),
                   float(state["epsilon"]), float(state["clip_obs"]))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.mean is None:
            return np.asarray(x, dtype=np.float32)
        return np.clip((x - self.mean) / np.sqrt(self.var + self.epsilon), -self.clip, self.clip).astype(np.float32)
