"""Batched image augmentation (policies.augmentation) and its place in Policy.prepare_observations."""

from __future__ import annotations

import pytest
import torch

from policies.augmentation import color_jitter, random_shift
from policies.factory import make_policy


def _ramp(b: int = 4, t: int = 1, h: int = 12, w: int = 10) -> torch.Tensor:
    """Images whose pixel value encodes its (row, column), so a shift is readable from the output."""
    rows = torch.arange(h, dtype=torch.float32)[:, None] * 100
    cols = torch.arange(w, dtype=torch.float32)[None, :]
    return (rows + cols).expand(b, t, 3, h, w).clone()


def test_random_shift_moves_each_sample_by_its_own_integer_offset_within_pad():
    images = _ramp(b=64)
    out = random_shift(images, pad=2, generator=torch.Generator().manual_seed(0))
    assert out.shape == images.shape
    # An interior pixel (away from the replicated border) reads the pixel (dy, dx) away, the same for every channel.
    centre = out[:, 0, :, 6, 5]
    assert torch.equal(centre[:, 0], centre[:, 1]) and torch.equal(centre[:, 0], centre[:, 2])
    dy = torch.div(centre[:, 0], 100, rounding_mode="floor") - 6
    dx = centre[:, 0] % 100 - 5
    assert dy.abs().max() <= 2 and dx.abs().max() <= 2
    # Per sample, not one offset for the whole batch: 64 samples take several distinct shifts.
    assert len({(int(a), int(b)) for a, b in zip(dy, dx)}) > 5
    # The whole image moved rigidly: the pixel one column right reads one more.
    assert torch.equal(out[:, 0, 0, 6, 6] - out[:, 0, 0, 6, 5], torch.ones(64))


def test_random_shift_moves_all_observation_steps_of_a_sample_together():
    images = _ramp(b=16, t=2)
    out = random_shift(images, pad=3, generator=torch.Generator().manual_seed(1))
    assert torch.equal(out[:, 0], out[:, 1])


def test_random_shift_with_zero_pad_is_identity():
    images = torch.rand(2, 1, 3, 8, 8)
    assert random_shift(images, 0) is images


def test_color_jitter_keeps_range_changes_samples_differently_and_is_identity_at_zero():
    images = torch.rand(32, 1, 3, 8, 8)
    out = color_jitter(images, 0.3, generator=torch.Generator().manual_seed(0))
    assert out.shape == images.shape and out.min() >= 0 and out.max() <= 1
    change = (out - images).abs().mean(dim=(1, 2, 3, 4))
    assert change.min() > 0 and change.std() > 0
    assert color_jitter(images, 0.0) is images


def test_color_jitter_on_a_grey_image_only_changes_brightness_and_contrast():
    grey = torch.full((8, 1, 3, 4, 4), 0.5)
    out = color_jitter(grey, 0.4, generator=torch.Generator().manual_seed(0))
    # Saturation has nothing to act on: the three channels stay equal.
    assert torch.allclose(out[:, :, 0], out[:, :, 1]) and torch.allclose(out[:, :, 1], out[:, :, 2])


def test_color_jitter_refuses_non_rgb():
    with pytest.raises(ValueError, match="3 channels"):
        color_jitter(torch.rand(2, 1, 1, 4, 4), 0.2)


def _camera_policy(**overrides):
    features = {"observation.state": [2], "observation.images.top": [3, 16, 16], "action": [2]}
    stats = {
        "observation.state": {"mean": [0.0, 0.0], "std": [1.0, 1.0]},
        "observation.images.top": {"mean": [[[0.5]]] * 3, "std": [[[0.25]]] * 3},
        "action": {"mean": [0.0, 0.0], "std": [1.0, 1.0]},
    }
    return make_policy({"type": "act", "chunk_size": 4, "n_action_steps": 4, "vision_backbone": "cnn_small",
                        "backbone_norm": "group", **overrides}, features, stats)


def test_policy_augments_images_in_training_only():
    policy = _camera_policy(image_shift=3, image_color_jitter=0.3)
    batch = {"observation.state": torch.zeros(8, 1, 2),
             "observation.images.top": torch.randint(0, 256, (8, 1, 3, 16, 16), dtype=torch.uint8)}
    policy.eval()
    plain = policy.prepare_observations(batch)
    assert torch.equal(plain["observation.images.top"], policy.prepare_observations(batch)["observation.images.top"])
    policy.train()
    augmented = policy.prepare_observations(batch)
    assert not torch.allclose(augmented["observation.images.top"], plain["observation.images.top"])
    assert torch.equal(augmented["observation.state"], plain["observation.state"])


@pytest.mark.parametrize("field,value,match", [
    ("image_shift", -1, "image_shift must be >= 0"),
    ("image_color_jitter", 1.5, r"image_color_jitter must be in \[0, 1\)"),
])
def test_bad_augmentation_settings_are_refused(field, value, match):
    with pytest.raises(ValueError, match=match):
        _camera_policy(**{field: value})
