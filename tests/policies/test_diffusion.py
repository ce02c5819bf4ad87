"""Diffusion Policy: learning, samplers, EMA, the im2col convolution, and a camera."""

import numpy as np
import pytest
import torch

from policies import make_policy
from policies.diffusion.unet import Upsample1d, im2col_conv1d

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


def test_sampling_equals_a_plain_ddim_loop(task):
    """The batched FiLM conditioning inside the sampler is the same computation as calling the UNet per step."""
    cfg = {"type": "diffusion", **TINY["diffusion"], "num_inference_steps": 4}
    policy = make_policy(cfg, STATE_FEATURES, task.stats()).eval()
    obs = random_observation_window(policy, 2)
    noise = torch.randn(2, policy.config.horizon, 2)
    network = policy.inference_network
    with torch.no_grad():
        normalized = policy.prepare_observations(obs)
        global_cond = policy._global_cond(network, normalized)
        scheduler = policy.sampler
        scheduler.set_timesteps(4)
        x = noise
        for t in scheduler.timesteps:
            x = scheduler.step(network.unet(x, t.repeat(2), global_cond), t, x).prev_sample
        want = policy.action_normalizer.unnormalize({"action": x[:, policy.config.n_obs_steps - 1 :]})["action"]
    assert torch.allclose(policy.predict_chunk(obs, noise=noise), want, atol=1e-5)


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
    key = "unet.final_proj.weight"
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


@pytest.mark.parametrize(
    "cin, cout, kernel, stride, padding, length", [(4, 8, 5, 1, 2, 16), (8, 8, 3, 2, 1, 16), (6, 3, 1, 1, 0, 5)]
)
def test_im2col_conv_equals_conv1d(cin, cout, kernel, stride, padding, length):
    torch.manual_seed(0)
    conv = torch.nn.Conv1d(cin, cout, kernel, stride=stride, padding=padding).eval()  # eval: the im2col path
    x = torch.randn(3, cin, length, requires_grad=True)
    want = torch.nn.functional.conv1d(x, conv.weight, conv.bias, stride=stride, padding=padding)
    assert torch.allclose(im2col_conv1d(x, conv), want, atol=1e-5)
    im2col_conv1d(x, conv).sum().backward()
    assert x.grad is not None and conv.weight.grad is not None


def test_upsample_contains_the_papers_transposed_conv():
    """Upsample1d can represent ConvTranspose1d(kernel 4, stride 2, padding 1) exactly (it is a superset)."""
    torch.manual_seed(0)
    channels = 6
    reference = torch.nn.ConvTranspose1d(channels, channels, 4, stride=2, padding=1)
    ours = Upsample1d(channels)
    w = reference.weight  # (in, out, 4)
    with torch.no_grad():
        ours.conv.weight.zero_()
        # even output step 2t: w1 x[t] + w3 x[t-1]; odd step 2t+1: w2 x[t] + w0 x[t+1]  (taps t-1, t, t+1)
        ours.conv.weight[:channels, :, 0] = w[:, :, 3].T
        ours.conv.weight[:channels, :, 1] = w[:, :, 1].T
        ours.conv.weight[channels:, :, 1] = w[:, :, 2].T
        ours.conv.weight[channels:, :, 2] = w[:, :, 0].T
        ours.conv.bias.copy_(torch.cat([reference.bias, reference.bias]))
    x = torch.randn(2, channels, 5)
    assert torch.allclose(ours.train()(x), reference(x), atol=1e-5)
    assert torch.allclose(ours.eval()(x), reference(x), atol=1e-5)


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
