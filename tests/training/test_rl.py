"""RL trainer: each algorithm trains and writes a loadable checkpoint, kill -9 + resume, pickle-free loading,
normalization fidelity, and config errors before any training."""

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import cloudpickle
import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException, HydraException
from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, ValidationError
from safetensors.numpy import load_file as load_numpy
from safetensors.torch import load_file as load_torch
from stable_baselines3.common.callbacks import BaseCallback

from training.checkpoints import latest_checkpoint
from apps.evaluation import EvaluateConfig, evaluate_checkpoint
from training.evaluation import make_eval_envs
from deploy.export.sources import sb3_actor
from training.rl.algorithms import build_model
from training.rl.checkpoint import (
    NORMALIZATION,
    POLICY_WEIGHTS,
    REPLAY_ARRAYS,
    load_for_evaluation,
    read_rl_checkpoint,
    restore_training_state,
)
from training.rl.config import finalize, register_configs
from training.rl.environments import make_training_vec_env
from training.rl.normalization import ObservationNormalizer, restore_vecnormalize, vecnormalize_state
from training.rl.trainer import RLSetupError, load, resume, resume_from, run, train

ROOT = Path(__file__).resolve().parents[2]
register_configs()

# Small and quick: 50-step episodes, tiny networks, few gradient updates, no videos, no wandb.
QUICK = [
    "env=reach", "env.max_episode_steps=50", "algo.net_arch=[32,32]", "vec_env=dummy", "progress_bar=false",
    "logger.mode=disabled", "eval.episodes=2", "eval.n_envs=2", "eval.video_episodes=0", "eval.final_episodes=2",
]
OFF_POLICY_QUICK = ["algo.learning_starts=1800", "algo.batch_size=64", "algo.buffer_size=5000", "algo.n_envs=1"]


def compose_cfg(overrides):
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train_rl", overrides=list(overrides))
    return finalize(OmegaConf.to_object(cfg))


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["ppo", "sac", "td3", "tqc"])
def test_each_algorithm_trains_and_writes_a_checkpoint_that_evaluates_like_the_live_model(algo, tmp_path):
    extra = (["algo.n_envs=2", "algo.n_steps=512", "algo.batch_size=128", "algo.n_epochs=2"] if algo == "ppo"
             else OFF_POLICY_QUICK)
    cfg = compose_cfg([*QUICK, f"algo={algo}", "total_timesteps=2000", "eval.every_steps=1000",
                       "checkpoint.every_steps=1000", *extra])
    result = train(cfg, tmp_path)
    assert result.num_timesteps >= 2000
    steps = sorted(int(p.name.split("_")[1]) for p in (tmp_path / "checkpoints").glob("step_*"))
    assert steps[-1] == result.num_timesteps and len(steps) >= 2
    assert latest_checkpoint(tmp_path) == result.checkpoint
    assert (tmp_path / "eval" / "final" / "results.json").is_file()
    assert any((tmp_path / "eval").glob("step_*/results.json"))

    rl = read_rl_checkpoint(tmp_path)
    assert rl.config.algo.name == algo and rl.checkpoint.type == algo
    assert rl.layout.keys == ("agent_pos", "environment_state") and rl.layout.sizes == (6, 6)
    # The checkpoint, loaded pickle-free, replays the live model's final evaluation exactly (same seeds).
    live = json.loads((tmp_path / "eval" / "final" / "results.json").read_text())
    loaded = evaluate_checkpoint(
        EvaluateConfig(checkpoint=str(tmp_path), episodes=2, n_envs=2, seed=cfg.eval.seed, video_episodes=0),
        tmp_path / "reeval",
    )
    assert [r.to_dict() for r in loaded.records] == live["per_episode"]

    # The exportable actor (normalization and action scaling folded in) acts like the evaluated policy.
    actor, _ = sb3_actor(rl)
    vector_policy = load_for_evaluation(tmp_path).make_policy(1)
    envs = make_eval_envs(cfg.env, 4)
    obs, _ = envs.reset(seed=3)
    for _ in range(5):
        expected = vector_policy(obs)
        with torch.no_grad():
            got = actor(torch.as_tensor(rl.layout.flatten(obs))).numpy()
        np.testing.assert_allclose(got, expected, atol=1e-5)
        obs, *_ = envs.step(expected)
    envs.close()


