"""ACT: learning on a synthetic chunk task, the CVAE path, cameras, and the decoder's exact shortcut."""

import numpy as np
import pytest
import torch

from policies import make_policy
from policies.chunking import ChunkExecutor
from policies.act.model import ACTPolicy

from .synthetic import STATE_FEATURES, TINY, image_features, random_observation_window, train_losses


@pytest.mark.slow
def test_loss_falls_on_a_tiny_dataset(task):
    policy = make_policy({"type": "act", **TINY["act"]}, STATE_FEATURES, task.stats())
    assert isinstance(policy, ACTPolicy)
    rng = np.random.default_rng(1)
    policy.eval()
    held_out = task.batch(policy, 256, rng)
    l1_before = float(policy.compute_loss(held_out)[1]["l1_loss"])
    losses = train_losses(policy, task, steps=150, lr=1e-3)
    assert np.mean(losses[-20:]) < 0.5 * np.mean(losses[:5])
    policy.eval()
    l1_after = float(policy.compute_loss(held_out)[1]["l1_loss"])
    assert l1_after < 0.5 * l1_before
    # Inference (latent = prior mean) reproduces the trajectories in physical units.
    obs = {k: held_out[k] for k in policy.input_specs}
    chunk = policy.predict_chunk(obs)
    spread = (held_out["action"] - held_out["action"].mean(0)).abs().mean()
    assert (chunk - held_out["action"]).abs().mean() < 0.5 * spread


def test_kl_term_and_vae_switch(task):
    policy = make_policy({"type": "act", **TINY["act"], "kl_weight": 3.0}, STATE_FEATURES, task.stats())
    batch = task.batch(policy, 8, np.random.default_rng(0))
    policy.eval()
    loss, logs = policy.compute_loss(batch)
    logs = {k: float(v) for k, v in logs.items()}
    assert logs["kld_loss"] > 0
    assert loss.item() == pytest.approx(logs["l1_loss"] + 3.0 * logs["kld_loss"], rel=1e-5)
    no_vae = make_policy({"type": "act", **TINY["act"], "use_vae": False}, STATE_FEATURES, task.stats())
    assert not any(name.startswith("network.vae_") for name, _ in no_vae.named_parameters())
    loss, logs = no_vae.compute_loss(batch)
    logs = {k: float(v) for k, v in logs.items()}
    assert logs["kld_loss"] == 0.0 and loss.item() == pytest.approx(logs["l1_loss"])


def test_padded_actions_do_not_count(task):
    policy = make_policy({"type": "act", **TINY["act"], "use_vae": False}, STATE_FEATURES, task.stats()).eval()
    batch = task.batch(policy, 4, np.random.default_rng(0))
    batch["action_is_pad"][:, -3:] = True
    base = policy.compute_loss(batch)[0]
    batch["action"][:, -3:] += 1000.0  # padding (edge frames repeated in a real dataset) must not change the loss
    assert policy.compute_loss(batch)[0].item() == pytest.approx(base.item(), rel=1e-5)


def test_first_decoder_layer_shortcut_is_exact(task):
    policy = make_policy({"type": "act", **TINY["act"], "n_decoder_layers": 2}, STATE_FEATURES, task.stats()).eval()
    layer = policy.network.decoder_layers[0]
    torch.manual_seed(0)
    d, chunk = policy.config.dim_model, policy.config.chunk_size
    zeros, query_pos = torch.zeros(2, chunk, d), torch.randn(2, chunk, d)
    memory, memory_pos = torch.randn(2, 3, d), torch.randn(2, 3, d)
    with torch.no_grad():
        fast = layer(zeros, query_pos, memory, memory_pos, identical_rows=True)
        full = layer(zeros, query_pos, memory, memory_pos, identical_rows=False)
    assert torch.allclose(fast, full, atol=1e-5)


def test_one_camera_forward_shapes_and_backbone_gradients(task):
    features = image_features(64, 64)
    policy = make_policy({"type": "act", **TINY["act"]}, features, task.stats())
    assert policy.image_keys == ["observation.images.top"]
    # 64x64 -> 2x2 feature map: latent + state + env-state tokens + 4 image tokens.
    rng = np.random.default_rng(0)
    batch = task.batch(policy, 2, rng)
    batch["observation.images.top"] = torch.randint(0, 256, (2, 1, 3, 64, 64), dtype=torch.uint8)
    loss, _ = policy.compute_loss(batch)
    loss.backward()
    grad = policy.network.backbone.conv1.weight.grad
    assert grad is not None and grad.abs().sum() > 0
    policy.eval()
    obs = random_observation_window(policy, 2)
    assert policy.predict_chunk(obs).shape == (2, policy.config.chunk_size, 2)
    # uint8 and float [0, 1] images are the same input.
    as_float = dict(obs, **{"observation.images.top": obs["observation.images.top"].float() / 255.0})
    assert torch.allclose(policy.predict_chunk(obs), policy.predict_chunk(as_float), atol=1e-5)
    step = {k: v[:, -1] for k, v in obs.items()}
    assert ChunkExecutor(policy, n_envs=2)(step).shape == (2, 2)


def test_camera_only_act(task):
    features = {"observation.images.top": [3, 32, 32], "action": [2]}
    policy = make_policy({"type": "act", **TINY["act"]}, features, task.stats()).eval()
    obs = random_observation_window(policy, 1)
    assert policy.predict_chunk(obs).shape == (1, policy.config.chunk_size, 2)


