"""Diffusion Policy: learning, samplers, EMA, the im2col convolution, and a camera."""

import numpy as np
import pytest
import torch

from policies import make_policy
from policies.diffusion.unet import TemporalConv1d

from .synthetic import STATE_FEATURES, TINY, image_features, random_observation_window, train_losses


def test_loss_falls_on_a_tiny_dataset(task):
    policy = make_policy({"type": "diffusion", **TINY["diffusion"]}, STATE_FEATURES, task.stats())
    losses = train_losses(policy, task, steps=120, lr=2e-3)
    assert np.mean(losses[-20:]) < 0.5 * np.mean(losses[:5])


def test_delta_indices_and_chunk_window(task):
    policy = make_policy({"type": "diffusion", **TINY["diffusion"], "n_obs_steps": 2}, STATE_FEATURES, task.stats())
    assert policy.observation_delta_indices == [-1, 0]
    assert policy.action_delta_indices == list(range(-1, 7))  # horizon 8 starting one step back
    assert policy.chunk_length == 7  # from the current step to the end of the horizon
    policy.eval()
    obs = random_observation_window(policy, 3)
    assert policy.predict_chunk(obs).shape == (3, 7, 2)


@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # inside diffusers' DPM-Solver
@pytest.mark.parametrize("sampler", ["ddim", "dpm_solver", "ddpm"])
def test_samplers_are_deterministic_given_noise_and_stay_in_range(task, sampler):
    cfg = {"type": "diffusion", **TINY["diffusion"], "inference_scheduler": sampler, "num_inference_steps": 5}
    policy = make_policy(cfg, STATE_FEATURES, task.stats()).eval()
    obs = random_observation_window(policy, 2)
    noise = torch.randn(2, policy.config.horizon, 2, generator=torch.Generator().manual_seed(0))
    a = policy.predict_chunk(obs, noise=noise)
    b = policy.predict_chunk(obs, noise=noise)
    if sampler != "ddpm":  # DDPM adds fresh noise at every step
        assert torch.equal(a, b)
    # clip_sample keeps the normalized trajectory in [-1, 1], i.e. within the action min/max of the dataset.
    stats = task.stats()["action"]
    lo, hi = torch.tensor(stats["min"]), torch.tensor(stats["max"])
    assert torch.all(a >= lo - 1e-4) and torch.all(a <= hi + 1e-4)
    assert len(policy.sampler.timesteps) == 5


def test_ema_network_tracks_the_trained_network(task):
    cfg = {"type": "diffusion", **TINY["diffusion"], "ema_power": 1.0, "ema_decay": 0.999}
    policy = make_policy(cfg, STATE_FEATURES, task.stats())
    assert policy.inference_network is policy.ema_network
    assert all(not p.requires_grad for p in policy.ema_network.parameters())
    trained = dict(policy.network.named_parameters())
    ema = dict(policy.ema_network.named_parameters())
    key = "unet.final.1.weight"
    history = []
    optimizer = torch.optim.SGD(policy.network.parameters(), lr=0.1)
    for step in range(1, 5):
        before = ema[key].detach().clone()
        loss, _ = policy.compute_loss(task.batch(policy, 8, np.random.default_rng(step)))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        policy.after_optimizer_step()
        history.append((before, trained[key].detach().clone(), ema[key].detach().clone()))
    assert int(policy.ema_optimization_step) == 4
    # diffusers' warm-up with inv_gamma 1, power 1: decay at update n is 1 - 1/n for n >= 2, 0 at the first one.
    _, first_trained, first_ema = history[0]
    assert torch.allclose(first_ema, first_trained)
    for n, (before, now_trained, now_ema) in enumerate(history[1:], start=2):
        decay = 1.0 - 1.0 / n
        assert torch.allclose(now_ema, decay * before + (1 - decay) * now_trained, atol=1e-6)
    # The averaged weights are in the state dict and move with the module.
    state = policy.state_dict()
    assert torch.equal(state[f"ema_network.{key}"], ema[key])
    assert "ema_optimization_step" in state


def test_without_ema_inference_uses_the_trained_network(task):
    policy = make_policy({"type": "diffusion", **TINY["diffusion"], "use_ema": False}, STATE_FEATURES, task.stats())
    assert policy.ema_network is None and policy.inference_network is policy.network
    assert not any(k.startswith("ema_") for k in policy.state_dict())
    policy.after_optimizer_step()  # a no-op, not an error


@pytest.mark.parametrize("cin, cout, kernel, stride, padding, length", [(4, 8, 5, 1, 2, 16), (8, 8, 3, 2, 1, 16), (6, 3, 1, 1, 0, 5)])
def test_temporal_conv_equals_conv1d(cin, cout, kernel, stride, padding, length):
    torch.manual_seed(0)
    ours = TemporalConv1d(cin, cout, kernel, stride=stride, padding=padding)
    ref = torch.nn.Conv1d(cin, cout, kernel, stride=stride, padding=padding)
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(3, cin, length, requires_grad=True)
    assert torch.allclose(ours(x), ref(x), atol=1e-5)
    ours(x).sum().backward()
    assert x.grad is not None


def test_one_camera_forward_shapes_with_crop(task):
    cfg = {"type": "diffusion", **TINY["diffusion"], "crop_shape": [56, 56], "num_inference_steps": 2}
    policy = make_policy(cfg, image_features(64, 64), task.stats())
    batch = task.batch(policy, 2, np.random.default_rng(0))
    batch["observation.images.top"] = torch.randint(0, 256, (2, 2, 3, 64, 64), dtype=torch.uint8)
    loss, _ = policy.compute_loss(batch)
    loss.backward()
    assert policy.network.image_encoders[0].backbone.conv1.weight.grad.abs().sum() > 0
    policy.eval()
    obs = random_observation_window(policy, 2)
    assert policy.predict_chunk(obs).shape == (2, policy.chunk_length, 2)
    # select_action keeps an n_obs_steps history and executes n_action_steps per chunk.
    policy.reset()
    for _ in range(3):
        assert policy.select_action({k: v[:, -1] for k, v in obs.items()}).shape == (2, 2)
