"""Diffusion Policy export: observation encoder + denoiser with DDIM in the runtime, or the whole sampler in-graph.

runtime (default for a DDIM-sampled policy): encoder.onnx maps the observation window to the UNet's global
condition once per chunk; policy.onnx is one denoising step. The runtime runs DDIM in numpy with the per-step
alpha_bar values written into the manifest, so the graph stays small and the export quick.
in_graph (any other inference scheduler, e.g. DPM-Solver): policy.onnx unrolls the fixed number of sampling steps
of the checkpoint's diffusers scheduler and takes its initial noise as an input.
Both take the initial noise from the runtime's seeded generator, so a parity check can feed torch the same noise.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from policies.diffusion.model import DiffusionPolicy
from policies.export import (
    ACTION_OUTPUT,
    HWC,
    MAIN_FILE,
    ExportDescription,
    ExportEnv,
    Graph,
    check_policy_fits_env,
    example_inputs,
    is_image,
    to_torch,
)
from policies.normalization import MIN_MAX, MEAN_STD, MIN_SCALE
from policies.registry import register_export

SAMPLERS = ("auto", "runtime", "in_graph")
ENCODER_FILE = "encoder.onnx"
CONDITION = "condition"
SAMPLE_INPUT, TIMESTEP_INPUT, NOISE_INPUT = "sample", "timestep", "noise"
DENOISER_OUTPUT = "model_output"


def _observations(policy, keys: list[str], inputs, hwc: frozenset = frozenset()) -> dict[str, torch.Tensor]:
    """Graph inputs -> the policy's (B, n_obs, ...) observations; camera frames in `hwc` made channel-first."""
    stacked = policy.config.n_obs_steps > 1
    obs = {}
    for k, x in zip(keys, inputs):
        if k in hwc:
            x = x.movedim(-1, -3)
        obs[k] = x if stacked else x.unsqueeze(1)
    return policy.prepare_observations(obs)


class ConditionEncoder(nn.Module):
    """Raw observation window (HWC uint8 camera frames) -> the UNet's global condition (normalization and image
    encoders inside)."""

    def __init__(self, policy, keys: list[str], hwc: frozenset = frozenset()):
        super().__init__()
        self.policy, self.keys, self.hwc = policy, list(keys), frozenset(hwc)

    def forward(self, *observations: torch.Tensor) -> torch.Tensor:
        obs = _observations(self.policy, self.keys, observations, self.hwc)
        return self.policy._global_cond(self.policy.inference_network, obs)


class Denoiser(nn.Module):
    """One denoising step in normalized action space: (sample, timestep, condition) -> model output."""

    def __init__(self, policy):
        super().__init__()
        self.unet = policy.inference_network.unet

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        return self.unet(sample, timestep, condition)


class SamplingGraph(nn.Module):
    """Raw observation window + initial noise (1, horizon, A) -> the whole denoised trajectory in action units."""

    def __init__(self, policy, keys: list[str], hwc: frozenset = frozenset()):
        super().__init__()
        self.policy, self.keys, self.hwc = policy, list(keys), frozenset(hwc)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        *observations, noise = inputs
        p = self.policy
        cond = p._global_cond(p.inference_network, _observations(p, self.keys, observations, self.hwc))
        trajectory = p.sample_normalized_trajectory(cond, noise, p.inference_network)
        return p.action_normalizer.unnormalize({"action": trajectory})["action"]


def action_affine(policy) -> tuple[np.ndarray, np.ndarray]:
    """(scale, offset) with action = normalized * scale + offset, the policy's own unnormalization."""
    norm = policy.action_normalizer.feature("action")
    if norm.mode == MEAN_STD:
        return norm.std.clamp_min(MIN_SCALE).numpy(), norm.mean.numpy()
    if norm.mode == MIN_MAX:
        half = 0.5 * (norm.max - norm.min).clamp_min(MIN_SCALE)
        return half.numpy(), (norm.min + half).numpy()
    ones = np.ones(policy.action_dim, np.float32)
    return ones, np.zeros_like(ones)


def ddim_coefficients(policy) -> dict:
    """Per-step alpha_bar of each DDIM step and of the one it moves to, exactly as diffusers' DDIMScheduler.step."""
    from diffusers import DDIMScheduler

    s = policy.sampler
    if not isinstance(s, DDIMScheduler):
        raise ValueError(f"the runtime sampler reproduces DDIM only; this policy samples with {type(s).__name__}")
    if s.config.thresholding:
        raise ValueError("DDIM with dynamic thresholding is not implemented by the runtime sampler; "
                         "export with diffusion_sampler=in_graph")
    s.set_timesteps(policy.config.num_inference_steps)
    step = s.config.num_train_timesteps // s.num_inference_steps  # diffusers' previous-timestep rule
    timesteps = [int(t) for t in policy.sampling_timesteps]
    alphas = [float(s.alphas_cumprod[t]) for t in timesteps]
    prev = [float(s.alphas_cumprod[t - step]) if t - step >= 0 else float(s.final_alpha_cumprod) for t in timesteps]
    return dict(timesteps=tuple(timesteps), alphas_cumprod=tuple(alphas), alphas_cumprod_prev=tuple(prev),
                prediction_type=str(s.config.prediction_type), clip_sample=bool(s.config.clip_sample),
                clip_sample_range=float(s.config.clip_sample_range))


