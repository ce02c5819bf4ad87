"""PickCube task: spaces, grasp and success on constructed states, holding physics, reward, expert, cameras."""

import math

import gymnasium as gym
import mujoco
import numpy as np
import pytest

import envs  # noqa: F401
from envs.assets import so101
from envs.experts import make_expert
from envs.experts.pick_cube import top_down_frame
from envs.kinematics import SiteIK
from envs.tasks.pick_cube import CUBE_HALF


@pytest.fixture
def env():
    env = gym.make("cerebellum/PickCube-v0")
    env.reset(seed=0)
    yield env
    env.close()


def hand_pose(task, tcp_height):
    """Arm joints putting the TCP at (0.18, 0, tcp_height): top-down where the wrist allows, tilted higher up."""
    ik = SiteIK(task.model, so101.TCP_SITE, so101.ARM_JOINTS)
    result = ik.solve(np.array([0.18, 0.0, tcp_height]), so101.HOME_QPOS[:5], target_mat=top_down_frame(0.0),
                      max_iters=200)
    if not result.converged:
        ik = SiteIK(task.model, so101.TCP_SITE, so101.ARM_JOINTS[:4])
        result = ik.solve(np.array([0.18, 0.0, tcp_height]), so101.HOME_QPOS[:4], max_iters=200)
        assert result.converged
        return np.append(result.qpos, 0.0)
    return result.qpos


def construct(task, tcp_height, jaw, cube_offset):
    """Set the arm, the jaw angle and the cube (offset in the gripper frame from the TCP), then recompute."""
    d = task.data
    d.qpos[:5] = hand_pose(task, tcp_height)
    d.qpos[5] = jaw
    d.qvel[:] = 0.0
    d.ctrl[:5], d.ctrl[5] = d.qpos[:5], so101.GRIPPER_CLOSED
    mujoco.mj_forward(task.model, d)
    frame = d.site_xmat[task.tcp_site].reshape(3, 3)
    d.qpos[task.cube_qpos : task.cube_qpos + 3] = d.site_xpos[task.tcp_site] + frame @ np.asarray(cube_offset)
    d.qpos[task.cube_qpos + 3 : task.cube_qpos + 7] = (1.0, 0.0, 0.0, 0.0)
    mujoco.mj_forward(task.model, d)


# Cube pushed against the fixed jaw (0.5 mm overlap) with the moving jaw pressing on it: the state a grasp settles in.
IN_HAND = dict(jaw=0.33, cube_offset=(-0.0045, 0.0, 0.0))


def test_spaces_units_and_initial_state():
    env = gym.make("cerebellum/PickCube-v0")
    task = env.unwrapped
    assert env.action_space.shape == (6,) and task.action_units == ["rad"] * 6
    assert task.action_names == list(so101.JOINT_NAMES) and task.max_episode_steps == 200
    heights = []
    for seed in range(10):
        obs, info = env.reset(seed=seed)
        state = obs["environment_state"]
        assert state.shape == (11,) and not info["is_success"]
        cube, quat, target, tcp = state[:3], state[3:7], state[7], state[8:]
        assert cube[2] == pytest.approx(CUBE_HALF, abs=1e-6)  # resting on the table
        assert 0.13 - 1e-6 <= math.hypot(cube[0], cube[1]) <= 0.23 + 1e-6
        assert np.linalg.norm(quat) == pytest.approx(1.0, abs=1e-6)
        assert 0.08 <= target <= 0.12
        np.testing.assert_allclose(tcp, task.data.site_xpos[task.tcp_site], atol=1e-6)
        heights.append(target)
    assert np.ptp(heights) > 0.01


