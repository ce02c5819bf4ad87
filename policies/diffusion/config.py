"""Diffusion Policy (Chi et al. 2023) configuration: 1-D conditional UNet, diffusers schedulers, EMA."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from policies.backbones import check_backbone_config
from policies.config import PolicyConfig
from policies.registry import register_config
from policies.features import ENV_STATE_KEY, STATE_KEY

INFERENCE_SCHEDULERS = ("ddim", "dpm_solver", "ddpm")
PREDICTION_TYPES = ("epsilon", "sample")
BETA_SCHEDULES = ("squaredcos_cap_v2", "linear", "scaled_linear")


@register_config("diffusion")
@dataclass
class DiffusionConfig(PolicyConfig):
    """Diffusion Policy hyper-parameters; defaults follow the paper / LeRobot except the UNet size: down_dims
    [64, 128] (two levels; kernel 5, FiLM, GroupNorm, Mish as in the paper) fits the per-chunk CPU budget that the
    paper's (512, 1024, 2048) misses by far (figures in benchmarks/README.md). Set down_dims to [512, 1024, 2048]
    for the paper size.
    """

    type: str = "diffusion"
    normalization_mapping: dict[str, str] = field(
        default_factory=lambda: {"state": "min_max", "image": "mean_std", "action": "min_max"}
    )
    n_obs_steps: int = 2
    horizon: int = 16
    n_action_steps: int = 8

    # State dimensions that are angles in radians, {dataset key: [dim, ...]}: the network sees them as (sin, cos), so
    # an angle wrapping from pi to -pi is no jump in its input (e.g. Push-T's block yaw:
    # {"observation.environment_state": [2]}). The paper's low-dim Push-T observes block keypoints for the same reason.
    angle_inputs: dict[str, list[int]] = field(default_factory=dict)

    # Vision: vision_backbone -> spatial softmax keypoints -> linear, per camera (shared unless told otherwise).
    vision_backbone: str = "resnet18"  # or "resnet10_narrow" (lighter, for 96-128 px; no pretrained weights)
    backbone_norm: str = "group"
    pretrained_backbone_weights: Optional[str] = None
    crop_shape: Optional[list[int]] = None  # [h, w]; random crop in training, centre crop at inference
    crop_is_random: bool = True
    spatial_softmax_num_keypoints: int = 32
    image_feature_dim: int = 64
    use_separate_rgb_encoder_per_camera: bool = False

    # UNet.
    down_dims: list[int] = field(default_factory=lambda: [64, 128])
    kernel_size: int = 5
    n_groups: int = 8
    diffusion_step_embed_dim: int = 128
    use_film_scale_modulation: bool = True

    # Noise schedule (diffusers DDPMScheduler for training) and sampler.
    num_train_timesteps: int = 100
    beta_schedule: str = "squaredcos_cap_v2"
    beta_start: float = 0.0001
    beta_end: float = 0.02
    prediction_type: str = "epsilon"
    clip_sample: bool = True
    clip_sample_range: float = 1.0
    inference_scheduler: str = "ddim"
    num_inference_steps: int = 10
    do_mask_loss_for_padding: bool = False

    # EMA of the weights (diffusers EMAModel with warm-up); inference and export use the averaged network.
    use_ema: bool = True
    ema_decay: float = 0.9999
    ema_min_decay: float = 0.0
    ema_power: float = 0.75
    ema_inv_gamma: float = 1.0
    ema_update_after_step: int = 0

    optimizer_lr: float = 1e-4
    optimizer_weight_decay: float = 1e-6

    def chunk_length(self) -> int:
        # Actions from the current step to the end of the horizon (the first n_obs_steps - 1 are in the past).
        return self.horizon - self.n_obs_steps + 1

    def validate(self) -> None:
        name = "DiffusionConfig"
        if self.n_obs_steps < 1 or self.horizon < self.n_obs_steps:
            raise ValueError(
                f"{name}: need 1 <= n_obs_steps <= horizon, got n_obs_steps={self.n_obs_steps}, horizon={self.horizon}"
            )
        super().validate()
        if not self.down_dims or any(d < 1 for d in self.down_dims):
            raise ValueError(f"{name}.down_dims must be a non-empty list of positive ints, got {self.down_dims}")
        factor = 2 ** (len(self.down_dims) - 1)
        if self.horizon % factor:
            raise ValueError(
                f"{name}.horizon ({self.horizon}) must be divisible by 2^(len(down_dims)-1) = {factor}: the UNet "
                "halves the time axis at every level but the last"
            )
        if any(d % self.n_groups for d in self.down_dims):
            raise ValueError(f"{name}.down_dims {self.down_dims} must all be divisible by n_groups={self.n_groups}")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError(f"{name}.kernel_size must be odd and positive, got {self.kernel_size}")
        if self.diffusion_step_embed_dim < 2 or self.diffusion_step_embed_dim % 2:
            raise ValueError(
                f"{name}.diffusion_step_embed_dim must be even and >= 2, got {self.diffusion_step_embed_dim}"
            )
        for key, dims in self.angle_inputs.items():
            if key not in (STATE_KEY, ENV_STATE_KEY):
                raise ValueError(f"{name}.angle_inputs: {key!r} is not a state feature; expected {STATE_KEY!r} or "
                                 f"{ENV_STATE_KEY!r}")
            if not dims or len(set(dims)) != len(dims) or min(dims) < 0:
                raise ValueError(f"{name}.angle_inputs[{key!r}] must be distinct dimension indices >= 0, got {dims}")
            if self.input_features and key not in self.input_features:
                raise ValueError(f"{name}.angle_inputs names {key!r}, which is not an input of this policy "
                                 f"(inputs: {sorted(self.input_features)})")
            if key in self.input_features and max(dims) >= self.input_features[key][0]:
                raise ValueError(f"{name}.angle_inputs[{key!r}] = {dims} indexes past the feature's "
                                 f"{self.input_features[key][0]} dimensions")
        check_backbone_config(name, self.vision_backbone, self.backbone_norm, self.pretrained_backbone_weights)
        if self.crop_shape is not None and (len(self.crop_shape) != 2 or min(self.crop_shape) < 1):
            raise ValueError(f"{name}.crop_shape must be [height, width] or null, got {self.crop_shape}")
        if self.spatial_softmax_num_keypoints < 1 or self.image_feature_dim < 1:
            raise ValueError(f"{name}: spatial_softmax_num_keypoints and image_feature_dim must be >= 1")
        if self.inference_scheduler not in INFERENCE_SCHEDULERS:
            raise ValueError(
                f"{name}.inference_scheduler must be one of {INFERENCE_SCHEDULERS}, got {self.inference_scheduler!r}"
            )
        if self.prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"{name}.prediction_type must be one of {PREDICTION_TYPES}, got {self.prediction_type!r}")
        if self.beta_schedule not in BETA_SCHEDULES:
            raise ValueError(f"{name}.beta_schedule must be one of {BETA_SCHEDULES}, got {self.beta_schedule!r}")
        if self.num_train_timesteps < 1 or not 1 <= self.num_inference_steps <= self.num_train_timesteps:
            raise ValueError(
                f"{name}: need 1 <= num_inference_steps ({self.num_inference_steps}) <= num_train_timesteps "
                f"({self.num_train_timesteps})"
            )
        if not 0.0 < self.beta_start < self.beta_end < 1.0:
            raise ValueError(f"{name}: need 0 < beta_start < beta_end < 1, got {self.beta_start}, {self.beta_end}")
        for field_name in ("clip_sample_range", "ema_power", "ema_inv_gamma"):
            if not getattr(self, field_name) > 0:
                raise ValueError(f"{name}.{field_name} must be > 0, got {getattr(self, field_name)}")
        if not 0.0 <= self.ema_min_decay <= self.ema_decay < 1.0:
            raise ValueError(
                f"{name}: need 0 <= ema_min_decay <= ema_decay < 1, got {self.ema_min_decay}, {self.ema_decay}"
            )
