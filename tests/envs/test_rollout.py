"""envs.rollout.run_episode: an episode always ends, even on an env built without gymnasium's TimeLimit."""

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401  (registers the tasks)
from envs.rollout import run_episode
from envs.tasks.reach import ReachEnv


def hold_still(obs):
    return np.asarray(obs["agent_pos"], np.float64)  # absolute joint targets: stay where the arm is


def test_a_directly_built_env_without_a_length_ends_at_the_task_default():
    env = ReachEnv()  # no TimeLimit and no max_episode_steps: the env itself would never truncate
    try:
        result = run_episode(env, hold_still, seed=0)
    finally:
        env.close()
    assert result.steps == env.max_episode_steps and not result.success


def test_a_time_limit_from_gymnasium_make_still_ends_the_episode():
    env = gym.make("cerebellum/Reach-v0", max_episode_steps=7)
    try:
        assert run_episode(env, hold_still, seed=1).steps == 7
    finally:
        env.close()


class EndlessEnv(gym.Env):
    observation_space = gym.spaces.Box(-1.0, 1.0, (1,))
    action_space = gym.spaces.Box(-1.0, 1.0, (1,))

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(1, np.float32), {}

    def step(self, action):
        return np.zeros(1, np.float32), 0.0, False, False, {}


def test_an_env_that_declares_no_length_is_refused_before_it_runs():
    with pytest.raises(ValueError, match="no episode length limit"):
        run_episode(EndlessEnv(), lambda obs: np.zeros(1), seed=0)