def test_param_groups_split_backbone_learning_rate(task):
    cfg = {"type": "act", **TINY["act"], "optimizer_lr_backbone": 3e-6}
    policy = make_policy(cfg, image_features(32, 32), task.stats())
    groups = policy.optim_param_groups()
    assert [g["lr"] for g in groups] == [policy.config.optimizer_lr, 3e-6]
    n_backbone = sum(p.numel() for p in policy.network.backbone.parameters())
    assert sum(p.numel() for p in groups[1]["params"]) == n_backbone
    assert sum(p.numel() for g in groups for p in g["params"]) == sum(p.numel() for p in policy.parameters())


def _plain_chunk(policy, obs):
    """predict_chunk computed with autograd on: the path that never reuses cached decoder queries."""
    with torch.enable_grad():
        chunk = policy.predict_normalized_chunk(policy.prepare_observations(obs))
    return policy.action_normalizer.unnormalize({"action": chunk})["action"].detach()


@pytest.mark.parametrize("pre_norm", [False, True])
def test_cached_decoder_queries_are_exact_and_follow_weight_updates(task, pre_norm):
    policy = make_policy({"type": "act", **TINY["act"], "pre_norm": pre_norm, "n_decoder_layers": 2},
                         STATE_FEATURES, task.stats())
    obs = random_observation_window(policy, 3)
    policy.eval()
    first = policy.predict_chunk(obs)  # fills the cache
    assert torch.equal(policy.predict_chunk(obs), first)
    assert torch.equal(first, _plain_chunk(policy, obs))
    # An optimizer step changes the weights in place: the next inference must see them.
    train_losses(policy, task, steps=2, lr=1e-2)
    policy.eval()
    after_step = policy.predict_chunk(obs)
    assert not torch.allclose(after_step, first)
    assert torch.equal(after_step, _plain_chunk(policy, obs))
    # So must loading another policy's weights.
    other = make_policy({"type": "act", **TINY["act"], "pre_norm": pre_norm, "n_decoder_layers": 2},
                        STATE_FEATURES, task.stats()).eval()
    policy.load_state_dict(other.state_dict())
    assert torch.equal(policy.predict_chunk(obs), other.predict_chunk(obs))
    assert not any("cache" in name for name in policy.state_dict())


def test_training_forward_with_dropout_runs_the_first_decoder_layer_per_sample(task):
    # With dropout the first decoder layer's rows differ after its self-attention, so the forward pass must not reuse
    # one row of queries for the whole batch: same random masks and result as the layer on the batch's zero input.
    policy = make_policy({"type": "act", **TINY["act"], "dropout": 0.3}, STATE_FEATURES, task.stats()).train()
    net = policy.network
    batch = task.batch(policy, 4, np.random.default_rng(0))
    obs = policy.prepare_observations(batch)
    state, env_state, images = policy._network_inputs(obs)
    latent = torch.zeros(4, policy.config.latent_dim)
    torch.manual_seed(5)
    fast = net(state, env_state, images, latent)
    torch.manual_seed(5)
    tokens = torch.cat([net.latent_proj(latent)[:, None], net.state_proj(state)[:, None],
                        net.env_state_proj(env_state)[:, None]], dim=1)
    pos = net.token_pos.weight[None].expand(4, -1, -1)
    for layer in net.encoder_layers:
        tokens = layer(tokens, pos)
    query_pos = net.query_pos.weight[None].expand(4, -1, -1)
    y = net.decoder_layers[0](torch.zeros_like(query_pos), query_pos, net.encoder_norm(tokens), pos, identical_rows=True)
    slow = net.action_head(net.decoder_norm(y))
    assert torch.allclose(fast, slow, atol=1e-6)


def test_keypoint_image_tokens_localize_and_train(task):
    """image_tokens=keypoints: K tokens per camera, built from the spatial softmax's expected (x, y), whose gradient
    reaches the backbone; the token count follows K, not the image size."""
    features = {**image_features(64, 64), "observation.images.wrist": [3, 48, 48]}
    policy = make_policy({"type": "act", **TINY["act"], "vision_backbone": "cnn_small", "backbone_norm": "group",
                          "image_tokens": "keypoints", "spatial_softmax_num_keypoints": 5}, features,
                         {**task.stats(), "observation.images.wrist": task.stats()["observation.images.top"]})
    net = policy.network
    assert len(net.keypoints) == 2 and net.keypoint_pos.weight.shape[0] == 10
    assert not hasattr(net, "image_proj")
    captured = {}
    hook = net.encoder_layers[0].register_forward_pre_hook(lambda m, args: captured.update(x=args[0]))
    batch = task.batch(policy, 2, np.random.default_rng(0))
    batch["observation.images.top"] = torch.randint(0, 256, (2, 1, 3, 64, 64), dtype=torch.uint8)
    batch["observation.images.wrist"] = torch.randint(0, 256, (2, 1, 3, 48, 48), dtype=torch.uint8)
    loss, _ = policy.compute_loss(batch)
    hook.remove()
    assert captured["x"].shape[1] == 1 + 1 + 1 + 2 * 5  # latent, state, env state, 5 keypoints per camera
    loss.backward()
    first_conv = next(m for m in net.backbone.modules() if isinstance(m, torch.nn.Conv2d))
    assert first_conv.weight.grad is not None and first_conv.weight.grad.abs().sum() > 0
    policy.eval()
    assert policy.predict_chunk(random_observation_window(policy, 2)).shape == (2, policy.config.chunk_size, 2)


def test_bad_image_token_settings_are_refused():
    from policies.factory import config_from_dict

    with pytest.raises(ValueError, match=r"image_tokens must be one of \('grid', 'keypoints'\), got 'pixels'"):
        config_from_dict({"type": "act", "image_tokens": "pixels"})
    with pytest.raises(ValueError, match="spatial_softmax_num_keypoints must be >= 1"):
        config_from_dict({"type": "act", "image_tokens": "keypoints", "spatial_softmax_num_keypoints": 0})
