"""Diffusion Policy: a FiLM-conditioned 1-D UNet denoises action trajectories; diffusers schedulers and EMA."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler
from diffusers.training_utils import EMAModel
from torch import Tensor, nn

from policies.backbones import ImageEncoder, load_backbone_weights
from policies.diffusion.config import DiffusionConfig
from policies.diffusion.unet import ConditionalUnet1d
from policies.features import ENV_STATE_KEY, STATE_KEY
from policies.interface import Policy
from policies.registry import register_policy


def make_noise_scheduler(config: DiffusionConfig, kind: str):
    """A diffusers scheduler for the config's noise schedule: 'ddpm' (training), 'ddim' / 'dpm_solver' (sampling)."""
    common = dict(
        num_train_timesteps=config.num_train_timesteps,
        beta_start=config.beta_start,
        beta_end=config.beta_end,
        beta_schedule=config.beta_schedule,
        prediction_type=config.prediction_type,
    )
    clip = dict(clip_sample=config.clip_sample, clip_sample_range=config.clip_sample_range)
    if kind == "ddpm":
        return DDPMScheduler(**common, **clip)
    if kind == "ddim":
        return DDIMScheduler(**common, **clip)
    if kind == "dpm_solver":
        # DPM-Solver has no clip_sample; its thresholding with sample_max_value = range clamps the predicted
        # clean sample the same way. Unclamped, squaredcos_cap_v2's near-zero alpha_bar at the last training step
        # multiplies small noise-prediction errors by ~1/sqrt(alpha_bar) and the first step's estimate explodes.
        return DPMSolverMultistepScheduler(
            **common, thresholding=config.clip_sample, sample_max_value=config.clip_sample_range
        )
    raise ValueError(f"unknown scheduler {kind!r}; expected 'ddpm', 'ddim' or 'dpm_solver'")


class DiffusionNetwork(nn.Module):
    """Observation encoder + denoiser, in normalized space; this whole module is what EMA averages."""

    def __init__(self, c: DiffusionConfig, state_dim: int, env_state_dim: int,
                 camera_shapes: list[tuple[int, int, int]], action_dim: int):
        super().__init__()  # at least one observation: PolicyConfig.features_ready checked it
        crop = None if c.crop_shape is None else (c.crop_shape[0], c.crop_shape[1])

        def encoder(shape: tuple[int, int, int]) -> ImageEncoder:
            return ImageEncoder(
                shape, c.backbone_norm, c.spatial_softmax_num_keypoints, c.image_feature_dim, crop, c.crop_is_random,
                c.vision_backbone,
            )

        self.n_cameras = len(camera_shapes)
        self.separate_encoders = c.use_separate_rgb_encoder_per_camera
        if camera_shapes and self.separate_encoders:
            self.image_encoders = nn.ModuleList(encoder(s) for s in camera_shapes)
        elif camera_shapes:
            if len(set(camera_shapes)) > 1:
                raise ValueError(
                    f"cameras have different shapes {camera_shapes}; a shared image encoder needs equal shapes "
                    "(set use_separate_rgb_encoder_per_camera=true)"
                )
            self.image_encoders = nn.ModuleList([encoder(camera_shapes[0])])
        step_feature_dim = state_dim + env_state_dim + self.n_cameras * c.image_feature_dim
        self.unet = ConditionalUnet1d(
            action_dim,
            global_cond_dim=step_feature_dim * c.n_obs_steps,
            down_dims=list(c.down_dims),
            kernel_size=c.kernel_size,
            n_groups=c.n_groups,
            step_embed_dim=c.diffusion_step_embed_dim,
            film_scale=c.use_film_scale_modulation,
        )

    def encode_observations(self, state: Tensor | None, env_state: Tensor | None, images: list[Tensor]) -> Tensor:
        """(B, T, S), (B, T, E), [(B, T, C, H, W)] -> global conditioning (B, T * per-step features)."""
        parts = [x for x in (state, env_state) if x is not None]
        for i, image in enumerate(images):
            b, t = image.shape[:2]
            enc = self.image_encoders[i if self.separate_encoders else 0]
            parts.append(enc(image.flatten(0, 1)).reshape(b, t, -1))
        return torch.cat(parts, dim=-1).flatten(1)


