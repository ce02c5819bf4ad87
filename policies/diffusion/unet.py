"""1-D temporal convolutional UNet with FiLM conditioning, the denoiser of Diffusion Policy (Chi et al. 2023).

Written here because diffusers' UNet1DModel has no per-block FiLM conditioning on a global observation vector.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class TemporalConv1d(nn.Conv1d):
    """nn.Conv1d (same parameters and state dict) computed as im2col + one matrix product.

    Why: at batch 1 with few time steps, PyTorch's CPU heuristics route Conv1d to its slow reference kernel,
    which is 4-6x slower than this for the 128-512 channel layers here, and sampling calls the UNet
    num_inference_steps times per chunk. Only zero padding, no dilation, no groups.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding)

    def forward(self, x: Tensor) -> Tensor:
        pad, k, stride = self.padding[0], self.kernel_size[0], self.stride[0]
        if k == 1 and stride == 1 and pad == 0:
            return F.linear(x.transpose(1, 2), self.weight[:, :, 0], self.bias).transpose(1, 2)
        # F.unfold (im2col) on a height-1 image; unlike Tensor.unfold it exports to ONNX with a dynamic batch.
        cols = F.unfold(x[:, :, None, :], (1, k), padding=(0, pad), stride=(1, stride))  # (B, C_in * K, T_out)
        return F.linear(cols.transpose(1, 2), self.weight.flatten(1), self.bias).transpose(1, 2)


class SinusoidalStepEmbedding(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        half = dim // 2
        freq = torch.exp(torch.arange(half, dtype=torch.float32) * (-math.log(10000.0) / max(half - 1, 1)))
        self.register_buffer("freq", freq, persistent=False)

    def forward(self, timesteps: Tensor) -> Tensor:
        angles = timesteps.to(torch.float32)[:, None] * self.freq[None, :]
        return torch.cat([angles.sin(), angles.cos()], dim=-1)


class Conv1dBlock(nn.Module):
    """Conv1d -> GroupNorm -> Mish."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, n_groups: int):
        super().__init__()
        self.block = nn.Sequential(
            TemporalConv1d(in_channels, out_channels, kernel_size, padding=kernel_size // 2),
            nn.GroupNorm(n_groups, out_channels),
            nn.Mish(),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.block(x)


class ConditionalResidualBlock1d(nn.Module):
    """Two conv blocks; between them the features are scaled and shifted by a function of the conditioning (FiLM).

    The FiLM parameters come from the UNet, which computes those of all blocks with one linear layer per
    denoising step (see ConditionalUnet1d.film).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, n_groups: int, film_scale: bool):
        super().__init__()
        self.out_channels = out_channels
        self.film_scale = film_scale
        self.film_dim = out_channels * (2 if film_scale else 1)
        self.conv1 = Conv1dBlock(in_channels, out_channels, kernel_size, n_groups)
        self.conv2 = Conv1dBlock(out_channels, out_channels, kernel_size, n_groups)
        self.residual = TemporalConv1d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: Tensor, film: Tensor) -> Tensor:
        """x (B, C_in, T), film (B, film_dim) -> (B, C_out, T)."""
        out = self.conv1(x)
        film = film[:, :, None]
        if self.film_scale:
            out = film[:, : self.out_channels] * out + film[:, self.out_channels :]
        else:
            out = out + film
        return self.conv2(out) + self.residual(x)


class ConditionalUnet1d(nn.Module):
    """Denoiser eps(x_t, t | cond) over action trajectories (B, T, A); T halves at every level but the last."""

    def __init__(
        self,
        action_dim: int,
        global_cond_dim: int,
        down_dims: list[int],
        kernel_size: int,
        n_groups: int,
        step_embed_dim: int,
        film_scale: bool,
    ):
        super().__init__()
        self.step_encoder = nn.Sequential(
            SinusoidalStepEmbedding(step_embed_dim),
            nn.Linear(step_embed_dim, step_embed_dim * 4),
            nn.Mish(),
            nn.Linear(step_embed_dim * 4, step_embed_dim),
        )
        cond_dim = step_embed_dim + global_cond_dim

        def block(cin: int, cout: int) -> ConditionalResidualBlock1d:
            return ConditionalResidualBlock1d(cin, cout, kernel_size, n_groups, film_scale)

        dims = [action_dim, *down_dims]
        levels = list(zip(dims[:-1], dims[1:]))
        self.down = nn.ModuleList()
        for i, (cin, cout) in enumerate(levels):
            last = i == len(levels) - 1
            self.down.append(
                nn.ModuleList([
                    block(cin, cout),
                    block(cout, cout),
                    nn.Identity() if last else TemporalConv1d(cout, cout, 3, stride=2, padding=1),
                ])
            )
        self.mid = nn.ModuleList([block(down_dims[-1], down_dims[-1]), block(down_dims[-1], down_dims[-1])])
        self.up = nn.ModuleList()
        for cin, cout in reversed(levels[1:]):
            self.up.append(
                nn.ModuleList([
                    block(cout * 2, cin),  # skip connection concatenated on channels
                    block(cin, cin),
                    nn.ConvTranspose1d(cin, cin, 4, stride=2, padding=1),
                ])
            )
        # FiLM projections of every residual block stacked into one layer: one matrix product per denoising step
        # instead of one per block (per-op overhead dominates at batch 1 on a CPU).
        # Block order in modules() (down, mid, up) is the order forward() consumes them.
        self.film_dims = [m.film_dim for m in self.modules() if isinstance(m, ConditionalResidualBlock1d)]
        self.film = nn.Sequential(nn.Mish(), nn.Linear(cond_dim, sum(self.film_dims)))
        self.final = nn.Sequential(
            Conv1dBlock(down_dims[0], down_dims[0], kernel_size, n_groups), TemporalConv1d(down_dims[0], action_dim, 1)
        )

    def forward(self, sample: Tensor, timesteps: Tensor, global_cond: Tensor) -> Tensor:
        """sample (B, T, A), timesteps (B,), global_cond (B, G) -> (B, T, A)."""
        x = sample.transpose(1, 2)  # convolve over time: (B, A, T)
        cond = torch.cat([self.step_encoder(timesteps), global_cond], dim=-1)
        films = iter(torch.split(self.film(cond), self.film_dims, dim=-1))
        skips = []
        for res1, res2, downsample in self.down:
            x = res2(res1(x, next(films)), next(films))
            skips.append(x)
            x = downsample(x)
        for res in self.mid:
            x = res(x, next(films))
        # The finest level's skip is not used: the up path has one level fewer than the down path (as in the paper).
        for res1, res2, upsample in self.up:
            x = torch.cat([x, skips.pop()], dim=1)
            x = upsample(res2(res1(x, next(films)), next(films)))
        return self.final(x).transpose(1, 2)
