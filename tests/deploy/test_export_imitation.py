"""Export of imitation checkpoints (ACT, MLP, Diffusion): parity with the torch checkpoint, manifest contents, and
the exporter's refusals (existing output, failed parity, unexportable policies)."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

import envs  # noqa: F401  (registration)
from deploy.export import ExportConfig, ParityError, export_checkpoint
from deploy.runtime import BundlePolicy, ChunkRunner, DdimSampler, InGraphSampler, file_sha256, load_manifest
from policies.chunking import ChunkExecutor
from training.datasets import observation_to_dataset
from training.imitation.checkpoint import read_imitation_checkpoint

from tests.deploy.export_factory import REACH, imitation_checkpoint

STATE, ENV_STATE, IMAGE = "observation.state", "observation.environment_state", "observation.images.top"
FAST = dict(optimize=False, parity_samples=2)


def export(tmp_path, ckpt, name="bundle", **options):
    return export_checkpoint(ExportConfig(checkpoint=str(ckpt), output=str(tmp_path / name), **{**FAST, **options}))


def env_windows(env_kwargs: dict, n_obs: int, count: int, seed: int = 7,
                channel_first: bool = True) -> list[dict[str, np.ndarray]]:
    """Observation windows from the simulated robot, as the bundle takes them: (1, [n_obs,] *shape) per key; camera
    frames as rendered, (H, W, 3), with channel_first=False."""
    env = gym.make(env_kwargs["id"], **{k: (tuple(v) if isinstance(v, list) else v)
                                         for k, v in env_kwargs.items() if k != "id"})
    rng = np.random.default_rng(seed)
    out = []
    obs, _ = env.reset(seed=seed)
    frames = [observation_to_dataset(obs, channel_first)] * n_obs
    for _ in range(count):
        action = obs["agent_pos"] + rng.normal(0, 0.3, env.action_space.shape).astype(np.float32)
        obs, *_ = env.step(np.clip(action, env.action_space.low, env.action_space.high))
        frames = frames[1:] + [observation_to_dataset(obs, channel_first)]
        out.append({k: np.stack([f[k] for f in frames])[None] if n_obs > 1 else frames[-1][k][None]
                    for k in frames[-1]})
    env.close()
    return out


def torch_chunk(policy, inputs: dict[str, np.ndarray], noise: np.ndarray | None = None) -> np.ndarray:
    stacked = policy.config.n_obs_steps > 1
    obs = {k: torch.from_numpy(inputs[k]) if stacked else torch.from_numpy(inputs[k])[:, None]
           for k in policy.input_specs}
    kwargs = {} if noise is None else {"noise": torch.from_numpy(noise)}
    with torch.no_grad():
        return policy.predict_chunk(obs, **kwargs)[0].numpy()


def assert_parity(bundle_dir, ckpt, inputs_list, rng) -> float:
    """Bundle (onnxruntime) vs the checkpoint's torch policy on the same inputs and noise; returns max |diff|."""
    policy = read_imitation_checkpoint(ckpt).load_policy("cpu").eval()
    bundle = BundlePolicy(bundle_dir)
    m = bundle.manifest
    worst, spread = 0.0, []
    for inputs in inputs_list:
        feed = {k: inputs[k] for k in policy.input_specs}
        noise = None
        if m.policy_type == "diffusion":
            noise = rng.standard_normal((1, policy.config.horizon, policy.action_dim)).astype(np.float32)
        got = bundle.predict_chunk(feed, noise=noise)[m.control.chunk_offset:]
        # The torch policy reads channel-first images; HWC bundle frames are transposed for it here.
        chw = {k: np.ascontiguousarray(np.moveaxis(v, -1, -3)) if m.feature(k).frame_layout == "HWC" else v
               for k, v in feed.items()}
        want = torch_chunk(policy, chw, noise)
        assert got.shape == want.shape
        worst = max(worst, float(np.abs(got - want).max()))
        spread.append(want)
    # The comparison is between outputs that depend on the observation, not two constants.
    assert np.std(np.stack(spread), axis=0).max() > 1e-3
    assert worst <= 1e-4, worst
    return worst


