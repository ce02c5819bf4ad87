"""DDIM sampling loop in numpy, driven by the per-step coefficients a bundle manifest carries."""

from __future__ import annotations

from typing import Callable

import numpy as np

from .manifest import DdimSampler

# Hand-written rather than imported: the runtime may not depend on diffusers/torch. It mirrors
# diffusers.DDIMScheduler.step (no dynamic thresholding) and is checked against it in tests/deploy.


def ddim_sample(
    denoise: Callable[[np.ndarray, int], np.ndarray],
    noise: np.ndarray,
    sampler: DdimSampler,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Run the reverse process from `noise` (normalized action space) and return the final sample.

    `denoise(sample, timestep)` returns the model output for the sampler's prediction type; `rng` supplies the
    extra noise when eta > 0.
    """
    if sampler.eta > 0 and rng is None:
        raise ValueError("ddim_sample: eta > 0 needs a random generator for the per-step noise")
    x = np.asarray(noise, dtype=np.float32)
    clip = sampler.clip_sample_range
    for t, a_t, a_prev in zip(sampler.timesteps, sampler.alphas_cumprod, sampler.alphas_cumprod_prev):
        out = np.asarray(denoise(x, t), dtype=np.float32).reshape(x.shape)
        sqrt_a, sqrt_b = np.float32(np.sqrt(a_t)), np.float32(np.sqrt(1.0 - a_t))
        if sampler.prediction_type == "epsilon":
            x0, eps = (x - sqrt_b * out) / sqrt_a, out
        elif sampler.prediction_type == "sample":
            x0 = out
            eps = (x - sqrt_a * x0) / sqrt_b
        else:  # v_prediction
            x0 = sqrt_a * x - sqrt_b * out
            eps = sqrt_a * out + sqrt_b * x
        if sampler.clip_sample:
            x0 = np.clip(x0, -clip, clip)
        variance = (1.0 - a_prev) / (1.0 - a_t) * (1.0 - a_t / a_prev)
        std = sampler.eta * np.sqrt(max(variance, 0.0))
        if sampler.use_clipped_model_output:
            eps = (x - sqrt_a * x0) / sqrt_b
        direction = np.float32(np.sqrt(max(1.0 - a_prev - std**2, 0.0))) * eps
        x = np.float32(np.sqrt(a_prev)) * x0 + direction
        if sampler.eta > 0:
            x = x + np.float32(std) * rng.standard_normal(x.shape).astype(np.float32)
        x = x.astype(np.float32, copy=False)
    return x
