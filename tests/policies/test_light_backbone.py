"""The lighter vision backbones (resnet10_narrow, cnn_small) selected with `vision_backbone`: shapes, size, a training
step, config validation, old configs without the field, and ONNX export parity of a 96x96 camera ACT."""

import json

import numpy as np
import pytest
import torch

from policies import load_policy, make_policy, save_policy
from policies.backbones import BACKBONES, ImageEncoder, ResNet10Narrow, ResNet18, SmallCNN, make_backbone
from policies.factory import CONFIG_FILE, config_from_dict

from .synthetic import TINY, image_stats, random_observation_window

LIGHT = "resnet10_narrow"
LIGHT_BACKBONES = {"resnet10_narrow": ResNet10Narrow, "cnn_small": SmallCNN}


def camera_stats() -> dict:
    stats = {key: {"mean": [0.0] * d, "std": [1.0] * d, "min": [-1.0] * d, "max": [1.0] * d}
             for key, d in (("observation.state", 3), ("observation.environment_state", 2), ("action", 3))}
    stats["observation.images.top"] = image_stats()
    return stats


def camera_features(size: int = 32) -> dict:
    return {"observation.state": [3], "observation.environment_state": [2], "action": [3],
            "observation.images.top": [3, size, size]}


@pytest.mark.parametrize("norm", ["batch", "group"])
@pytest.mark.parametrize("shape", [(3, 96, 96), (3, 128, 128), (3, 64, 80), (1, 33, 47)])
def test_light_backbone_feature_map_matches_resnet18_grid(shape, norm):
    net = ResNet10Narrow(in_channels=shape[0], norm=norm).eval()
    with torch.no_grad():
        out = net(torch.rand(2, *shape))
    assert tuple(out.shape[1:]) == net.output_shape(shape)
    assert net.output_shape(shape)[1:] == ResNet18(in_channels=shape[0]).output_shape(shape)[1:]  # same token grid
    assert out.shape[1] == ResNet10Narrow.out_channels == 256


@pytest.mark.parametrize("norm", ["batch", "group"])
@pytest.mark.parametrize("shape", [(3, 96, 96), (3, 84, 84), (3, 64, 80), (1, 33, 47)])
def test_small_cnn_gives_a_sixteenth_resolution_grid(shape, norm):
    net = SmallCNN(in_channels=shape[0], norm=norm).eval()
    with torch.no_grad():
        out = net(torch.rand(2, *shape))
    assert tuple(out.shape[1:]) == net.output_shape(shape)
    assert net.output_shape((3, 96, 96)) == (128, 6, 6)  # 36 ACT image tokens at 96 px


def test_small_cnn_is_a_fraction_of_the_resnets():
    small = sum(p.numel() for p in SmallCNN().parameters())
    assert small == 97_680
    assert small < 0.1 * sum(p.numel() for p in ResNet10Narrow().parameters())
    assert type(make_backbone("cnn_small", 3, "group")) is SmallCNN
    with pytest.raises(ValueError, match="unknown backbone norm 'layer'"):
        SmallCNN(norm="layer")


def test_light_backbone_is_a_fraction_of_resnet18():
    light, heavy = ResNet10Narrow(), ResNet18()
    n_light = sum(p.numel() for p in light.parameters())
    assert n_light == 1_230_240
    assert n_light < 0.12 * sum(p.numel() for p in heavy.parameters())
    assert all(isinstance(getattr(light, f"layer{i}"), torch.nn.Module) for i in range(1, 5))
    assert type(make_backbone(LIGHT, 3, "group")) is ResNet10Narrow
    assert type(make_backbone("resnet18", 3, "group")) is ResNet18
    with pytest.raises(ValueError, match="unknown vision backbone 'vgg'"):
        make_backbone("vgg", 3, "group")
    with pytest.raises(ValueError, match="unknown backbone norm 'layer'"):
        ResNet10Narrow(norm="layer")
    encoder = ImageEncoder((3, 96, 96), "group", 8, 16, backbone=LIGHT).eval()
    assert type(encoder.backbone) is ResNet10Narrow
    assert encoder(torch.rand(2, 3, 96, 96)).shape == (2, 16)