def random_windows(bundle_dir, count, rng) -> list[dict[str, np.ndarray]]:
    m = load_manifest(bundle_dir)
    out = []
    for _ in range(count):
        sample = {}
        for f in m.observation:
            shape = (1, *f.shape) if m.control.n_obs_steps == 1 else (1, m.control.n_obs_steps, *f.shape)
            sample[f.key] = (rng.integers(0, 256, shape, dtype=np.uint8) if f.dtype == "uint8"
                             else rng.normal(0, 1.0, shape).astype(np.float32))
        out.append(sample)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("policy_type, overrides", [
    ("act", {}),
    ("mlp", {"n_action_steps": 1, "temporal_ensemble_coeff": 0.05}),
    ("diffusion", {}),
])
def test_bundle_matches_checkpoint_and_manifest_describes_it(tmp_path, policy_type, overrides):
    ckpt = imitation_checkpoint(tmp_path / "run", policy_type, **overrides)
    result = export(tmp_path, ckpt)
    bundle = tmp_path / "bundle"
    assert result.parity is not None and result.parity.passed

    rng = np.random.default_rng(3)
    policy = read_imitation_checkpoint(ckpt).load_policy("cpu")
    n_obs = policy.config.n_obs_steps
    assert_parity(bundle, ckpt, random_windows(bundle, 4, rng) + env_windows(REACH, n_obs, 4), rng)

    m = load_manifest(bundle)
    c = policy.config
    assert m.policy_type == policy_type and m.format_version == 2
    assert m.control.frequency_hz == 50.0 and m.control.n_obs_steps == n_obs
    assert m.control.n_action_steps == c.n_action_steps
    assert m.control.temporal_ensemble_coeff == c.temporal_ensemble_coeff
    if policy_type == "diffusion":
        assert (m.control.chunk_size, m.control.chunk_offset) == (c.horizon, n_obs - 1)
        assert isinstance(m.sampler, DdimSampler) and m.sampler.timesteps == tuple(policy.sampling_timesteps)
        assert m.sampler.condition_model is not None and not m.model.inputs
        assert m.sampler.condition_model.sha256 == file_sha256(bundle / m.sampler.condition_model.file)
    else:
        assert (m.control.chunk_size, m.control.chunk_offset) == (c.chunk_length(), 0)
        assert m.sampler is None and m.model.inputs == {STATE: STATE, ENV_STATE: ENV_STATE}
    assert m.model.sha256 == file_sha256(bundle / m.model.file)
    assert not (bundle / "policy.onnx.data").exists()  # one file per graph, weights inside

    env = gym.make(REACH["id"])
    u = env.unwrapped
    assert m.action.names == tuple(u.action_names) and m.action.units == tuple(u.action_units)
    np.testing.assert_allclose(m.action.lower, env.action_space.low)
    np.testing.assert_allclose(m.action.upper, env.action_space.high)
    assert m.action.initial_from is not None and m.action.initial_from.indices == tuple(range(6))
    state = m.feature(STATE)
    assert state.dtype == "float32" and state.shape == (6,) and state.names == tuple(u.joint_names)
    assert state.units == tuple(u.action_units)
    env_state = m.feature(ENV_STATE)
    assert env_state.shape == (6,) and env_state.names == u.environment_state_names
    assert env_state.units == ("m",) * 6
    # Safe by default: a velocity limit and observation ranges (tests/deploy/test_export_safety.py: their values).
    assert m.action.max_velocity is not None and len(m.action.max_velocity) == 6
    assert all(f.low is not None and f.high is not None for f in (state, env_state))

    src = m.source
    assert src.checkpoint == str(ckpt.resolve())
    assert src.config["policy"]["type"] == policy_type and src.config["env"]["id"] == REACH["id"]
    assert src.extra["kind"] == "imitation" and src.extra["step"] == 1
    assert src.extra["parity"]["passed"] and max(src.extra["parity"]["max_abs_diff"].values()) <= 1e-4
    assert src.extra["env"]["max_episode_steps"] == REACH["max_episode_steps"]
    # The exported file is what the runner executes: one tick through ChunkRunner gives the bundle's action 0.
    runner = ChunkRunner(bundle)
    obs = {k: v[0] for k, v in env_windows(REACH, 1, 1)[0].items()}
    action = runner.tick(obs)
    assert action.shape == (6,) and np.isfinite(action).all() and runner.statistics.held_ticks == 0


