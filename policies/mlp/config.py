"""MLP behaviour-cloning baseline configuration: observation window -> action chunk."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from policies.backbones import check_backbone_config
from policies.config import PolicyConfig
from policies.registry import register_config

LOSSES = ("l1", "mse")
ACTIVATIONS = ("relu", "gelu", "mish")


@register_config("mlp")
@dataclass
class MLPConfig(PolicyConfig):
    type: str = "mlp"
    n_obs_steps: int = 1
    chunk_size: int = 20
    n_action_steps: int = 10

    hidden_dims: list[int] = field(default_factory=lambda: [512, 512, 512])
    activation: str = "gelu"
    layer_norm: bool = True
    dropout: float = 0.0
    loss: str = "l1"

    # Cameras (optional): backbone (vision_backbone) -> spatial softmax keypoints -> linear, one shared encoder.
    vision_backbone: str = "resnet18"  # or "resnet10_narrow" (lighter, for 96-128 px; no pretrained weights)
    backbone_norm: str = "group"
    pretrained_backbone_weights: Optional[str] = None
    crop_shape: Optional[list[int]] = None
    crop_is_random: bool = True
    spatial_softmax_num_keypoints: int = 32
    image_feature_dim: int = 64

    optimizer_lr: float = 1e-3
    optimizer_weight_decay: float = 1e-4

    def chunk_length(self) -> int:
        return self.chunk_size

    def validate(self) -> None:
        if self.chunk_size < 1:
            raise ValueError(f"MLPConfig.chunk_size must be >= 1, got {self.chunk_size}")
        super().validate()
        if not self.hidden_dims or any(h < 1 for h in self.hidden_dims):
            raise ValueError(f"MLPConfig.hidden_dims must be a non-empty list of positive ints, got {self.hidden_dims}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"MLPConfig.activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"MLPConfig.loss must be one of {LOSSES}, got {self.loss!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"MLPConfig.dropout must be in [0, 1), got {self.dropout}")
        check_backbone_config("MLPConfig", self.vision_backbone, self.backbone_norm, self.pretrained_backbone_weights)
        if self.crop_shape is not None and (len(self.crop_shape) != 2 or min(self.crop_shape) < 1):
            raise ValueError(f"MLPConfig.crop_shape must be [height, width] or null, got {self.crop_shape}")
