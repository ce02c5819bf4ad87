"""Behaviour every registered task must share: spaces, checker, determinism, bad input, vector envs, rendering."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs  # noqa: F401
from envs.registration import TASKS

TASK_IDS = sorted(TASKS)


def make(env_id, **kwargs):
    return gym.make(env_id, **kwargs)


@pytest.mark.parametrize("env_id", TASK_IDS)
def test_env_checker_passes(env_id):
    env = make(env_id)
    check_env(env.unwrapped, skip_render_check=True)
    env.close()


@pytest.mark.parametrize("env_id", TASK_IDS)
def test_state_observation_and_action_spaces(env_id):
    env = make(env_id)
    obs, info = env.reset(seed=0)
    assert set(obs) == {"agent_pos", "environment_state"}
    assert obs["agent_pos"].dtype == np.float32 and np.isfinite(obs["agent_pos"]).all()
    assert env.observation_space.contains(obs)
    space = env.action_space
    assert np.all(space.low < space.high) and np.isfinite(space.low).all() and np.isfinite(space.high).all()
    task = env.unwrapped
    assert len(task.action_names) == space.shape[0] == len(task.action_units)
    n_env = obs["environment_state"].shape[0]
    assert len(task.environment_state_names) == len(set(task.environment_state_names)) == n_env
    assert len(task.environment_state_units) == n_env
    _, reward, terminated, truncated, info = env.step(space.sample())
    assert isinstance(info["is_success"], bool) and np.isfinite(reward)
    env.close()


@pytest.mark.parametrize("env_id", TASK_IDS)
def test_same_seed_and_actions_give_bitwise_identical_trajectories(env_id):
    def trajectory(seed):
        env = make(env_id, randomization=True)
        obs, _ = env.reset(seed=seed)
        rng = np.random.default_rng(123)
        out = [obs["agent_pos"], obs["environment_state"]]
        for _ in range(25):
            obs, reward, *_ = env.step(rng.uniform(env.action_space.low, env.action_space.high).astype(np.float32))
            out += [obs["agent_pos"], obs["environment_state"], np.array([reward], np.float32)]
        env.close()
        return np.concatenate(out)

    assert np.array_equal(trajectory(5), trajectory(5))
    assert not np.array_equal(trajectory(5), trajectory(6))


@pytest.mark.parametrize("env_id", TASK_IDS)
def test_bad_actions_raise_and_out_of_bounds_clip(env_id):
    env = make(env_id)
    env.reset(seed=0)
    n = env.action_space.shape[0]
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros(n + 1, np.float32))
    bad = np.zeros(n, np.float32)
    bad[0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        env.step(bad)
    huge = np.full(n, 1e6, np.float32)
    obs, *_ = env.step(huge)
    assert np.isfinite(obs["agent_pos"]).all()
    env.close()
    at_bound, beyond = make(env_id), make(env_id)
    for e in (at_bound, beyond):
        e.reset(seed=3)
    for _ in range(3):
        obs_at, *_ = at_bound.step(at_bound.action_space.high)
        obs_beyond, *_ = beyond.step(beyond.action_space.high + 5.0)
    np.testing.assert_array_equal(obs_at["agent_pos"], obs_beyond["agent_pos"])
    np.testing.assert_array_equal(obs_at["environment_state"], obs_beyond["environment_state"])


@pytest.mark.parametrize("env_id", TASK_IDS)
def test_pixels_mode_renders_requested_camera_only_and_not_blank(env_id):
    env = make(env_id, obs_mode="state_pixels", cameras=("top",), image_size=(64, 80), render_mode="rgb_array")
    obs, _ = env.reset(seed=0)
    assert set(obs["pixels"]) == {"top"}
    frame = obs["pixels"]["top"]
    assert frame.shape == (64, 80, 3) and frame.dtype == np.uint8
    assert frame.std() > 5, "rendered frame is (nearly) uniform"
    big = env.render()
    assert big.ndim == 3 and big.std() > 5
    env.close()


@pytest.mark.parametrize("env_id", ["cerebellum/PickCube-v0", "cerebellum/Reach-v0"])  # the SO-101 scenes
def test_every_so101_camera_renders_a_non_blank_frame(env_id):
    env = make(env_id, obs_mode="pixels", cameras=("top", "front", "wrist"), image_size=(60, 80))
    obs, _ = env.reset(seed=0)
    for camera, frame in obs["pixels"].items():
        assert frame.shape == (60, 80, 3) and frame.std() > 5, camera
    env.close()


@pytest.mark.parametrize("vector_cls", [gym.vector.SyncVectorEnv, gym.vector.AsyncVectorEnv])
def test_gymnasium_vector_envs(vector_cls):
    env_id = "cerebellum/Reach-v0"
    vec = vector_cls([lambda: make(env_id) for _ in range(2)])
    obs, _ = vec.reset(seed=[0, 1])
    assert obs["agent_pos"].shape[0] == 2
    obs, reward, terminated, truncated, info = vec.step(vec.action_space.sample())
    assert reward.shape == (2,) and "is_success" in info
    vec.close()


def test_stable_baselines3_vec_env():
    from stable_baselines3.common.env_util import make_vec_env

    vec = make_vec_env("cerebellum/Reach-v0", n_envs=2, seed=0)
    obs = vec.reset()
    assert obs["agent_pos"].shape[0] == 2
    obs, reward, done, infos = vec.step(np.stack([vec.action_space.sample() for _ in range(2)]))
    assert reward.shape == (2,) and "is_success" in infos[0]
    vec.close()