@pytest.mark.slow
def test_diffusion_whole_sampling_loop_in_graph(tmp_path):
    ckpt = imitation_checkpoint(tmp_path / "run", "diffusion", num_inference_steps=2, n_obs_steps=1)
    result = export(tmp_path, ckpt, diffusion_sampler="in_graph")
    m = result.manifest
    assert isinstance(m.sampler, InGraphSampler) and m.sampler.noise_input == "noise"
    assert m.sampler.num_inference_steps == 2 and m.model.inputs == {STATE: STATE, ENV_STATE: ENV_STATE}
    rng = np.random.default_rng(5)
    assert_parity(tmp_path / "bundle", ckpt, random_windows(tmp_path / "bundle", 3, rng) + env_windows(REACH, 1, 3),
                  rng)


@pytest.mark.slow
def test_act_with_camera_takes_uint8_images_and_writes_torchscript(tmp_path):
    ckpt = imitation_checkpoint(tmp_path / "run", "act", pixels=True)
    result = export(tmp_path, ckpt, torchscript=True)
    bundle = tmp_path / "bundle"
    m = result.manifest
    image = m.feature(IMAGE)
    # Frames as a camera driver delivers them: (H, W, 3) uint8, with the manifest's default age limit.
    assert image.dtype == "uint8" and image.shape == (32, 32, 3) and image.units == "pixel"
    assert image.layout == "HWC" and image.max_age_s == 0.1
    pixels_env = {"id": REACH["id"], "obs_mode": "state_pixels", "cameras": ["top"], "image_size": [32, 32]}
    rng = np.random.default_rng(9)
    windows = random_windows(bundle, 1, rng) + env_windows(pixels_env, 1, 2, channel_first=False)
    assert_parity(bundle, ckpt, windows, rng)

    ts = m.source.extra["torchscript"]
    assert ts["sha256"] == file_sha256(bundle / ts["file"])
    traced = torch.jit.load(str(bundle / ts["file"]))
    policy = read_imitation_checkpoint(ckpt).load_policy("cpu").eval()
    inputs = windows[-1]
    with torch.no_grad():
        got = traced(*[torch.from_numpy(inputs[k]) for k in ts["inputs"]])[0].numpy()
    chw = {**inputs, IMAGE: np.ascontiguousarray(np.moveaxis(inputs[IMAGE], -1, -3))}
    np.testing.assert_allclose(got, torch_chunk(policy, chw), atol=1e-4)


@pytest.mark.slow
def test_export_refuses_existing_output_and_writes_nothing_when_parity_fails(tmp_path):
    ckpt = imitation_checkpoint(tmp_path / "run", "mlp")
    export(tmp_path, ckpt)
    before = (tmp_path / "bundle" / "manifest.json").read_text()
    with pytest.raises(FileExistsError, match="overwrite=true"):
        export(tmp_path, ckpt)
    with pytest.raises(ParityError, match="parity_atol"):
        export(tmp_path, ckpt, overwrite=True, parity_atol=1e-12)
    assert (tmp_path / "bundle" / "manifest.json").read_text() == before  # the old bundle is untouched
    # No temp dirs and no lock file left behind (deploy.export.staging).
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle", "run"]
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("not a bundle")
    with pytest.raises(FileExistsError, match="not a bundle"):
        export(tmp_path, ckpt, name="other", overwrite=True)


@pytest.mark.slow
def test_export_refuses_what_a_bundle_cannot_hold(tmp_path):
    ddpm = imitation_checkpoint(tmp_path / "ddpm", "diffusion", inference_scheduler="ddpm")
    with pytest.raises(ValueError, match="DDPM"):
        export(tmp_path, ddpm)
    dpm = imitation_checkpoint(tmp_path / "dpm", "diffusion", inference_scheduler="dpm_solver")
    with pytest.raises(ValueError, match="torch.quantile"):
        export(tmp_path, dpm)
    dpm = imitation_checkpoint(tmp_path / "dpm2", "diffusion", inference_scheduler="dpm_solver", clip_sample=False)
    with pytest.raises(ValueError, match="in_graph"):
        export(tmp_path, dpm, diffusion_sampler="runtime")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        export(tmp_path, tmp_path / "missing")
    with pytest.raises(ValueError, match="diffusion_sampler"):
        export(tmp_path, dpm, diffusion_sampler="euler")
    assert not (tmp_path / "bundle").exists()


