"""Image augmentation for training, done on whole batches in torch (one gather and a few broadcasts per batch, no
per-sample Python): random shifts and colour jitter, both drawn per sample.

Both are training-only: at inference the images pass unchanged, so an exported graph and the runtime carry no
augmentation at all. torchvision's transforms would do the same per image, and torchvision does not install beside
the CPU torch wheel this project targets, so these few lines are written here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

# ITU-R BT.601 luma weights: the grey a saturation change blends towards.
_LUMA = (0.299, 0.587, 0.114)


def random_shift(images: Tensor, pad: int, generator: torch.Generator | None = None) -> Tensor:
    """Pad (edge-replicated) by `pad` pixels and crop back to the input size at a random offset per sample
    (DrQ's random shift, Kostrikov et al. 2021). images: (B, ..., H, W) float; every frame of one sample (its
    observation steps and channels) shifts together."""
    if pad <= 0:
        return images
    lead, (h, w) = images.shape[:-2], images.shape[-2:]
    b = lead[0]
    flat = images.reshape(b, -1, h, w)
    padded = F.pad(flat, (pad, pad, pad, pad), mode="replicate")
    offsets = torch.randint(0, 2 * pad + 1, (2, b), generator=generator, device=images.device)
    rows = torch.arange(h, device=images.device)[None] + offsets[0, :, None]  # (B, H)
    cols = torch.arange(w, device=images.device)[None] + offsets[1, :, None]  # (B, W)
    batch_index = torch.arange(b, device=images.device)[:, None, None, None]
    channel_index = torch.arange(flat.shape[1], device=images.device)[None, :, None, None]
    shifted = padded[batch_index, channel_index, rows[:, None, :, None], cols[:, None, None, :]]
    return shifted.reshape(images.shape)


def color_jitter(images: Tensor, strength: float, generator: torch.Generator | None = None) -> Tensor:
    """Brightness, contrast and saturation each scaled by a factor drawn uniformly from [1 - s, 1 + s] per sample.
    images: (B, ..., 3, H, W) float in [0, 1]; the result is clamped to [0, 1]."""
    if strength <= 0:
        return images
    if images.shape[-3] != 3:
        raise ValueError(f"color_jitter needs RGB images (3 channels), got shape {tuple(images.shape)}")
    b = images.shape[0]
    factor_shape = (3, b) + (1,) * (images.ndim - 1)
    factors = 1.0 + strength * (2.0 * torch.rand(factor_shape, generator=generator, device=images.device) - 1.0)
    brightness, contrast, saturation = factors.to(images.dtype)
    luma = torch.tensor(_LUMA, dtype=images.dtype, device=images.device).view(3, 1, 1)
    x = images * brightness
    grey = (x * luma).sum(dim=-3, keepdim=True)
    x = (x - grey.mean(dim=(-2, -1), keepdim=True)) * contrast + grey.mean(dim=(-2, -1), keepdim=True)
    grey = (x * luma).sum(dim=-3, keepdim=True)
    x = (x - grey) * saturation + grey
    return x.clamp(0.0, 1.0)