def choose_sampler(policy, requested: str) -> str:
    if requested not in SAMPLERS:
        raise ValueError(f"diffusion_sampler must be one of {SAMPLERS}, got {requested!r}")
    scheduler = policy.config.inference_scheduler
    if scheduler == "ddpm":
        raise ValueError("this diffusion policy samples with DDPM, whose per-step noise a deterministic bundle cannot "
                         "reproduce; retrain or evaluate it with policy.inference_scheduler=ddim (same training "
                         "schedule) before exporting")
    if scheduler == "dpm_solver" and policy.config.clip_sample:
        raise ValueError("this diffusion policy samples with DPM-Solver and dynamic thresholding (clip_sample), whose "
                         "torch.quantile has no ONNX operator; export a policy sampled with "
                         "policy.inference_scheduler=ddim (same training schedule), or without clip_sample")
    if requested == "auto":
        return "runtime" if scheduler == "ddim" else "in_graph"
    if requested == "runtime" and scheduler != "ddim":
        raise ValueError(f"diffusion_sampler=runtime runs DDIM, but the policy samples with {scheduler!r}; use "
                         "diffusion_sampler=in_graph (or auto)")
    return requested


@register_export("diffusion")
def describe(policy: DiffusionPolicy, env: ExportEnv, options) -> ExportDescription:
    keys = check_policy_fits_env(policy, env)
    c = policy.config
    mode = choose_sampler(policy, getattr(options, "diffusion_sampler", "auto"))
    layouts = {k: HWC for k in keys if is_image(env, k)}  # camera frames as drivers deliver them
    hwc = frozenset(layouts)
    observations = example_inputs(env, keys, c.n_obs_steps, layouts=layouts)
    noise_shape = (1, c.horizon, policy.action_dim)
    generator = torch.Generator().manual_seed(1)
    noise = torch.randn(noise_shape, generator=generator)
    stacked = c.n_obs_steps > 1
    # The model returns the whole horizon; the action for the newest observation is at n_obs_steps - 1.
    control = dict(chunk_size=c.horizon, n_action_steps=c.n_action_steps, n_obs_steps=c.n_obs_steps,
                   chunk_offset=c.n_obs_steps - 1, temporal_ensemble_coeff=c.temporal_ensemble_coeff)

    def reference(inputs, noise_array=None) -> np.ndarray:
        if noise_array is None:
            raise ValueError("diffusion parity needs the initial noise fed to the bundle")
        with torch.no_grad():
            chunk = policy.predict_chunk(to_torch(inputs, keys, stacked, layouts),
                                         noise=torch.from_numpy(np.asarray(noise_array, np.float32)))
        return chunk[0].numpy()

    notes = {"diffusion_sampler": mode, "inference_scheduler": c.inference_scheduler,
             "num_inference_steps": c.num_inference_steps, "ema_weights": policy.ema_network is not None}
    if mode == "in_graph":
        graph = Graph(MAIN_FILE, SamplingGraph(policy, keys, hwc), [*keys, NOISE_INPUT], (*observations, noise),
                      ACTION_OUTPUT, exporter="torchscript")
        sampler = {"type": "in_graph", "num_inference_steps": c.num_inference_steps, "noise_input": NOISE_INPUT}
        return ExportDescription([graph], keys, {k: k for k in keys}, reference=reference, sampler=sampler,
                                 noise_shape=noise_shape, notes=notes, layouts=layouts, **control)

    encoder = ConditionEncoder(policy, keys, hwc)
    with torch.no_grad():
        condition = encoder(*observations)
    timestep = torch.tensor([policy.sampling_timesteps[0]], dtype=torch.int64)
    denoiser = Graph(MAIN_FILE, Denoiser(policy), [SAMPLE_INPUT, TIMESTEP_INPUT, CONDITION],
                     (noise, timestep, condition), DENOISER_OUTPUT)
    encoder_graph = Graph(ENCODER_FILE, encoder, keys, observations, CONDITION)
    scale, offset = action_affine(policy)
    sampler = {
        "type": "ddim", **ddim_coefficients(policy),
        "action_scale": tuple(float(v) for v in scale), "action_offset": tuple(float(v) for v in offset),
        "sample_input": SAMPLE_INPUT, "timestep_input": TIMESTEP_INPUT, "timestep_dtype": "int64", "eta": 0.0,
        "use_clipped_model_output": False,
        "condition_model": {"file": ENCODER_FILE, "inputs": {k: k for k in keys}, "output": CONDITION},
        "condition_input": CONDITION, "seed": int(getattr(options, "seed", 0)),
    }
    return ExportDescription([denoiser, encoder_graph], keys, {}, reference=reference, sampler=sampler,
                             noise_shape=noise_shape, notes=notes, layouts=layouts, **control)
