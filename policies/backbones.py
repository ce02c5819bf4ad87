"""Image backbones written here: a ResNet-18-style CNN, a lighter ResNet-10-style one at half width (no torchvision,
no downloads), and a spatial-softmax head."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

NORMS = ("batch", "group")
# Selectable with a policy config's `vision_backbone`; the first is the default. Only resnet18 takes pretrained weights.
BACKBONES = ("resnet18", "resnet10_narrow", "cnn_small")
PRETRAINABLE_BACKBONES = ("resnet18",)


def make_norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        # GroupNorm keeps no running statistics, so EMA-averaged weights stay consistent (Chi et al. 2023).
        return nn.GroupNorm(num_groups=max(1, channels // 16), num_channels=channels)
    raise ValueError(f"unknown backbone norm {kind!r}; expected one of {NORMS}")


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (He et al. 2016)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, norm: str):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = make_norm(norm, out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = make_norm(norm, out_channels)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), make_norm(norm, out_channels)
            )

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """A ResNet feature extractor of BasicBlocks: 7x7 stem, max-pool, four stages (the last three stride 2), returning
    the last feature map (B, widths[-1], H/32, W/32). Module names follow the common layout (conv1, bn1, layer1..4)."""

    widths: tuple[int, int, int, int]
    blocks_per_stage: int

    def __init__(self, in_channels: int = 3, norm: str = "batch"):
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"unknown backbone norm {norm!r}; expected one of {NORMS}")
        stem = self.widths[0]
        self.conv1 = nn.Conv2d(in_channels, stem, 7, stride=2, padding=3, bias=False)
        self.bn1 = make_norm(norm, stem)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        layers, in_ch = [], stem
        for i, width in enumerate(self.widths):
            blocks = [BasicBlock(in_ch, width, 1 if i == 0 else 2, norm)]
            blocks += [BasicBlock(width, width, 1, norm) for _ in range(self.blocks_per_stage - 1)]
            layers.append(nn.Sequential(*blocks))
            in_ch = width
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def output_shape(self, image_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        """(C, h, w) of the feature map for a (C, H, W) input, from the conv arithmetic."""
        _, h, w = image_shape
        for _ in range(5):  # conv1, maxpool, layer2, layer3, layer4 each halve with ceil-like padding
            h, w = (h + 1) // 2, (w + 1) // 2
        return (self.out_channels, h, w)


class ResNet18(ResNet):
    """ResNet-18 ([2, 2, 2, 2] blocks, 64..512 wide): a converted ImageNet state dict loads with
    `load_backbone_weights` (the classifier head is left out)."""

    widths = (64, 128, 256, 512)
    blocks_per_stage = 2
    out_channels = 512


class ResNet10Narrow(ResNet):
    """A lighter ResNet for 96-128 px cameras: one block per stage at half width (32..256), about 1/8 of ResNet-18's
    multiply-adds and 1/9 of its parameters. The same stem, strides and (H/32, W/32) grid keep ACT's image tokens and
    the spatial-softmax head unchanged; at 96 px there is little detail for 512 channels. Trained from scratch (no
    ImageNet weights exist for it)."""

    widths = (32, 64, 128, 256)
    blocks_per_stage = 1
    out_channels = 256


class SmallCNN(nn.Module):
    """A plain CNN for 64-128 px cameras when training on a CPU: four 3x3 convolutions of stride 2 (16, 32, 64, 128
    channels), each normed and rectified, giving an (H/16, W/16) grid. At 96 px it costs about 1/9 of
    resnet10_narrow's multiply-adds: a cube's position on a table needs edges and colour, not ImageNet depth (the
    DrQ and robomimic encoders are of this size)."""

    widths = (16, 32, 64, 128)
    out_channels = 128

    def __init__(self, in_channels: int = 3, norm: str = "group"):
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"unknown backbone norm {norm!r}; expected one of {NORMS}")
        layers, in_ch = [], in_channels
        for width in self.widths:
            layers += [nn.Conv2d(in_ch, width, 3, stride=2, padding=1, bias=False), make_norm(norm, width),
                       nn.ReLU(inplace=True)]
            in_ch = width
        self.layers = nn.Sequential(*layers)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)

    def output_shape(self, image_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        _, h, w = image_shape
        for _ in self.widths:
            h, w = (h + 1) // 2, (w + 1) // 2
        return (self.out_channels, h, w)


def make_backbone(name: str, in_channels: int, norm: str) -> nn.Module:
    """The image backbone a config's `vision_backbone` names."""
    if name == "resnet18":
        return ResNet18(in_channels=in_channels, norm=norm)
    if name == "resnet10_narrow":
        return ResNet10Narrow(in_channels=in_channels, norm=norm)
    if name == "cnn_small":
        return SmallCNN(in_channels=in_channels, norm=norm)
    raise ValueError(f"unknown vision backbone {name!r}; expected one of {BACKBONES}")


def check_backbone_config(owner: str, backbone: str, norm: str, pretrained: str | None) -> None:
    """Shared config validation of vision_backbone / backbone_norm / pretrained_backbone_weights."""
    if backbone not in BACKBONES:
        raise ValueError(f"{owner}.vision_backbone must be one of {BACKBONES}, got {backbone!r}")
    if norm not in NORMS:
        raise ValueError(f"{owner}.backbone_norm must be one of {NORMS}, got {norm!r}")
    if pretrained is not None and backbone not in PRETRAINABLE_BACKBONES:
        raise ValueError(
            f"{owner}.pretrained_backbone_weights={pretrained!r} does not apply to vision_backbone={backbone!r}: "
            f"pretrained weights load only into {PRETRAINABLE_BACKBONES} (train {backbone!r} from scratch, or set "
            "pretrained_backbone_weights: null)"
        )


