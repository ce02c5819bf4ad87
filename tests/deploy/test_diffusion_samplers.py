"""Diffusion bundles: the numpy DDIM loop against diffusers' DDIMScheduler, and in-graph samplers fed seeded noise."""

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler

from onnx import TensorProto, helper, numpy_helper

from deploy.runtime import BundlePolicy, ChunkRunner, DdimSampler, InGraphSampler, ModelFile
from tests.deploy.bundle_factory import OPSET, STATE_KEY, doubling_encoder, linear_denoiser, make_manifest, \
    state_obs, write_bundle

A, H, STEPS, TRAIN_STEPS = 2, 6, 10, 100
COEFS = dict(a=0.3, b=0.5, c=0.002)
SCALE, OFFSET = (2.0, 0.5), (1.0, -1.0)


def scheduler(prediction_type, clip_sample, spacing="leading"):
    s = DDIMScheduler(num_train_timesteps=TRAIN_STEPS, beta_schedule="squaredcos_cap_v2", clip_sample=clip_sample,
                      prediction_type=prediction_type, timestep_spacing=spacing)
    s.set_timesteps(STEPS)
    return s


def sampler_from(s: DDIMScheduler, condition: bool = False) -> DdimSampler:
    """What the exporter writes: per-step alpha_bar of the step and of the one it moves to, as diffusers computes."""
    timesteps = [int(t) for t in s.timesteps]
    prev = [t - s.config.num_train_timesteps // s.num_inference_steps for t in timesteps]
    alphas_prev = [float(s.alphas_cumprod[p]) if p >= 0 else float(s.final_alpha_cumprod) for p in prev]
    return DdimSampler(
        timesteps=tuple(timesteps), alphas_cumprod=tuple(float(s.alphas_cumprod[t]) for t in timesteps),
        alphas_cumprod_prev=tuple(alphas_prev), prediction_type=s.config.prediction_type,
        action_scale=SCALE, action_offset=OFFSET, sample_input="sample_in", timestep_input="t_in",
        timestep_dtype="int64", eta=0.0, clip_sample=s.config.clip_sample,
        clip_sample_range=s.config.clip_sample_range, use_clipped_model_output=False,
        condition_model=ModelFile("encoder.onnx", "0" * 64, {STATE_KEY: "state_in"}, "cond") if condition else None,
        condition_input="cond_in" if condition else None, seed=11)


def diffusers_reference(s, state, noise, cond_scale=1.0):
    x = torch.from_numpy(noise.copy())
    cond = torch.from_numpy(state)[None, None, :] * cond_scale
    for t in s.timesteps:
        out = COEFS["a"] * x + COEFS["b"] * cond + COEFS["c"] * float(t)
        x = s.step(out, t, x).prev_sample
    return x[0].numpy() * np.array(SCALE, np.float32) + np.array(OFFSET, np.float32)


def ddim_bundle(tmp_path, s, condition=False, n_action_steps=H):
    manifest = make_manifest(action_dim=A, chunk_size=H, n_action_steps=n_action_steps, policy_type="diffusion",
                             sampler=sampler_from(s, condition),
                             model_inputs={} if condition else {STATE_KEY: "state_in"}, model_output="model_out")
    extra = {"encoder.onnx": doubling_encoder(A)} if condition else None
    return write_bundle(tmp_path / "bundle", linear_denoiser(A, H, **COEFS, condition=condition), manifest, extra)


@pytest.mark.parametrize("prediction_type, clip, spacing", [
    ("epsilon", True, "leading"), ("epsilon", False, "trailing"), ("sample", True, "leading"),
    ("v_prediction", False, "linspace"),
])
def test_numpy_ddim_matches_diffusers(tmp_path, prediction_type, clip, spacing):
    s = scheduler(prediction_type, clip, spacing)
    policy = BundlePolicy(ddim_bundle(tmp_path, s))
    rng = np.random.default_rng(0)
    state = rng.standard_normal(A).astype(np.float32)
    noise = rng.standard_normal((1, H, A)).astype(np.float32)
    chunk = policy.predict_chunk({STATE_KEY: state[None]}, noise=noise)
    expected = diffusers_reference(s, state, noise)
    assert chunk.shape == (H, A)
    np.testing.assert_allclose(chunk, expected, rtol=1e-5, atol=1e-4)  # float32 on both sides
    assert np.abs(chunk - OFFSET).max() > 0.1  # the comparison is not between two constant outputs


def test_condition_model_runs_once_and_feeds_the_denoiser(tmp_path):
    s = scheduler("epsilon", True)
    policy = BundlePolicy(ddim_bundle(tmp_path, s, condition=True))
    state = np.array([0.4, -0.7], np.float32)
    noise = np.random.default_rng(1).standard_normal((1, H, A)).astype(np.float32)
    chunk = policy.predict_chunk({STATE_KEY: state[None]}, noise=noise)
    np.testing.assert_allclose(chunk, diffusers_reference(s, state, noise, cond_scale=2.0), atol=1e-4)


def test_runner_samples_reproducibly_from_its_seed(tmp_path):
    bundle = ddim_bundle(tmp_path, scheduler("epsilon", True), n_action_steps=3)

    def actions(seed=None, reset_seed=None):
        with ChunkRunner(bundle, seed=seed, sync_deadline_s=None) as runner:  # sampling, not timing, is tested
            if reset_seed is not None:
                runner.tick(state_obs(0.0))
                runner.reset(seed=reset_seed)
            return np.array([runner.tick(state_obs(0.1 * t)) for t in range(7)])

    a, b, c = actions(), actions(), actions(seed=5)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    np.testing.assert_array_equal(actions(seed=0, reset_seed=5), c)
    # Default seed is the manifest's sampler.seed (11).
    np.testing.assert_array_equal(actions(seed=11), a)


def noise_plus_state_model():
    """An 'in-graph sampler' stand-in: actions = noise + state broadcast over the chunk."""
    graph = helper.make_graph(
        [helper.make_node("Unsqueeze", ["state_in", "axis1"], ["state3"]),
         helper.make_node("Add", ["noise_in", "state3"], ["actions"])], "in_graph",
        [helper.make_tensor_value_info("state_in", TensorProto.FLOAT, [1, A]),
         helper.make_tensor_value_info("noise_in", TensorProto.FLOAT, [1, H, A])],
        [helper.make_tensor_value_info("actions", TensorProto.FLOAT, [1, H, A])],
        [numpy_helper.from_array(np.array([1], np.int64), "axis1")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])


def test_in_graph_sampler_gets_its_noise_from_the_runtime(tmp_path):
    manifest = make_manifest(action_dim=A, chunk_size=H, n_action_steps=H, policy_type="diffusion",
                             sampler=InGraphSampler(num_inference_steps=10, noise_input="noise_in"))
    bundle = write_bundle(tmp_path / "b", noise_plus_state_model(), manifest)
    policy = BundlePolicy(bundle)
    noise = np.arange(H * A, dtype=np.float32).reshape(1, H, A)
    state = np.array([[10.0, 20.0]], np.float32)
    np.testing.assert_array_equal(policy.predict_chunk({STATE_KEY: state}, noise=noise), noise[0] + state)
    with ChunkRunner(bundle, seed=3, sync_deadline_s=None) as runner:
        first = runner.tick(state_obs(0.0))
    expected = np.random.default_rng(3).standard_normal((1, H, A)).astype(np.float32)[0, 0]
    np.testing.assert_allclose(first, expected, rtol=1e-6)
