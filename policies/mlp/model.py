"""MLP behaviour cloning: the flattened observation window is mapped to a whole action chunk in one pass."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from policies.backbones import ImageEncoder, load_backbone_weights
from policies.features import ENV_STATE_KEY, STATE_KEY
from policies.interface import Policy
from policies.registry import register_policy
from policies.mlp.config import MLPConfig

_ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "mish": nn.Mish}


class MLPNetwork(nn.Module):
    def __init__(self, c: MLPConfig, step_vector_dim: int, camera_shapes: list[tuple[int, int, int]], action_dim: int):
        super().__init__()
        if len(set(camera_shapes)) > 1:
            raise ValueError(f"the MLP shares one image encoder across cameras; their shapes differ: {camera_shapes}")
        crop = None if c.crop_shape is None else (c.crop_shape[0], c.crop_shape[1])
        self.image_encoder = None
        if camera_shapes:
            self.image_encoder = ImageEncoder(
                camera_shapes[0], c.backbone_norm, c.spatial_softmax_num_keypoints, c.image_feature_dim, crop,
                c.crop_is_random, c.vision_backbone,
            )
        in_dim = c.n_obs_steps * (step_vector_dim + len(camera_shapes) * c.image_feature_dim)
        layers: list[nn.Module] = []
        for hidden in c.hidden_dims:
            layers.append(nn.Linear(in_dim, hidden))
            if c.layer_norm:
                layers.append(nn.LayerNorm(hidden))
            layers.append(_ACTIVATIONS[c.activation]())
            if c.dropout > 0:
                layers.append(nn.Dropout(c.dropout))
            in_dim = hidden
        layers.append(nn.Linear(in_dim, c.chunk_size * action_dim))
        self.mlp = nn.Sequential(*layers)
        self.chunk_size, self.action_dim = c.chunk_size, action_dim

    def forward(self, vectors: list[Tensor], images: list[Tensor]) -> Tensor:
        """[(B, T, D_i)] normalized vectors, [(B, T, C, H, W)] normalized images -> (B, chunk, A)."""
        parts = list(vectors)
        for image in images:
            b, t = image.shape[:2]
            parts.append(self.image_encoder(image.flatten(0, 1)).reshape(b, t, -1))
        x = torch.cat(parts, dim=-1).flatten(1)
        return self.mlp(x).reshape(x.shape[0], self.chunk_size, self.action_dim)


@register_policy("mlp")
class MLPPolicy(Policy):
    config_class = MLPConfig

    def __init__(self, config: MLPConfig, stats: Mapping[str, Any] | None = None):
        super().__init__(config, stats)
        self.vector_keys = [k for k in (STATE_KEY, ENV_STATE_KEY) if k in self.input_specs]
        self.network = MLPNetwork(
            config,
            step_vector_dim=sum(self.input_specs[k].shape[0] for k in self.vector_keys),
            camera_shapes=[self.input_specs[k].shape for k in self.image_keys],
            action_dim=self.action_dim,
        )

    @property
    def action_delta_indices(self) -> list[int]:
        return list(range(self.config.chunk_size))

    def predict_normalized_chunk(self, observations: dict[str, Tensor]) -> Tensor:
        return self.network([observations[k] for k in self.vector_keys], [observations[k] for k in self.image_keys])

    def compute_loss(self, batch: Mapping[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        obs = self.prepare_observations(batch)
        actions, is_pad = self.prepare_actions(batch)
        predicted = self.predict_normalized_chunk(obs)
        loss_fn = F.l1_loss if self.config.loss == "l1" else F.mse_loss
        valid = (~is_pad).unsqueeze(-1).to(predicted.dtype)
        per_element = loss_fn(predicted, actions, reduction="none")
        loss = (per_element * valid).sum() / (valid.sum() * self.action_dim).clamp_min(1)
        return loss, {f"{self.config.loss}_loss": loss.detach(), "loss": loss.detach()}

    def load_pretrained_weights(self) -> None:
        path = self.config.pretrained_backbone_weights
        if path is None:
            return
        if self.network.image_encoder is None:
            raise ValueError(f"mlp: pretrained_backbone_weights={path!r} given but the policy has no camera")
        load_backbone_weights(self.network.image_encoder.backbone, path)