@pytest.mark.slow
def test_exported_bundle_is_refused_after_tampering(tmp_path):
    from deploy.runtime import BundleIntegrityError, UnsupportedFormatVersion

    ckpt = imitation_checkpoint(tmp_path / "run", "mlp")
    export(tmp_path, ckpt)
    bundle = tmp_path / "bundle"
    manifest_text = (bundle / "manifest.json").read_text()

    data = json.loads(manifest_text)
    data["format_version"] = 99
    (bundle / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(UnsupportedFormatVersion, match="format_version 99"):
        ChunkRunner(bundle)
    (bundle / "manifest.json").write_text(manifest_text)

    model = bundle / "policy.onnx"
    original = model.read_bytes()
    model.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    with pytest.raises(BundleIntegrityError, match="sha256"):
        ChunkRunner(bundle)
    model.unlink()
    with pytest.raises(FileNotFoundError, match="policy.onnx"):
        ChunkRunner(bundle)
    model.write_bytes(original)
    assert ChunkRunner(bundle).manifest.policy_type == "mlp"


@pytest.mark.slow
def test_export_builds_the_env_once_and_hashes_each_checkpoint_file_once(tmp_path, monkeypatch):
    import deploy.export.sources
    import training.checkpoints

    ckpt = imitation_checkpoint(tmp_path / "run", "mlp")
    made, hashed = [], []
    real_make = gym.make
    monkeypatch.setattr(gym, "make", lambda *a, **k: made.append(a[0]) or real_make(*a, **k))
    for module in (training.checkpoints, deploy.export.sources):
        real_hash = module.sha256_file
        monkeypatch.setattr(module, "sha256_file", lambda path, _real=real_hash: hashed.append(Path(path).name)
                            or _real(path))
    export(tmp_path, ckpt)
    assert made == [REACH["id"]]  # env metadata, parity observations: one instance
    listed = json.loads((ckpt / "checkpoint.json").read_text())["files"]
    assert sorted(hashed) == sorted([Path(name).name for name in listed] + ["checkpoint.json"])


@pytest.mark.slow
@pytest.mark.parametrize("overrides", [{}, {"n_action_steps": 1, "temporal_ensemble_coeff": 0.05}])
def test_torch_executor_and_runtime_runner_execute_chunks_alike(tmp_path, overrides):
    # policies.chunking.ChunkExecutor (evaluation in torch) mirrors deploy.runtime.ChunkRunner's schedule: history
    # padding, n_action_steps per chunk, temporal ensembling; only the runner's clamp to the joint limits is extra.
    ckpt = imitation_checkpoint(tmp_path / "run", "mlp", **overrides)
    export(tmp_path, ckpt)
    policy = read_imitation_checkpoint(ckpt).load_policy("cpu")
    executor = ChunkExecutor(policy)
    runner = ChunkRunner(tmp_path / "bundle", sync_deadline_s=None, max_velocity=None, allow_unlimited_velocity=True,
                         max_tracking_error=None)
    m = runner.manifest
    env = gym.make(REACH["id"], max_episode_steps=REACH["max_episode_steps"])
    obs, _ = env.reset(seed=3)
    for _ in range(10):
        data = {f.key: np.asarray(observation_to_dataset(obs)[f.key], np.float32) for f in m.observation}
        want = np.clip(executor({k: v[None] for k, v in data.items()})[0], m.action.lower, m.action.upper)
        got = runner.tick(data)
        np.testing.assert_allclose(got, want, atol=1e-4)
        obs, *_ = env.step(got)
    env.close()
    assert runner.statistics.requests == (10 if overrides else 4)  # mlp: n_action_steps 3 -> ticks 0, 3, 6, 9
