"""The ResNet-18 backbone, user weight loading and its errors, and the spatial-softmax keypoint head."""

import pytest
import torch
from safetensors.torch import save_file

from policies.backbones import ImageEncoder, ResNet18, SpatialSoftmax, load_backbone_weights


@pytest.mark.parametrize("shape", [(3, 96, 96), (3, 64, 80), (1, 33, 47)])
def test_feature_map_shape_matches_conv_arithmetic(shape):
    net = ResNet18(in_channels=shape[0], norm="group").eval()
    with torch.no_grad():
        out = net(torch.rand(2, *shape))
    assert tuple(out.shape[1:]) == net.output_shape(shape)


def test_resnet18_has_the_standard_layout_and_size():
    net = ResNet18()
    n_params = sum(p.numel() for p in net.parameters())
    assert n_params == 11_176_512  # torchvision resnet18 (11,689,512) minus its 512x1000 + 1000 classifier
    assert [len(getattr(net, f"layer{i}")) for i in range(1, 5)] == [2, 2, 2, 2]


def test_weights_load_from_safetensors_and_pt(tmp_path):
    torch.manual_seed(0)
    source = ResNet18()
    state = {k: v.clone() for k, v in source.state_dict().items()}
    state["fc.weight"] = torch.zeros(1000, 512)  # a classifier head is ignored
    save_file(state, tmp_path / "w.safetensors")
    torch.save({"state_dict": state}, tmp_path / "w.pt")
    for name in ("w.safetensors", "w.pt"):
        target = ResNet18()
        load_backbone_weights(target, tmp_path / name)
        for key, value in source.state_dict().items():
            assert torch.equal(target.state_dict()[key], value), key


def test_prefix_selects_a_sub_tree():
    source = ResNet18()
    prefixed = {f"model.backbone.{k}": v for k, v in source.state_dict().items()}
    target = ResNet18()
    load_backbone_weights(target, prefixed, prefix="model.backbone.")
    assert torch.equal(target.conv1.weight, source.conv1.weight)
    with pytest.raises(ValueError, match="no key starts with prefix 'nope.'"):
        load_backbone_weights(target, prefixed, prefix="nope.")


def test_weight_loading_errors_are_specific(tmp_path):
    good = ResNet18().state_dict()
    target = ResNet18()
    before = target.conv1.weight.clone()

    missing = {k: v for k, v in good.items() if not k.startswith("layer4.1.")}
    with pytest.raises(ValueError, match=r"missing keys: layer4\.1\.bn1\.bias"):
        load_backbone_weights(target, missing)

    wrong_shape = dict(good, **{"conv1.weight": torch.zeros(64, 1, 7, 7)})
    with pytest.raises(ValueError, match=r"shape mismatches: conv1.weight: file \(64, 1, 7, 7\) vs model \(64, 3, 7"):
        load_backbone_weights(target, wrong_shape)

    extra = dict(good, **{"layer5.0.conv1.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match=r"unexpected keys: layer5\.0\.conv1\.weight"):
        load_backbone_weights(target, extra)

    with pytest.raises(ValueError, match="batch-norm weights need the 'batch' backbone norm"):
        load_backbone_weights(ResNet18(norm="group"), good)

    assert torch.equal(target.conv1.weight, before)  # all-or-nothing

    with pytest.raises(FileNotFoundError, match="not found"):
        load_backbone_weights(target, tmp_path / "absent.safetensors")
    (tmp_path / "w.npz").write_bytes(b"x")
    with pytest.raises(ValueError, match="unsupported weights format '.npz'"):
        load_backbone_weights(target, tmp_path / "w.npz")


def test_pt_files_are_loaded_without_unpickling_code(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("pickled code ran",))

    torch.save({"conv1.weight": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(Exception, match="(?i)weights_only|unsupported|global"):
        load_backbone_weights(ResNet18(), tmp_path / "evil.pt")


def test_spatial_softmax_finds_the_peak():
    head = SpatialSoftmax(in_channels=1, height=5, width=9, num_keypoints=1)
    with torch.no_grad():
        head.proj.weight.fill_(1.0)
        head.proj.bias.zero_()
    features = torch.zeros(1, 1, 5, 9)
    features[0, 0, 4, 2] = 100.0  # bottom row (y = +1), third column (x = -1 + 2 * 2/8)
    xy = head(features)
    assert torch.allclose(xy, torch.tensor([[-0.5, 1.0]]), atol=1e-4)


def test_image_encoder_crops_randomly_in_training_and_centrally_in_eval():
    enc = ImageEncoder((3, 40, 40), norm="group", num_keypoints=4, feature_dim=8, crop_shape=(32, 32))
    images = torch.arange(40.0)[None, None, None, :].expand(2, 3, 40, 40)
    enc.eval()
    assert enc.crop(images)[0, 0, 0, 0].item() == 4.0
    enc.train()
    torch.manual_seed(0)
    lefts = {enc.crop(images)[0, 0, 0, 0].item() for _ in range(30)}
    assert len(lefts) > 3 and min(lefts) >= 0 and max(lefts) <= 8
    assert enc(images).shape == (2, 8)
    with pytest.raises(ValueError, match="does not fit"):
        ImageEncoder((3, 20, 20), norm="group", num_keypoints=4, feature_dim=8, crop_shape=(32, 32))
