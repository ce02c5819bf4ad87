"""ACT (Action Chunking with Transformers, Zhao et al. 2023) configuration."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from policies.backbones import check_backbone_config
from policies.config import PolicyConfig
from policies.registry import register_config

ACTIVATIONS = ("relu", "gelu")
IMAGE_TOKENS = ("grid", "keypoints")


@register_config("act")
@dataclass
class ACTConfig(PolicyConfig):
    """ACT hyper-parameters; defaults follow the paper / LeRobot except the transformer width: 128/512 (the paper's
    512/3200 misses the per-chunk CPU budget; figures in benchmarks/README.md). The paper's depth, chunking and CVAE
    are kept. Set dim_model=512, dim_feedforward=3200 for the paper size.
    """

    type: str = "act"
    chunk_size: int = 100
    n_action_steps: int = 100
    temporal_ensemble_coeff: Optional[float] = None  # the paper's m; LeRobot uses 0.01 (needs n_action_steps=1)

    # Vision: backbone (vision_backbone) feature map tokens, one backbone shared by all cameras.
    vision_backbone: str = "resnet18"  # or "resnet10_narrow" (lighter, for 96-128 px; no pretrained weights)
    backbone_norm: str = "batch"
    pretrained_backbone_weights: Optional[str] = None  # .safetensors/.pt ResNet-18 state dict, loaded by make_policy
    # How a camera's feature map enters the transformer: "grid", one token per feature-map cell with a 2-D sine
    # position (the paper's); "keypoints", one token per spatial-softmax keypoint (its expected image x, y, Levine et
    # al. 2016), which localizes an object below the grid's cell size (a 6x6 grid at 96 px has 16 px cells).
    image_tokens: str = "grid"
    spatial_softmax_num_keypoints: int = 32  # image_tokens=keypoints: tokens per camera

    # Transformer.
    dim_model: int = 128
    n_heads: int = 8
    dim_feedforward: int = 512
    feedforward_activation: str = "relu"
    n_encoder_layers: int = 4
    # The reference implementation builds 7 decoder layers but only the first one's output is used; LeRobot keeps 1.
    n_decoder_layers: int = 1
    pre_norm: bool = False
    dropout: float = 0.1

    # CVAE encoder over (state, action chunk), training only; at inference the latent is zero (its prior mean).
    use_vae: bool = True
    latent_dim: int = 32
    n_vae_encoder_layers: int = 4
    kl_weight: float = 10.0

    optimizer_lr_backbone: float = 1e-5

    def chunk_length(self) -> int:
        return self.chunk_size

    def validate(self) -> None:
        if self.chunk_size < 1:
            raise ValueError(f"ACTConfig.chunk_size must be >= 1, got {self.chunk_size}")
        super().validate()
        if self.n_obs_steps != 1:
            raise ValueError(
                f"ACTConfig.n_obs_steps must be 1 (ACT reads the current observation), got {self.n_obs_steps}"
            )
        check_backbone_config("ACTConfig", self.vision_backbone, self.backbone_norm, self.pretrained_backbone_weights)
        if self.image_tokens not in IMAGE_TOKENS:
            raise ValueError(f"ACTConfig.image_tokens must be one of {IMAGE_TOKENS}, got {self.image_tokens!r}")
        if self.spatial_softmax_num_keypoints < 1:
            raise ValueError(f"ACTConfig.spatial_softmax_num_keypoints must be >= 1, got "
                             f"{self.spatial_softmax_num_keypoints}")
        if self.feedforward_activation not in ACTIVATIONS:
            raise ValueError(
                f"ACTConfig.feedforward_activation must be one of {ACTIVATIONS}, got {self.feedforward_activation!r}"
            )
        if self.n_heads < 1 or self.dim_model < 4 or self.dim_model % 4 or self.dim_model % self.n_heads:
            # multiple of 4: the 2-D sine embedding splits dim_model into sin/cos halves for y and x.
            raise ValueError(
                f"ACTConfig.dim_model ({self.dim_model}) must be a multiple of 4 and divisible by n_heads "
                f"({self.n_heads})"
            )
        for name in ("n_heads", "dim_feedforward", "n_encoder_layers", "n_decoder_layers", "latent_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"ACTConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.use_vae and self.n_vae_encoder_layers < 1:
            raise ValueError(
                f"ACTConfig.n_vae_encoder_layers must be >= 1 with use_vae, got {self.n_vae_encoder_layers}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"ACTConfig.dropout must be in [0, 1), got {self.dropout}")
        if self.kl_weight < 0:
            raise ValueError(f"ACTConfig.kl_weight must be >= 0, got {self.kl_weight}")
        if self.optimizer_lr_backbone <= 0:
            raise ValueError(f"ACTConfig.optimizer_lr_backbone must be > 0, got {self.optimizer_lr_backbone}")
