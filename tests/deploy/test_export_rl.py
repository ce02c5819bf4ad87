"""Export of SB3 actors (PPO, SAC trained a few hundred steps on Reach): the bundle reproduces SB3's deterministic
predict() with VecNormalize and action rescaling folded in; scripts/export.py end to end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401  (registration)
from deploy.export import ExportConfig, export_checkpoint
from deploy.runtime import BundlePolicy, ChunkRunner, file_sha256
from training.rl.checkpoint import load_for_evaluation

from tests.deploy.export_factory import REACH, rl_checkpoint

pytestmark = pytest.mark.slow  # trains SB3 models and exports them

REPO = Path(__file__).resolve().parents[2]
STATE, ENV_STATE = "observation.state", "observation.environment_state"


def _trained(algo: str, tmp_path_factory):
    root = tmp_path_factory.mktemp(algo)
    return algo, rl_checkpoint(root / "run", algo), root


@pytest.fixture(scope="module")
def ppo(tmp_path_factory):
    return _trained("ppo", tmp_path_factory)


@pytest.fixture(scope="module")
def sac(tmp_path_factory):
    return _trained("sac", tmp_path_factory)


def env_observations(count: int, seed: int = 11) -> list[dict[str, np.ndarray]]:
    env = gym.make(REACH["id"], max_episode_steps=REACH["max_episode_steps"])
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    out = []
    for _ in range(count):
        out.append({k: np.asarray(v, np.float32)[None] for k, v in obs.items()})
        obs, *_ = env.step(np.clip(obs["agent_pos"] + rng.normal(0, 0.3, 6), env.action_space.low,
                                   env.action_space.high).astype(np.float32))
    env.close()
    return out


@pytest.mark.parametrize("algo", ["ppo", "sac"])
def test_actor_bundle_matches_sb3_predict(algo, request, monkeypatch):
    algo, ckpt, root = request.getfixturevalue(algo)
    made = []
    real_make = gym.make
    monkeypatch.setattr(gym, "make", lambda *a, **k: made.append(a[0]) or real_make(*a, **k))
    result = export_checkpoint(ExportConfig(checkpoint=str(ckpt), output=str(root / "bundle"), optimize=False,
                                            parity_samples=2))
    monkeypatch.undo()
    assert result.parity.passed
    # One env: the SB3 model is rebuilt on it (shared by the actor and the parity reference), and it gives the
    # manifest's metadata, the rollouts of the motion profile and the parity observations.
    assert made == [REACH["id"]]
    bundle = BundlePolicy(root / "bundle")
    sb3 = load_for_evaluation(ckpt).make_policy(1)  # what scripts/eval.py runs for this checkpoint
    rng = np.random.default_rng(0)
    samples = env_observations(6)
    samples += [{"agent_pos": rng.normal(0, 1, (1, 6)).astype(np.float32),
                 "environment_state": rng.normal(0, 0.3, (1, 6)).astype(np.float32)} for _ in range(4)]
    got, want = [], []
    for obs in samples:
        got.append(bundle.predict_chunk({STATE: obs["agent_pos"], ENV_STATE: obs["environment_state"]})[0])
        want.append(np.asarray(sb3(obs))[0])
    got, want = np.stack(got), np.stack(want)
    assert np.abs(got - want).max() <= 1e-4
    assert want.std(axis=0).max() > 1e-3  # the actions depend on the observation (normalization matters)

    m = bundle.manifest
    assert m.policy_type == "sb3" and m.sampler is None
    assert (m.control.chunk_size, m.control.n_action_steps, m.control.n_obs_steps) == (1, 1, 1)
    assert [f.key for f in m.observation] == [STATE, ENV_STATE]
    assert m.model.sha256 == file_sha256(root / "bundle" / "policy.onnx")
    assert m.source.extra["kind"] == "rl" and m.source.extra["algorithm"] == algo
    assert m.source.extra["export_notes"]["vecnormalize"]["norm_obs"] is True
    assert m.source.config["algo"]["name"] == algo
    # No demonstrations: the default velocity limit and ranges come from rollouts of the policy itself.
    safety = m.source.extra["safety"]
    assert "closed-loop rollouts of the policy" in safety["max_velocity"]["from"]
    assert len(m.action.max_velocity) == 6 and all(v > 0 for v in m.action.max_velocity)
    assert m.feature(STATE).low is not None and m.feature(ENV_STATE).low is not None
    # One tick of the runner gives SB3's action, clamped to the limits and rate-limited from the measured pose.
    runner = ChunkRunner(root / "bundle")
    obs = samples[0]
    action = runner.tick({STATE: obs["agent_pos"][0], ENV_STATE: obs["environment_state"][0]})
    step = np.asarray(m.action.max_velocity) / m.control.frequency_hz
    pose = obs["agent_pos"][0]
    want_action = np.clip(np.clip(want[0], m.action.lower, m.action.upper), pose - step, pose + step)
    np.testing.assert_allclose(action, want_action, atol=1e-4)


def test_export_script_writes_a_bundle_and_rejects_typos(sac, tmp_path):
    _, ckpt, _ = sac
    out = tmp_path / "cli_bundle"
    run = subprocess.run([sys.executable, "scripts/export.py", f"checkpoint={ckpt}", f"output={out}",
                          "optimize=false", "parity_samples=2", f"hydra.run.dir={tmp_path / 'hydra'}"],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "sb3 bundle" in run.stdout and "parity" in run.stdout
    assert (out / "manifest.json").is_file() and (out / "policy.onnx").is_file()
    again = subprocess.run([sys.executable, "scripts/export.py", f"checkpoint={ckpt}", f"output={out}",
                            f"hydra.run.dir={tmp_path / 'hydra'}"], cwd=REPO, capture_output=True, text=True,
                           timeout=300)
    assert again.returncode != 0 and "overwrite=true" in again.stderr
    typo = subprocess.run([sys.executable, "scripts/export.py", f"checkpoint={ckpt}", f"output={out}",
                           "optimise=false"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert typo.returncode != 0 and "optimise" in typo.stderr