def test_algorithm_that_does_not_fit_the_action_space_fails_before_training(tmp_path):
    cfg = compose_cfg([*QUICK, "algo=dqn"])
    with pytest.raises(ValueError, match=r"algorithm 'dqn' needs a Discrete action space, but cerebellum/Reach-v0 "
                                         r"has Box.*algorithms that fit this env: \['ppo', 'sac', 'td3', 'tqc'\]"):
        train(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "overrides, error, message",
    [
        (["algo.n_stesp=3"], ConfigCompositionException, "n_stesp"),
        (["algo=sac", "algo.n_steps=64"], ConfigCompositionException, "n_steps"),
        (["algo=a2c_typo"], HydraException, "Could not find 'algo/a2c_typo'"),
        (["algo.learning_rate=fast"], ConfigCompositionException, "learning_rate"),
        (["totl_timesteps=5"], ConfigCompositionException, "totl_timesteps"),
        (["env.randomization.enabld=true"], ConfigCompositionException, "enabld"),
    ],
)
def test_wrong_overrides_fail_at_composition(overrides, error, message):
    with pytest.raises(error, match=message):
        compose_cfg(["env=reach", *overrides])


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["algo.batch_size=100000"], "exceeds the rollout size"),
        (["env.obs_mode=pixels"], "env.obs_mode must be 'state'"),
        (["logger.mode=sometimes"], "logger.mode must be one of"),
        (["algo=sac", "algo.ent_coef=lots"], "algo.ent_coef must be 'auto'"),
        (["algo=td3", "algo.action_noise=pink"], "algo.action_noise must be one of"),
        (["vec_env=threads"], "vec_env must be one of"),
        (["algo.activation_fn=swish"], "algo.activation_fn must be one of"),
    ],
)
def test_invalid_values_fail_with_a_clear_message(overrides, message):
    with pytest.raises((ValueError, ValidationError, ConfigKeyError), match=message):
        compose_cfg(["env=reach", *overrides])


def test_per_env_tuning_applies_and_command_line_wins():
    tuned = compose_cfg(["env=reach", "algo=ppo"])
    tuned_file = OmegaConf.load(ROOT / "configs" / "algo" / "tuned" / "ppo_reach.yaml")
    assert tuned.algo.n_envs == tuned_file.algo.n_envs != 1
    overridden = compose_cfg(["env=reach", "algo=ppo", "algo.learning_rate=0.0123", "algo.n_envs=3"])
    assert (overridden.algo.learning_rate, overridden.algo.n_envs) == (0.0123, 3)


def test_resume_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such run directory"):
        resume_from(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="has no complete checkpoint"):
        resume_from(tmp_path)