def _read_state_dict(source: str | os.PathLike) -> dict[str, Tensor]:
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"backbone weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    if path.suffix in (".pt", ".pth", ".bin"):
        # weights_only: never unpickle code from a user-supplied file.
        data = torch.load(str(path), map_location="cpu", weights_only=True)
        if isinstance(data, Mapping) and "state_dict" in data and isinstance(data["state_dict"], Mapping):
            data = data["state_dict"]
        if not isinstance(data, Mapping) or not all(isinstance(v, Tensor) for v in data.values()):
            raise ValueError(f"{path}: expected a state dict (name -> tensor), got {type(data).__name__}")
        return dict(data)
    raise ValueError(f"{path}: unsupported weights format {path.suffix!r}; expected .safetensors, .pt, .pth or .bin")


def load_backbone_weights(
    module: nn.Module,
    source: str | os.PathLike | Mapping[str, Tensor],
    prefix: str = "",
    ignore_prefixes: tuple[str, ...] = ("fc.",),
) -> None:
    """Load user-supplied weights into a backbone, all-or-nothing.

    `prefix` selects and strips a sub-tree of the file (e.g. "backbone."); keys under `ignore_prefixes` (a
    classifier head) are skipped. Any missing, unexpected or wrongly-shaped tensor raises one ValueError listing them.
    """
    where = "state dict" if isinstance(source, Mapping) else str(source)
    raw = dict(source) if isinstance(source, Mapping) else _read_state_dict(source)
    if prefix:
        raw = {k[len(prefix):]: v for k, v in raw.items() if k.startswith(prefix)}
        if not raw:
            raise ValueError(f"backbone weights {where}: no key starts with prefix {prefix!r}")
    given = {k: v for k, v in raw.items() if not k.startswith(ignore_prefixes)}
    expected = module.state_dict()
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    mismatched = sorted(
        f"{k}: file {tuple(given[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in set(given) & set(expected)
        if given[k].shape != expected[k].shape
    )
    problems = []
    for label, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", mismatched)):
        if items:
            shown = ", ".join(items[:8]) + (f", ... ({len(items)} in all)" if len(items) > 8 else "")
            problems.append(f"{label}: {shown}")
    if problems:
        raise ValueError(
            f"backbone weights {where} do not fit {type(module).__name__}: " + "; ".join(problems)
            + " (a ResNet-18 state dict with conv1/bn1/layer1..layer4 names is expected; batch-norm weights need "
            "the 'batch' backbone norm)"
        )
    module.load_state_dict(given, strict=True)


class SpatialSoftmax(nn.Module):
    """Expected 2-D image coordinates of K learned keypoints (Levine et al. 2016; used by Diffusion Policy)."""

    def __init__(self, in_channels: int, height: int, width: int, num_keypoints: int):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, num_keypoints, 1)
        self.num_keypoints = num_keypoints
        ys, xs = torch.meshgrid(torch.linspace(-1.0, 1.0, height), torch.linspace(-1.0, 1.0, width), indexing="ij")
        self.register_buffer("grid", torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=1), persistent=False)

    def forward(self, features: Tensor) -> Tensor:
        logits = self.proj(features).flatten(2)  # (B, K, h*w)
        attention = torch.softmax(logits, dim=-1)
        return (attention @ self.grid).flatten(1)  # (B, 2K): x, y per keypoint


class ImageEncoder(nn.Module):
    """Backbone (`make_backbone` name, ResNet-18 by default) -> spatial softmax keypoints -> linear feature, with
    optional crop (random in training)."""

    def __init__(
        self,
        image_shape: tuple[int, int, int],
        norm: str,
        num_keypoints: int,
        feature_dim: int,
        crop_shape: tuple[int, int] | None = None,
        crop_is_random: bool = True,
        backbone: str = "resnet18",
    ):
        super().__init__()
        c, h, w = image_shape
        if crop_shape is not None:
            ch, cw = crop_shape
            if not (0 < ch <= h and 0 < cw <= w):
                raise ValueError(f"crop_shape {tuple(crop_shape)} does not fit inside images of size {(h, w)}")
            h, w = ch, cw
        self.crop_shape = None if crop_shape is None else (int(crop_shape[0]), int(crop_shape[1]))
        self.crop_is_random = crop_is_random
        self.backbone = make_backbone(backbone, c, norm)
        fc, fh, fw = self.backbone.output_shape((c, h, w))
        self.keypoints = SpatialSoftmax(fc, fh, fw, num_keypoints)
        self.out = nn.Linear(2 * num_keypoints, feature_dim)
        self.feature_dim = feature_dim

    def crop(self, images: Tensor) -> Tensor:
        if self.crop_shape is None:
            return images
        ch, cw = self.crop_shape
        h, w = images.shape[-2:]
        if self.training and self.crop_is_random:
            top = int(torch.randint(0, h - ch + 1, ()).item())
            left = int(torch.randint(0, w - cw + 1, ()).item())
        else:
            top, left = (h - ch) // 2, (w - cw) // 2
        return images[..., top : top + ch, left : left + cw]

    def forward(self, images: Tensor) -> Tensor:
        return torch.relu(self.out(self.keypoints(self.backbone(self.crop(images)))))
