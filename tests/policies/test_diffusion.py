"""Diffusion Policy: learning, samplers, EMA, the time-major convolution, angle inputs, and a camera."""

import numpy as np
import pytest
import torch

from policies import make_policy
from policies.chunking import ChunkExecutor
from policies.diffusion.unet import Upsample1d, conv_time, time_major_conv1d

from .synthetic import STATE_FEATURES, TINY, image_features, random_observation_window, train_losses


@pytest.mark.slow
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


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("cin, cout, kernel, stride, length, batch", [
    (4, 8, 5, 1, 16, 1), (8, 8, 3, 2, 16, 3), (6, 3, 1, 1, 5, 2), (2, 16, 5, 1, 8, 4),
])
def test_time_major_conv_equals_conv1d(training, cin, cout, kernel, stride, length, batch):
    """The (1, k) channels-last convolution is nn.Conv1d's computation, values and gradients, in both modes."""
    torch.manual_seed(0)
    conv = time_major_conv1d(cin, cout, kernel, stride=stride).train(training)
    x = torch.randn(batch, length, cin, requires_grad=True)  # (B, T, C) in memory, as the UNet keeps it
    x4 = x.transpose(1, 2).unsqueeze(2)
    assert x4.is_contiguous(memory_format=torch.channels_last)
    want = torch.nn.functional.conv1d(x.transpose(1, 2), conv.weight, conv.bias, stride=stride, padding=kernel // 2)
    got = conv_time(x4, conv)
    assert got.shape == (batch, cout, 1, want.shape[-1])
    assert torch.allclose(got.squeeze(2), want, atol=1e-5)
    got.square().sum().backward()
    grads = x.grad.clone(), conv.weight.grad.clone()
    x.grad = conv.weight.grad = None
    want.square().sum().backward()
    assert torch.allclose(grads[0], x.grad, atol=1e-4) and torch.allclose(grads[1], conv.weight.grad, atol=1e-4)


def test_unet_keeps_conv1d_state_dict_and_time_major_weights(task):
    """Parameters have nn.Conv1d's shapes (a plain Conv1d UNet's state dict loads), stored time-major so that the
    (C_out, C_in, 1, k) view is channels-last; the layout survives the EMA copy and a save/load round trip."""
    policy = make_policy({"type": "diffusion", **TINY["diffusion"]}, STATE_FEATURES, task.stats())
    unet = policy.network.unet
    assert unet.mid[0].conv1.weight.shape == (32, 32, 3)  # (C_out, C_in, k) like nn.Conv1d
    state = {k: v.contiguous() for k, v in policy.state_dict().items()}  # what safetensors stores
    other = make_policy({"type": "diffusion", **TINY["diffusion"]}, STATE_FEATURES, task.stats())
    other.load_state_dict(state)
    for net in (policy.network, policy.ema_network, other.network, other.ema_network):
        convs = [m for m in net.unet.modules() if isinstance(m, torch.nn.Conv1d)]
        assert len(convs) > 10
        assert all(c.weight.unsqueeze(2).is_contiguous(memory_format=torch.channels_last) for c in convs)
    assert all(torch.equal(v, other.state_dict()[k]) for k, v in state.items())


def test_batched_inference_equals_one_sample_at_a_time(task):
    """Inference folds the batch into the convolution's height axis; each sample must still be its own."""
    policy = make_policy({"type": "diffusion", **TINY["diffusion"], "num_inference_steps": 3}, STATE_FEATURES,
                         task.stats()).eval()
    obs = random_observation_window(policy, 3)
    noise = torch.randn(3, policy.config.horizon, 2)
    together = policy.predict_chunk(obs, noise=noise)
    alone = torch.cat([policy.predict_chunk({k: v[i : i + 1] for k, v in obs.items()}, noise=noise[i : i + 1])
                       for i in range(3)])
    assert torch.allclose(together, alone, atol=1e-5)
    assert not torch.allclose(together[0], together[1], atol=1e-3)


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
    x = torch.randn(2, 5, channels).transpose(1, 2)  # (B, C, T), time-major in memory
    for mode in (True, False):
        got = ours.train(mode)(x.unsqueeze(2))
        assert got.is_contiguous(memory_format=torch.channels_last)
        assert torch.allclose(got.squeeze(2), reference(x), atol=1e-5)


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
    # The executor keeps an n_obs_steps history and executes n_action_steps per chunk.
    executor = ChunkExecutor(policy, n_envs=2)
    for _ in range(3):
        assert executor({k: v[:, -1] for k, v in obs.items()}).shape == (2, 2)


def test_angle_inputs_see_an_angle_and_the_same_angle_plus_two_pi_alike(task):
    """With angle_inputs the network reads (sin, cos): yaw and yaw + 2 pi (a wrap) give the same chunk; without, not."""
    angle = {"angle_inputs": {"observation.environment_state": [2]}, "num_inference_steps": 3}
    outputs = {}
    for name, extra in (("angles", angle), ("plain", {"num_inference_steps": 3})):
        torch.manual_seed(0)
        policy = make_policy({"type": "diffusion", **TINY["diffusion"], **extra}, STATE_FEATURES, task.stats()).eval()
        obs = random_observation_window(policy, 2)
        wrapped = {k: v.clone() for k, v in obs.items()}
        wrapped["observation.environment_state"][..., 2] += 2 * np.pi
        noise = torch.randn(2, policy.config.horizon, 2)
        outputs[name] = policy.predict_chunk(obs, noise=noise), policy.predict_chunk(wrapped, noise=noise)
    assert torch.allclose(*outputs["angles"], atol=1e-4)
    assert not torch.allclose(*outputs["plain"], atol=1e-3)


@pytest.mark.parametrize("angles, message", [
    ({"observation.environment_state": [3]}, "indexes past"),
    ({"observation.images.top": [0]}, "not a state feature"),
    ({"observation.state": [0]}, "not an input of this policy"),
    ({"observation.environment_state": []}, "distinct dimension indices"),
])
def test_bad_angle_inputs_are_refused(task, angles, message):
    inputs = {"observation.environment_state": [3]}  # the policy reads only the environment state
    with pytest.raises(ValueError, match=message):
        make_policy({"type": "diffusion", **TINY["diffusion"], "input_features": inputs, "angle_inputs": angles},
                    STATE_FEATURES, task.stats())
