"""Feature specs from dataset tables and the normalizers built from meta/stats.json-style stats."""

import numpy as np
import pytest
import torch

from policies.features import FeatureKind, make_spec, policy_features_from_dataset, specs_from_shapes
from policies.normalization import MIN_SCALE, Normalizer

MODES = {"state": "mean_std", "image": "mean_std", "action": "min_max"}


def _stats(x: np.ndarray) -> dict:
    return {"mean": x.mean(0).tolist(), "std": x.std(0).tolist(), "min": x.min(0).tolist(), "max": x.max(0).tolist()}


def test_dataset_features_become_policy_specs_with_channel_first_images():
    inputs, outputs = policy_features_from_dataset({
        "observation.state": {"dtype": "float32", "shape": [14], "names": ["j"] * 14},
        "observation.images.top": {"dtype": "video", "shape": [48, 64, 3], "names": ["height", "width", "channels"]},
        "observation.images.wrist": [3, 32, 40],
        "action": [14],
        "timestamp": [1],
        "next.reward": [1],
    })
    assert inputs == {
        "observation.state": [14], "observation.images.top": [3, 48, 64], "observation.images.wrist": [3, 32, 40],
    }
    assert outputs == {"action": [14]}
    specs = specs_from_shapes(inputs)
    assert specs["observation.images.top"].kind is FeatureKind.IMAGE
    assert specs["observation.state"].kind is FeatureKind.STATE


@pytest.mark.parametrize(
    "key, shape, match",
    [
        ("observation.velocity", [3], "not a policy feature"),
        ("observation.state", [2, 3], "must be 1-D"),
        ("observation.images.top", [64, 64, 3], "channel-first"),
        ("action", [0], "non-positive"),
    ],
)
def test_bad_feature_specs_are_refused(key, shape, match):
    with pytest.raises(ValueError, match=match):
        make_spec(key, shape)


def test_dataset_without_action_is_refused():
    with pytest.raises(ValueError, match="no 'action'"):
        policy_features_from_dataset({"observation.state": [3]})


def test_round_trip_and_normalized_moments():
    rng = np.random.default_rng(0)
    state = (rng.normal(size=(1000, 3)) * [0.1, 5.0, 2.0] + [1.0, -3.0, 10.0]).astype(np.float32)
    action = rng.uniform(-2.0, 7.0, size=(1000, 2)).astype(np.float32)
    specs = specs_from_shapes({"observation.state": [3], "action": [2]})
    norm = Normalizer(specs, MODES, {"observation.state": _stats(state), "action": _stats(action)})
    batch = {"observation.state": torch.from_numpy(state), "action": torch.from_numpy(action), "other": torch.ones(1)}
    n = norm.normalize(batch)
    assert torch.allclose(n["observation.state"].mean(0), torch.zeros(3), atol=1e-4)
    assert torch.allclose(n["observation.state"].std(0, unbiased=False), torch.ones(3), atol=1e-3)
    assert n["action"].min() >= -1.0 - 1e-6 and n["action"].max() <= 1.0 + 1e-6
    assert torch.allclose(n["action"].min(0).values, -torch.ones(2), atol=1e-5)
    assert n["other"] is batch["other"]  # unknown keys pass through
    back = norm.unnormalize(n)
    for key in ("observation.state", "action"):
        assert torch.allclose(back[key], batch[key], atol=1e-4)


def test_image_stats_are_per_channel_and_broadcast():
    specs = specs_from_shapes({"observation.images.top": [3, 4, 5]})
    stats = {"observation.images.top": {"mean": [[[0.5]], [[0.25]], [[0.0]]], "std": [[[0.5]], [[0.25]], [[1.0]]]}}
    norm = Normalizer(specs, MODES, stats)
    x = torch.rand(2, 3, 4, 5)
    n = norm.normalize({"observation.images.top": x})["observation.images.top"]
    assert torch.allclose(n[:, 0], (x[:, 0] - 0.5) / 0.5)
    assert torch.allclose(n[:, 1], (x[:, 1] - 0.25) / 0.25)


def test_stats_are_buffers_in_the_state_dict():
    specs = specs_from_shapes({"observation.state": [2], "action": [1]})
    stats = {"observation.state": _stats(np.eye(2, dtype=np.float32)), "action": _stats(np.ones((3, 1), np.float32))}
    sd = Normalizer(specs, MODES, stats).state_dict()
    assert set(sd) == {
        "features.observation_state.mean", "features.observation_state.std",
        "features.action.min", "features.action.max",
    }
    fresh = Normalizer(specs, MODES, None)
    with pytest.raises(ValueError, match="no valid 'mean'"):
        fresh.check_ready()
    fresh.load_state_dict(sd)
    fresh.check_ready()


def test_constant_feature_does_not_blow_up():
    specs = specs_from_shapes({"observation.state": [2]})
    stats = {"observation.state": {"mean": [1.0, 0.0], "std": [0.0, 1.0]}}
    norm = Normalizer(specs, MODES, stats)
    n = norm.normalize({"observation.state": torch.tensor([[1.01, 0.0]])})["observation.state"]
    assert torch.allclose(n, torch.tensor([[0.01 / MIN_SCALE, 0.0]]))


@pytest.mark.parametrize(
    "stats, match",
    [
        ({}, "stats have no entry for feature 'observation.state'"),
        ({"observation.state": {"mean": [0.0, 0.0]}}, r"has no 'std' value"),
        ({"observation.state": {"mean": [0.0], "std": [1.0]}}, r"has shape \(1,\), expected \(2,\)"),
        ({"observation.state": {"mean": [0.0, float("nan")], "std": [1.0, 1.0]}}, "NaN or inf"),
    ],
)
def test_bad_stats_give_specific_errors(stats, match):
    specs = specs_from_shapes({"observation.state": [2]})
    with pytest.raises(ValueError, match=match):
        Normalizer(specs, MODES, stats)


def test_mapping_must_cover_every_kind_with_known_modes():
    specs = specs_from_shapes({"observation.state": [2]})
    with pytest.raises(ValueError, match="unknown mode 'zscore'"):
        Normalizer(specs, {**MODES, "state": "zscore"}, None)
    with pytest.raises(ValueError, match=r"no mode given for feature kind\(s\) \['image'\]"):
        Normalizer(specs, {"state": "mean_std", "action": "min_max"}, None)
