"""scripts/export.py's config (mirrored by configs/export.yaml)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from omegaconf import MISSING

DEFAULT_OPSET = 18  # onnxruntime >= 1.14 runs it: old robot computers keep working
DEFAULT_ATOL = 1e-4  # parity tolerance of check_parity's callers that give no per-dimension one, action units
# Export parity: |bundle - checkpoint| <= DEFAULT_RTOL x (high - low) per action dimension, so the check is as strict
# for an action in pixels (0-512) as for one in radians: 2e-5 of a 5-rad joint range is the 1e-4 rad used before.
DEFAULT_RTOL = 2e-5
SAMPLERS = ("auto", "runtime", "in_graph")
# A camera frame older than this is stale: a few frames of a 30 fps camera, a few control periods at 50 Hz.
DEFAULT_CAMERA_MAX_AGE_S = 0.1


@dataclass
class ExportConfig:
    checkpoint: str = MISSING  # a checkpoint dir or a run dir (its latest checkpoint); imitation or rl
    output: str = MISSING  # the bundle directory to write
    overwrite: bool = False  # replace an existing bundle at `output`
    opset: int = DEFAULT_OPSET
    optimize: bool = True  # onnxscript graph optimizer (constant folding, fusion) before saving
    torchscript: bool = False  # also write policy.torchscript.pt (traced; same inputs as policy.onnx)
    # Diffusion only: "runtime" (encoder + denoiser graphs, DDIM in the runtime), "in_graph" (the whole sampling
    # loop in policy.onnx) or "auto" (runtime for DDIM-sampled policies, in_graph otherwise).
    diffusion_sampler: str = "auto"
    verify: bool = True  # parity check against the checkpoint before the bundle is moved into place
    # Parity tolerance: parity_rtol x each action dimension's range (default), or parity_atol action units for
    # every dimension when set (the manifest's source.parity records which).
    parity_rtol: float = DEFAULT_RTOL
    parity_atol: Optional[float] = None
    parity_samples: int = 8  # per observation set (random, env)
    seed: int = 0  # parity samples and the runtime's diffusion noise seed
    # Written into the manifest as the rate limit the runner enforces (action units per second): one value for
    # every joint or one per joint. None: derived from the training data, 1.5 x the fastest each joint moved in the
    # demonstrations (RL: in rollouts of the policy), see deploy.export.limits.
    max_velocity: Optional[list[float]] = None
    # Written into the manifest as each camera's max_age_s: the runner holds when a frame was captured longer ago
    # than this (seconds). null: frame ages unchecked.
    camera_max_age_s: Optional[float] = DEFAULT_CAMERA_MAX_AGE_S

    def validate(self) -> None:
        for name in ("checkpoint", "output"):
            if getattr(self, name) in (MISSING, "", None):
                raise ValueError(f"{name} is not set: pass {name}=<directory>")
        if self.diffusion_sampler not in SAMPLERS:
            raise ValueError(f"diffusion_sampler must be one of {SAMPLERS}, got {self.diffusion_sampler!r}")
        if not 7 <= self.opset <= 23:
            raise ValueError(f"opset must be in [7, 23], got {self.opset}")
        if self.parity_atol is not None and not (math.isfinite(self.parity_atol) and self.parity_atol > 0):
            raise ValueError(f"parity_atol must be null (use parity_rtol) or a finite number > 0 (action units), "
                             f"got {self.parity_atol}")
        if not (math.isfinite(self.parity_rtol) and 0 < self.parity_rtol < 1):
            raise ValueError(f"parity_rtol must be in (0, 1) (a fraction of each action dimension's range), got "
                             f"{self.parity_rtol}")
        if self.parity_samples < 1:
            raise ValueError(f"parity_samples must be >= 1, got {self.parity_samples}")
        age = self.camera_max_age_s
        if age is not None and (isinstance(age, bool) or not isinstance(age, (int, float))
                                or not (math.isfinite(age) and age > 0)):
            raise ValueError(f"camera_max_age_s must be null (frame ages unchecked) or a finite number > 0 (seconds), "
                             f"got {age!r}")
        if self.max_velocity is not None:
            values = self.max_velocity
            if isinstance(values, (str, bytes)) or not hasattr(values, "__len__") or len(values) == 0:
                raise ValueError(f"max_velocity must be null or a non-empty list of positive numbers (action units "
                                 f"per second), got {values!r}")
            for v in values:
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and v > 0):
                    raise ValueError(f"max_velocity entries must be finite numbers > 0 (action units per second), "
                                     f"got {v!r} in {list(values)}")
