"""MLP baseline: learning with either loss, and a camera input."""

import numpy as np
import pytest
import torch

from policies import make_policy
from policies.chunking import ChunkExecutor

from .synthetic import STATE_FEATURES, TINY, image_features, random_observation_window, train_losses


@pytest.mark.parametrize("loss", ["l1", "mse"])
def test_loss_falls_on_a_tiny_dataset(task, loss):
    policy = make_policy({"type": "mlp", **TINY["mlp"], "loss": loss}, STATE_FEATURES, task.stats())
    losses = train_losses(policy, task, steps=200, lr=1e-3)
    assert np.mean(losses[-20:]) < 0.5 * np.mean(losses[:5])
    policy.eval()
    batch = task.batch(policy, 256, np.random.default_rng(5))
    chunk = policy.predict_chunk({k: batch[k] for k in policy.input_specs})
    spread = (batch["action"] - batch["action"].mean(0)).abs().mean()
    assert (chunk - batch["action"]).abs().mean() < 0.5 * spread


def test_observation_history_is_flattened(task):
    policy = make_policy({"type": "mlp", **TINY["mlp"], "n_obs_steps": 3}, STATE_FEATURES, task.stats()).eval()
    assert policy.observation_delta_indices == [-2, -1, 0]
    first = policy.network.mlp[0]
    assert first.in_features == 3 * (4 + 3)
    obs = random_observation_window(policy, 2)
    assert policy.predict_chunk(obs).shape == (2, 8, 2)
    with pytest.raises(ValueError, match=r"expected \('B', 3, 4\)"):
        policy.predict_chunk(dict(obs, **{"observation.state": obs["observation.state"][:, -1:]}))


def test_one_camera_forward(task):
    policy = make_policy({"type": "mlp", **TINY["mlp"]}, image_features(32, 32), task.stats()).eval()
    obs = random_observation_window(policy, 2)
    assert policy.predict_chunk(obs).shape == (2, 8, 2)
    step = {k: v[:, -1] for k, v in obs.items()}
    assert ChunkExecutor(policy, n_envs=2)(step).shape == (2, 2)
    with pytest.raises(ValueError, match="images channel-first"):
        channels_last = step["observation.images.top"].permute(0, 2, 3, 1)
        ChunkExecutor(policy, n_envs=2)(dict(step, **{"observation.images.top": channels_last}))
    with pytest.raises(ValueError, match="uint8 or float"):
        policy.predict_chunk(dict(obs, **{"observation.images.top": obs["observation.images.top"].long()}))
    assert torch.isfinite(policy.predict_chunk(obs)).all()