def test_grasp_and_success_detection_on_constructed_states(env):
    task = env.unwrapped
    target = task.target_height
    construct(task, target + 0.03, **IN_HAND)
    assert task.is_grasped() and task.is_success()
    construct(task, target - 0.03, **IN_HAND)  # held, but below the target height
    assert task.is_grasped() and not task.is_success()
    construct(task, target + 0.03, jaw=1.0, cube_offset=IN_HAND["cube_offset"])  # only the fixed jaw touches
    assert not task.is_grasped() and not task.is_success()
    task.data.qpos[task.cube_qpos : task.cube_qpos + 3] = (0.0, 0.2, target + 0.05)  # high up, away from the hand
    mujoco.mj_forward(task.model, task.data)
    assert not task.is_grasped() and not task.is_success()


def test_grasp_survives_a_fast_arm_swing():
    env = gym.make("cerebellum/PickCube-v0", max_episode_steps=400)
    task, expert = env.unwrapped, make_expert(env)
    obs, _ = env.reset(seed=1)
    expert.reset()
    for _ in range(200):
        obs, _, _, _, info = env.step(expert(obs))
        if info["is_success"]:
            break
    assert info["is_success"]
    hold = task.data.ctrl.astype(np.float32)
    swing = hold.copy()
    swing[0] += 0.8  # a full-speed turn of the shoulder_pan servo, there and back
    for action in [swing] * 25 + [hold] * 25:
        obs, _, _, _, info = env.step(action)
    assert task.is_grasped() and info["is_success"]


def test_dense_reward_ranks_stages_and_sparse_is_binary():
    dense = gym.make("cerebellum/PickCube-v0")
    dense.reset(seed=0)
    task = dense.unwrapped
    construct(task, 0.2, jaw=1.0, cube_offset=(0.0, 0.0, 0.3))
    far = task.compute_reward()
    construct(task, 0.06, jaw=1.0, cube_offset=(0.0, 0.0, 0.05))
    near = task.compute_reward()
    construct(task, task.target_height - 0.04, **IN_HAND)
    grasped_low = task.compute_reward()
    construct(task, task.target_height - 0.01, **IN_HAND)
    grasped_higher = task.compute_reward()
    construct(task, task.target_height + 0.03, **IN_HAND)
    success = task.compute_reward()
    assert 0.0 < far < near < grasped_low < grasped_higher < success == 1.0

    sparse = gym.make("cerebellum/PickCube-v0", reward_type="sparse")
    sparse.reset(seed=0)
    task = sparse.unwrapped
    construct(task, task.target_height - 0.01, **IN_HAND)
    assert task.compute_reward() == 0.0
    construct(task, task.target_height + 0.03, **IN_HAND)
    assert task.compute_reward() == 1.0


def test_bad_kwargs_are_rejected():
    with pytest.raises(ValueError, match="reward_type"):
        gym.make("cerebellum/PickCube-v0", reward_type="shaped")
    with pytest.raises(ValueError, match="target_height_range"):
        gym.make("cerebellum/PickCube-v0", target_height_range=(0.15, 0.1))


def test_randomized_cube_size_rests_on_the_table():
    env = gym.make("cerebellum/PickCube-v0", randomization={"object_size_scale": (1.05, 1.05),
                                                            "environment_state_noise_std": 0.0})
    obs, _ = env.reset(seed=0)
    assert env.unwrapped.cube_half_size() == pytest.approx(CUBE_HALF * 1.05)
    assert obs["environment_state"][2] == pytest.approx(CUBE_HALF * 1.05, abs=1e-6)


@pytest.mark.parametrize("randomization, seeds", [(False, (0, 1, 2)), (True, (3, 4))])
def test_expert_picks_and_holds_the_cube(randomization, seeds):
    env = gym.make("cerebellum/PickCube-v0", randomization=randomization)
    expert = make_expert(env)
    for seed in seeds:
        obs, _ = env.reset(seed=seed)
        expert.reset()
        for _ in range(env.unwrapped.max_episode_steps):
            obs, _, _, truncated, info = env.step(expert(obs))
        assert truncated and info["is_success"], seed  # still held at the end of the episode