@register_policy("diffusion")
class DiffusionPolicy(Policy):
    config_class = DiffusionConfig

    def __init__(self, config: DiffusionConfig, stats: Mapping[str, Any] | None = None):
        super().__init__(config, stats)
        self.angle_dims = self._checked_angle_dims(config)
        self.network = DiffusionNetwork(
            config,
            state_dim=self._encoded_size(STATE_KEY) if self.has_state else 0,
            env_state_dim=self._encoded_size(ENV_STATE_KEY) if self.has_env_state else 0,
            camera_shapes=[self.input_specs[k].shape for k in self.image_keys],
            action_dim=self.action_dim,
        )
        self.train_scheduler = make_noise_scheduler(config, "ddpm")
        self.sampler = make_noise_scheduler(config, config.inference_scheduler)
        self.sampler.set_timesteps(config.num_inference_steps)
        # Python ints, fixed by the config: the sampling loop then unrolls into constants under tracing and
        # torch.export (as tensors they would make DDIM's alpha-table lookups data-dependent).
        self.sampling_timesteps: list[int] = [int(t) for t in self.sampler.timesteps]
        self.ema_network: DiffusionNetwork | None = None
        if config.use_ema:
            # The averaged weights live in a module of their own so that they are in the state dict, follow
            # .to(device) and are restored by load_state_dict; EMAModel updates them in place
            # (see after_optimizer_step).
            self.ema_network = copy.deepcopy(self.network).requires_grad_(False)
            self.register_buffer("ema_optimization_step", torch.zeros((), dtype=torch.long))
            self._ema = EMAModel(
                self.ema_network.parameters(),
                decay=config.ema_decay,
                min_decay=config.ema_min_decay,
                update_after_step=config.ema_update_after_step,
                use_ema_warmup=True,
                inv_gamma=config.ema_inv_gamma,
                power=config.ema_power,
            )
            self._ema.shadow_params = list(self.ema_network.parameters())  # drop EMAModel's own copies

    def _checked_angle_dims(self, config: DiffusionConfig) -> dict[str, tuple[list[int], list[int]]]:
        """{key: (angle dims, the other dims)} for config.angle_inputs (checked by config.validate)."""
        out = {}
        for key, dims in config.angle_inputs.items():
            angles = sorted(int(d) for d in dims)
            out[key] = (angles, [d for d in range(self.input_specs[key].shape[0]) if d not in angles])
        return out

    def _encoded_size(self, key: str) -> int:
        """Per-step width of a state feature as the network sees it: every angle becomes (sin, cos)."""
        return self.input_specs[key].shape[0] + len(self.angle_dims.get(key, ((), ()))[0])

    def _encode_angles(self, obs: dict[str, Tensor]) -> dict[str, Tensor]:
        """Angle dimensions (normalized like the rest) -> sin and cos of the angle in radians, appended."""
        if not self.angle_dims:
            return obs
        obs = dict(obs)
        for key, (angles, others) in self.angle_dims.items():
            x = obs[key]
            radians = self.input_normalizer.feature(key).unnormalize(x)[..., angles]
            obs[key] = torch.cat([x[..., others], radians.sin(), radians.cos()], dim=-1)
        return obs

    @property
    def action_delta_indices(self) -> list[int]:
        return list(range(1 - self.config.n_obs_steps, 1 - self.config.n_obs_steps + self.config.horizon))

    @property
    def inference_network(self) -> DiffusionNetwork:
        """The network used for sampling and export: the EMA average when EMA is on."""
        return self.ema_network if self.ema_network is not None else self.network

    def _global_cond(self, network: DiffusionNetwork, obs: dict[str, Tensor]) -> Tensor:
        """Normalized observations (B, n_obs, ...) -> the UNet's global condition (B, G)."""
        obs = self._encode_angles(obs)
        return network.encode_observations(
            obs[STATE_KEY] if self.has_state else None,
            obs[ENV_STATE_KEY] if self.has_env_state else None,
            [obs[k] for k in self.image_keys],
        )

    def compute_loss(self, batch: Mapping[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        obs = self.prepare_observations(batch)
        actions, is_pad = self.prepare_actions(batch)
        global_cond = self._global_cond(self.network, obs)
        noise = torch.randn_like(actions)
        timesteps = torch.randint(
            0, self.config.num_train_timesteps, (actions.shape[0],), device=actions.device, dtype=torch.long
        )
        noisy = self.train_scheduler.add_noise(actions, noise, timesteps)
        predicted = self.network.unet(noisy, timesteps, global_cond)
        target = noise if self.config.prediction_type == "epsilon" else actions
        loss = F.mse_loss(predicted, target, reduction="none")
        if self.config.do_mask_loss_for_padding:
            valid = (~is_pad).unsqueeze(-1).to(loss.dtype)
            loss = (loss * valid).sum() / (valid.sum() * self.action_dim).clamp_min(1)
        else:
            loss = loss.mean()
        return loss, {"loss": loss.detach()}

    def sample_normalized_trajectory(self, global_cond: Tensor, noise: Tensor, network: DiffusionNetwork) -> Tensor:
        """Run the sampler from `noise` (B, horizon, A) to a normalized trajectory; a fixed number of steps."""
        self.sampler.set_timesteps(self.config.num_inference_steps, device=noise.device)  # resets solver state
        batch, n_steps = noise.shape[0], len(self.sampling_timesteps)
        # The conditioning of every step depends only on (t, observation): one batched call for all steps.
        timesteps = torch.tensor(self.sampling_timesteps, dtype=torch.long, device=noise.device)
        films = network.unet.film_parameters(
            timesteps.repeat_interleave(batch), global_cond.repeat(n_steps, 1)
        ).reshape(n_steps, batch, -1)
        x = noise
        for i, t in enumerate(self.sampling_timesteps):
            model_output = network.unet.denoise(x, films[i])
            x = self.sampler.step(model_output, t, x, return_dict=False)[0]
        return x

    def predict_normalized_chunk(self, observations: dict[str, Tensor], noise: Tensor | None = None) -> Tensor:
        network = self.inference_network
        global_cond = self._global_cond(network, observations)
        if noise is None:
            shape = (global_cond.shape[0], self.config.horizon, self.action_dim)
            noise = torch.randn(shape, device=global_cond.device, dtype=global_cond.dtype)
        trajectory = self.sample_normalized_trajectory(global_cond, noise, network)
        return trajectory[:, self.config.n_obs_steps - 1 :]

    @torch.no_grad()
    def predict_chunk(self, observations: Mapping[str, Tensor], noise: Tensor | None = None) -> Tensor:
        """Raw observations (B, n_obs, ...) -> raw actions (B, horizon - n_obs_steps + 1, A) from the current step.

        `noise` (B, horizon, A), standard normal, makes sampling reproducible (and is an explicit model input for
        export); without it noise comes from torch's global generator.
        """
        chunk = self.predict_normalized_chunk(self.prepare_observations(observations), noise)
        return self.action_normalizer.unnormalize({"action": chunk})["action"]

    def after_optimizer_step(self) -> None:
        if self.ema_network is None:
            return
        # EMAModel keeps its own copies; point them at the EMA module's parameters so the averaging happens there
        # (no extra copy per step), and keep its step counter in a buffer so a resumed run continues the warm-up.
        self._ema.shadow_params = list(self.ema_network.parameters())
        self._ema.optimization_step = int(self.ema_optimization_step)
        self._ema.step(self.network.parameters())
        self.ema_optimization_step += 1

    def load_pretrained_weights(self) -> None:
        path = self.config.pretrained_backbone_weights
        if path is None:
            return
        if not self.image_keys:
            raise ValueError(
                f"diffusion: pretrained_backbone_weights={path!r} given but the policy has no camera input"
            )
        for module in (self.network, self.ema_network):
            if module is not None:
                for encoder in module.image_encoders:
                    load_backbone_weights(encoder.backbone, path)

    def optim_param_groups(self) -> list[dict[str, Any]]:
        return [
            {
                "params": [p for p in self.network.parameters() if p.requires_grad],
                "lr": self.config.optimizer_lr,
                "weight_decay": self.config.optimizer_weight_decay,
            }
        ]