@pytest.mark.slow
def test_kill_9_then_resume_reaches_the_same_total_with_no_update_lost(tmp_path):
    run_dir = tmp_path / "run"
    cmd = [sys.executable, str(ROOT / "scripts" / "train_rl.py"), *QUICK, "algo=ppo", "algo.n_envs=2",
           "algo.n_steps=256", "algo.batch_size=128", "algo.n_epochs=2", "total_timesteps=8192",
           "checkpoint.every_steps=1024", "eval.every_steps=0", "eval.final_episodes=0", f"run_dir={run_dir}",
           f"hydra.run.dir={tmp_path / 'hydra'}"]
    env = {**os.environ, "WANDB_MODE": "disabled", "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        deadline = time.time() + 240
        while latest_checkpoint(run_dir) is None:
            assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
            assert time.time() < deadline, "no checkpoint within 240 s"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    killed_at = read_rl_checkpoint(run_dir).checkpoint.step
    assert 1024 <= killed_at < 8192

    result = run(compose_cfg(["env=reach", f"resume={run_dir}"]), default_run_dir=tmp_path / "unused")
    assert result.run_dir == run_dir and result.num_timesteps == 8192
    state = read_rl_checkpoint(run_dir).state
    # PPO does n_epochs updates per 512-step rollout: 16 rollouts x 2 epochs if no rollout was lost or repeated.
    assert state["n_updates"] == 8192 // 512 * 2
    assert (run_dir / f"progress_from_{killed_at}.csv").is_file()
    assert not (tmp_path / "unused").exists()


class CrashAfter(BaseCallback):
    def __init__(self, steps):
        super().__init__()
        self.steps = steps

    def _on_step(self):
        if self.num_timesteps >= self.steps:
            raise RuntimeError("simulated crash")
        return True


@pytest.mark.slow
def test_off_policy_resume_restores_replay_buffer_normalization_and_counters(tmp_path):
    cfg = compose_cfg([*QUICK, "algo=sac", *OFF_POLICY_QUICK, "algo.learning_starts=450", "total_timesteps=700",
                       "checkpoint.every_steps=500", "eval.every_steps=0", "eval.final_episodes=0"])
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(cfg, tmp_path, callbacks=[CrashAfter(560)])
    resumed = resume_from(tmp_path)
    ckpt = resumed.checkpoint
    assert ckpt.step == 500 and ckpt.has(REPLAY_ARRAYS)

    # Restoring into a fresh model and env reproduces every saved piece of state.
    venv = make_training_vec_env(cfg.env, 1, 1, "dummy", True, False, cfg.algo.gamma, cfg.algo.clip_obs)
    model = build_model(resumed.config.algo, venv, seed=1)
    restore_training_state(resumed, model, venv)
    saved = load_numpy(str(ckpt.file(REPLAY_ARRAYS)))
    assert model.replay_buffer.pos == 500 and not model.replay_buffer.full
    np.testing.assert_array_equal(model.replay_buffer.observations[:500], saved["observations"])
    np.testing.assert_array_equal(model.replay_buffer.actions[:500], saved["actions"])
    for key, value in load_torch(str(ckpt.file(POLICY_WEIGHTS))).items():
        assert np.array_equal(model.policy.state_dict()[key].numpy(), value.numpy()), key
    assert vecnormalize_state(venv) == json.loads(ckpt.file(NORMALIZATION).read_text())
    assert (model.num_timesteps, model._n_updates) == (500, resumed.state["n_updates"]) and model._n_updates > 0
    venv.close()

    result = train(resumed.config, tmp_path, resume=resumed)
    assert result.num_timesteps == 700
    # One gradient step per env step after learning_starts, continued across the crash without a gap.
    assert read_rl_checkpoint(tmp_path).state["n_updates"] == 700 - 450


@pytest.mark.slow
def test_resume_applies_execution_overrides_refuses_the_rest_and_logs_plain_progress_lines(tmp_path, capfd):
    cfg = compose_cfg([*QUICK, "algo=ppo", "algo.n_envs=1", "algo.n_steps=128", "algo.batch_size=64",
                       "algo.n_epochs=1", "total_timesteps=512", "checkpoint.every_steps=128", "eval.every_steps=0",
                       "eval.final_episodes=0"])
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(cfg, tmp_path, callbacks=[CrashAfter(300)])
    with pytest.raises(RLSetupError, match=r"cannot be applied: \['algo.learning_rate', 'total_timesteps'\]\. "
                                           r"Allowed with resume: \['algo.device', .*'progress_bar'"):
        resume(tmp_path, ["algo.learning_rate=0.1", "progress_bar=true", "total_timesteps=1024"])
    with pytest.raises(RLSetupError, match="trains a 'ppo' algo, but algo=sac was given"):
        run(compose_cfg(["env=reach", "algo=sac", f"resume={tmp_path}"]), tmp_path / "unused",
            overrides=["algo=sac", f"resume={tmp_path}"])
    capfd.readouterr()

    result = resume(tmp_path, ["progress_bar=true", "max_train_seconds=600"])  # stderr is no terminal here
    assert result.num_timesteps == 512
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["progress_bar"] is True and saved["max_train_seconds"] == 600 and saved["resume"] is None
    err = capfd.readouterr().err
    assert "\r" not in err and "train ppo: 512/512 steps (100%)" in err
    weights = load_torch(str(read_rl_checkpoint(tmp_path).checkpoint.file(POLICY_WEIGHTS)))
    policy = load(tmp_path)
    assert not policy.training and all(torch.equal(policy.state_dict()[k], v) for k, v in weights.items())


@pytest.mark.slow
def test_checkpoint_loading_never_unpickles(tmp_path, monkeypatch):
    cfg = compose_cfg([*QUICK, "algo=sac", *OFF_POLICY_QUICK, "algo.learning_starts=100", "total_timesteps=200",
                       "checkpoint.every_steps=0", "eval.every_steps=0", "eval.final_episodes=0"])
    train(cfg, tmp_path)

    def refuse(*args, **kwargs):
        raise AssertionError("checkpoint loading used pickle")

    for module, name in ((pickle, "load"), (pickle, "loads"), (pickle, "Unpickler"), (cloudpickle, "loads"),
                         (cloudpickle, "load")):
        monkeypatch.setattr(module, name, refuse)
    loaded = load_for_evaluation(tmp_path)
    obs = {"agent_pos": np.zeros((3, 6), np.float32), "environment_state": np.full((3, 6), 0.1, np.float32)}
    assert loaded.make_policy(3)(obs).shape == (3, 6)
    rl = read_rl_checkpoint(tmp_path)
    venv = make_training_vec_env(cfg.env, 1, 0, "dummy", True, False, cfg.algo.gamma, cfg.algo.clip_obs)
    model = build_model(rl.config.algo, venv, seed=0)
    restore_training_state(rl, model, venv)
    venv.close()


def test_numpy_normalizer_matches_vecnormalize_and_json_round_trip_is_exact():
    cfg = compose_cfg([*QUICK, "algo=ppo"])
    venv = make_training_vec_env(cfg.env, 2, 0, "dummy", True, True, 0.99, 5.0)
    venv.reset()
    for _ in range(30):
        venv.step(np.stack([venv.action_space.sample() for _ in range(2)]))
    state = json.loads(json.dumps(vecnormalize_state(venv)))
    x = np.random.default_rng(0).normal(0, 1, (7, 12)).astype(np.float32) * 3
    np.testing.assert_allclose(ObservationNormalizer.from_state(state)(x), venv.normalize_obs(x), rtol=0, atol=1e-6)
    fresh = make_training_vec_env(cfg.env, 2, 0, "dummy", True, True, 0.99, 5.0)
    restore_vecnormalize(fresh, state)
    assert vecnormalize_state(fresh) == vecnormalize_state(venv)
    with pytest.raises(ValueError, match="norm_reward"):
        restore_vecnormalize(make_training_vec_env(cfg.env, 1, 0, "dummy", True, False, 0.99, 5.0), state)
    for v in (venv, fresh):
        v.close()