@pytest.mark.parametrize("backbone", sorted(LIGHT_BACKBONES))
@pytest.mark.parametrize("name", ["act", "diffusion", "mlp"])
def test_every_family_builds_and_trains_a_step_with_the_light_backbone(name, backbone):
    torch.manual_seed(0)
    cls = LIGHT_BACKBONES[backbone]
    policy = make_policy({"type": name, **TINY[name], "vision_backbone": backbone}, camera_features(64),
                         camera_stats())
    # (64 px: a 2x2 feature map; at 32 px the spatial softmax sees one cell and passes no gradient back)
    backbones = [m for m in policy.modules() if isinstance(m, (ResNet10Narrow, ResNet18, SmallCNN))]
    assert backbones and all(type(m) is cls for m in backbones)
    n_obs = len(policy.observation_delta_indices)
    batch = random_observation_window(policy, 4)
    for key in list(batch):
        batch[f"{key}_is_pad"] = torch.zeros(4, n_obs, dtype=torch.bool)
    n_act = len(policy.delta_indices()["action"])
    batch["action"] = torch.randn(4, n_act, 3)
    batch["action_is_pad"] = torch.zeros(4, n_act, dtype=torch.bool)
    policy.train()
    optimizer = torch.optim.AdamW(policy.optim_param_groups(), lr=1e-3)
    trained = [m for n, m in policy.named_modules() if isinstance(m, cls) and "ema" not in n]
    # The first convolution (diffusion: the live network's, not its EMA copy).
    conv = next(m for m in trained[0].modules() if isinstance(m, torch.nn.Conv2d)).weight
    before = conv.detach().clone()
    loss, _ = policy.compute_loss(batch)
    optimizer.zero_grad()
    loss.backward()
    assert torch.isfinite(loss) and conv.grad is not None and conv.grad.abs().sum() > 0
    optimizer.step()
    assert not torch.equal(before, conv.detach())
    policy.eval()
    with torch.no_grad():
        chunk = policy.predict_chunk(random_observation_window(policy, 1))
    assert chunk.shape[-1] == 3 and torch.isfinite(chunk).all()


@pytest.mark.parametrize("name", ["act", "diffusion", "mlp"])
def test_config_validation_of_the_backbone_fields(name, tmp_path):
    assert config_from_dict({"type": name}).vision_backbone == "resnet18"  # the default: nothing existing moves
    assert config_from_dict({"type": name, "vision_backbone": LIGHT}).vision_backbone == LIGHT
    with pytest.raises(ValueError, match=r"vision_backbone must be one of \('resnet18', 'resnet10_narrow', "
                                         r"'cnn_small'\), got 'resnet50'"):
        config_from_dict({"type": name, "vision_backbone": "resnet50"})
    with pytest.raises(ValueError, match="backbone_norm must be one of"):
        config_from_dict({"type": name, "vision_backbone": LIGHT, "backbone_norm": "instance"})
    weights = str(tmp_path / "resnet18.safetensors")
    with pytest.raises(ValueError, match="pretrained_backbone_weights=.* does not apply to "
                                         "vision_backbone='resnet10_narrow'.*only into \\('resnet18',\\)"):
        config_from_dict({"type": name, "vision_backbone": LIGHT, "pretrained_backbone_weights": weights})
    # resnet18 still accepts a weights path at config time (the file is read by make_policy)
    assert config_from_dict({"type": name, "pretrained_backbone_weights": weights}).pretrained_backbone_weights
    assert BACKBONES[0] == "resnet18"


@pytest.mark.parametrize("name", ["act", "mlp"])
def test_a_saved_policy_whose_config_predates_the_field_loads_as_resnet18(name, tmp_path):
    torch.manual_seed(0)
    policy = make_policy({"type": name, **TINY[name]}, camera_features(), camera_stats()).eval()
    save_policy(policy, tmp_path)
    config = json.loads((tmp_path / CONFIG_FILE).read_text())
    assert config["config"].pop("vision_backbone") == "resnet18"
    (tmp_path / CONFIG_FILE).write_text(json.dumps(config))
    loaded = load_policy(tmp_path).eval()
    assert loaded.config.vision_backbone == "resnet18"
    obs = random_observation_window(policy, 2)
    with torch.no_grad():
        torch.testing.assert_close(loaded.predict_chunk(obs), policy.predict_chunk(obs), rtol=0, atol=0)


@pytest.mark.slow
@pytest.mark.parametrize("backbone, tokens", [("resnet10_narrow", "grid"), ("cnn_small", "grid"),
                                              ("cnn_small", "keypoints")])
def test_light_backbone_act_with_a_96x96_camera_exports_to_onnx_with_parity(tmp_path, backbone, tokens):
    from deploy.export import ExportConfig, export_checkpoint
    from tests.deploy.export_factory import imitation_checkpoint
    from tests.deploy.test_export_imitation import assert_parity

    ckpt = imitation_checkpoint(tmp_path / "run", "act", pixels=True, image_size=96, vision_backbone=backbone,
                                image_tokens=tokens)
    result = export_checkpoint(ExportConfig(checkpoint=str(ckpt), output=str(tmp_path / "bundle"), optimize=False,
                                            parity_samples=3))
    assert result.parity.passed
    rng = np.random.default_rng(0)
    windows = [{"observation.state": rng.standard_normal((1, 6)).astype(np.float32),
                "observation.environment_state": rng.standard_normal((1, 6)).astype(np.float32),
                "observation.images.top": rng.integers(0, 256, (1, 96, 96, 3), dtype=np.uint8)} for _ in range(3)]
    assert assert_parity(tmp_path / "bundle", ckpt, windows, rng) <= 1e-4
