"""1-D temporal convolutional UNet with FiLM conditioning, the denoiser of Diffusion Policy (Chi et al. 2023).

Written here because diffusers' UNet1DModel has no per-block FiLM conditioning on a global observation vector.

Layout, for CPU speed at batch 1 (where PyTorch's Conv1d falls back to a much slower kernel than oneDNN's
channels-last 2-D convolution, benchmarks/README.md): activations are (B, C, 1, T) channels-last, every convolution
is a (1, k) Conv2d, and the Conv1d weights are stored time-major so their 4-D view needs no copy. Parameter shapes
and names stay nn.Conv1d's (the state dict is a plain Conv1d UNet's); the layout changes speed, never values.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def time_major_conv1d(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1) -> nn.Conv1d:
    """An nn.Conv1d ('same' zero padding for odd kernels) whose weight is stored time-major (see the module doc).

    The layout survives .to(), deepcopy, load_state_dict and optimizer steps (all keep a tensor's strides).
    """
    conv = nn.Conv1d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2)
    with torch.no_grad():
        conv.weight.data = conv.weight.data.permute(0, 2, 1).contiguous().permute(0, 2, 1)
    return conv


def conv_time(x: Tensor, conv: nn.Conv1d) -> Tensor:
    """`conv` applied along time to x (B, C_in, 1, T) channels-last -> (B, C_out, 1, T_out) channels-last."""
    weight, stride, padding = conv.weight.unsqueeze(2), (1, conv.stride[0]), (0, conv.padding[0])
    if conv.training:
        return F.conv2d(x, weight, conv.bias, stride, padding)
    # Inference: the batch moves to the (size-1) height axis, a free view in this layout, so a batch of sub-envs
    # costs one im2col + one matrix product instead of one per sample. Slower for training-size backward passes.
    return F.conv2d(x.transpose(0, 2), weight, conv.bias, stride, padding).transpose(0, 2)


def conv_norm_mish(x: Tensor, conv: nn.Conv1d, norm: nn.GroupNorm) -> Tensor:
    """Conv1d -> GroupNorm -> Mish, the basic unit of the UNet."""
    return F.mish(F.group_norm(conv_time(x, conv), norm.num_groups, norm.weight, norm.bias, norm.eps))


class SinusoidalStepEmbedding(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        half = dim // 2
        freq = torch.exp(torch.arange(half, dtype=torch.float32) * (-math.log(10000.0) / max(half - 1, 1)))
        self.register_buffer("freq", freq, persistent=False)

    def forward(self, timesteps: Tensor) -> Tensor:
        angles = timesteps.to(torch.float32)[:, None] * self.freq[None, :]
        return torch.cat([angles.sin(), angles.cos()], dim=-1)


class ConditionalResidualBlock1d(nn.Module):
    """Two conv-norm-Mish units; between them the features are scaled and shifted by the conditioning (FiLM).

    The FiLM parameters come from the UNet, which computes those of all blocks with one linear layer per
    denoising step.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, n_groups: int, film_scale: bool):
        super().__init__()
        self.out_channels = out_channels
        self.film_scale = film_scale
        self.film_dim = out_channels * (2 if film_scale else 1)
        self.conv1 = time_major_conv1d(in_channels, out_channels, kernel_size)
        self.norm1 = nn.GroupNorm(n_groups, out_channels)
        self.conv2 = time_major_conv1d(out_channels, out_channels, kernel_size)
        self.norm2 = nn.GroupNorm(n_groups, out_channels)
        self.residual = time_major_conv1d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: Tensor, film: Tensor) -> Tensor:
        """x (B, C_in, 1, T), film (B, film_dim) -> (B, C_out, 1, T), channels-last."""
        out = conv_norm_mish(x, self.conv1, self.norm1)
        film = film[:, :, None, None]
        if self.film_scale:
            out = torch.addcmul(film[:, self.out_channels :], film[:, : self.out_channels], out)
        else:
            out = out + film
        out = conv_norm_mish(out, self.conv2, self.norm2)
        return out + (x if self.residual is None else conv_time(x, self.residual))


class Downsample1d(nn.Module):
    """Strided conv (kernel 3, stride 2): T -> T/2."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = time_major_conv1d(channels, channels, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        return conv_time(x, self.conv)


class Upsample1d(nn.Module):
    """T -> 2T by a kernel-3 conv to 2C channels whose halves become the even and odd steps (1-D sub-pixel conv).

    A superset of the paper's ConvTranspose1d(kernel 4, stride 2, padding 1) -- each output step sees the same or a
    wider input window -- chosen because PyTorch's transposed conv at batch 1 on a CPU is 3-8x slower than this.
    In the time-major layout the interleaving is a reshape of a view: no copy.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels
        self.conv = time_major_conv1d(channels, 2 * channels, 3)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, 1, T) -> (B, C, 1, 2T), channels-last."""
        y = conv_time(x, self.conv).permute(0, 2, 3, 1)  # (B, 1, T, 2C): [even | odd] phases per step
        return y.unflatten(-1, (2, self.channels)).flatten(2, 3).permute(0, 3, 1, 2)


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
                nn.ModuleList([block(cin, cout), block(cout, cout), nn.Identity() if last else Downsample1d(cout)])
            )
        self.mid = nn.ModuleList([block(down_dims[-1], down_dims[-1]), block(down_dims[-1], down_dims[-1])])
        self.up = nn.ModuleList()
        for cin, cout in reversed(levels[1:]):
            # The skip connection is concatenated on channels.
            self.up.append(nn.ModuleList([block(cout * 2, cin), block(cin, cin), Upsample1d(cin)]))
        # Block order in modules() (down, mid, up) is the order forward() consumes them.
        self.film_dims = [m.film_dim for m in self.modules() if isinstance(m, ConditionalResidualBlock1d)]
        self.film = nn.Sequential(nn.Mish(), nn.Linear(cond_dim, sum(self.film_dims)))
        self.final_conv = time_major_conv1d(down_dims[0], down_dims[0], kernel_size)
        self.final_norm = nn.GroupNorm(n_groups, down_dims[0])
        self.final_proj = time_major_conv1d(down_dims[0], action_dim, 1)

    def film_parameters(self, timesteps: Tensor, global_cond: Tensor) -> Tensor:
        """FiLM scales/shifts of every block, (N, sum(film_dims)), for timesteps (N,) and global_cond (N, G).

        Separate from denoise() so a sampler can compute them for all its timesteps in one batched call.
        """
        return self.film(torch.cat([self.step_encoder(timesteps), global_cond], dim=-1))

    def forward(self, sample: Tensor, timesteps: Tensor, global_cond: Tensor) -> Tensor:
        """sample (B, T, A), timesteps (B,), global_cond (B, G) -> (B, T, A)."""
        return self.denoise(sample, self.film_parameters(timesteps, global_cond))

    def denoise(self, sample: Tensor, film: Tensor) -> Tensor:
        """sample (B, T, A) and FiLM parameters (B, sum(film_dims)) -> (B, T, A)."""
        # (B, T, A) -> (B, A, 1, T): a view that is channels-last when the sample is contiguous.
        x = sample.transpose(1, 2).unsqueeze(2).contiguous(memory_format=torch.channels_last)
        films = iter(torch.split(film, self.film_dims, dim=-1))
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
        x = conv_norm_mish(x, self.final_conv, self.final_norm)
        return conv_time(x, self.final_proj).squeeze(2).transpose(1, 2)
