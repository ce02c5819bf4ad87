"""Reach task: SO-101 spaces and units, success and reward on constructed states, expert, cameras, user MJCF robots."""

import math

import gymnasium as gym
import mujoco
import numpy as np
import pytest

import envs  # noqa: F401
from envs.assets import so101
from envs.kinematics import SiteIK
from envs.tasks.reach import ReachEnv
from tests.envs.episodes import expert_episode

USER_ARM = """
<mujoco model="planar3">
  <compiler angle="radian"/>
  <option integrator="implicitfast"/>
  <default><joint armature="0.01" damping="0.5"/></default>
  <worldbody>
    <geom name="floor" type="plane" size="1 1 0.1"/>
    <body name="l1" pos="0 0 0.1">
      <joint name="yaw" axis="0 0 1" range="-1.5 1.5"/>
      <geom type="capsule" fromto="0 0 0 0 0 0.2" size="0.02"/>
      <body name="l2" pos="0 0 0.2">
        <joint name="pitch1" axis="0 1 0" range="-1.2 1.2"/>
        <geom type="capsule" fromto="0 0 0 0.2 0 0" size="0.02"/>
        <body name="l3" pos="0.2 0 0">
          <joint name="pitch2" axis="0 1 0" range="-1.5 1.5"/>
          <geom type="capsule" fromto="0 0 0 0.15 0 0" size="0.015"/>
          <site name="tip" pos="0.15 0 0"/>
        </body>
      </body>
    </body>
  </worldbody>
  <actuator>
    <position name="a_yaw" joint="yaw" kp="50" kv="2" ctrlrange="-1.5 1.5"/>
    <position name="a_pitch1" joint="pitch1" kp="50" kv="2" ctrlrange="-1.2 1.2"/>
    <position name="a_pitch2" joint="pitch2" kp="50" kv="2" ctrlrange="-1.5 1.5"/>
    {extra}
  </actuator>
</mujoco>
"""


def run_expert(env, seed):
    return expert_episode(env, seed)[1]["is_success"]


def place_target(env, offset):
    """Put the target at the end effector plus `offset` (metres) and recompute the derived quantities."""
    task = env.unwrapped
    task.data.mocap_pos[task.target_mocap] = task.data.site_xpos[task.ee_site_id] + offset
    mujoco.mj_forward(task.model, task.data)


def test_spaces_units_and_observation_content():
    env = gym.make("cerebellum/Reach-v0")
    obs, _ = env.reset(seed=0)
    task = env.unwrapped
    assert env.action_space.shape == (6,)
    np.testing.assert_allclose(env.action_space.low, so101.JOINT_RANGES[:, 0].astype(np.float32))
    np.testing.assert_allclose(env.action_space.high, so101.JOINT_RANGES[:, 1].astype(np.float32))
    assert task.action_names == list(so101.JOINT_NAMES) == task.joint_names
    assert task.action_units == ["rad"] * 6
    assert task.control_hz == 50.0 and task.max_episode_steps == 100
    assert obs["agent_pos"].shape == (6,) and obs["environment_state"].shape == (6,)
    np.testing.assert_allclose(obs["agent_pos"], task.data.qpos[:6], atol=1e-6)
    np.testing.assert_allclose(obs["environment_state"][:3], task.data.mocap_pos[task.target_mocap], atol=1e-6)
    np.testing.assert_allclose(obs["environment_state"][3:], task.data.site_xpos[task.ee_site_id], atol=1e-6)


def test_targets_lie_in_the_declared_region_and_are_reachable_by_ik():
    env = gym.make("cerebellum/Reach-v0")
    ik = SiteIK(env.unwrapped.model, so101.TCP_SITE, so101.ARM_JOINTS[:4])
    targets = []
    for seed in range(30):
        obs, _ = env.reset(seed=seed)
        target = obs["environment_state"][:3].astype(np.float64)
        radius, azimuth = math.hypot(target[0], target[1]), math.atan2(target[1], target[0])
        assert 0.14 - 1e-6 <= radius <= 0.30 + 1e-6 and abs(azimuth) <= math.pi / 3 + 1e-6
        assert 0.04 - 1e-6 <= target[2] <= 0.24 + 1e-6
        assert ik.solve(target, so101.HOME_QPOS[:4], pos_tol=1e-3).converged
        targets.append(target)
    assert np.ptp(np.array(targets), axis=0).min() > 0.08  # spread over the region, not a fixed point


def test_success_detection_on_constructed_states():
    env = gym.make("cerebellum/Reach-v0")
    env.reset(seed=0)
    task = env.unwrapped
    place_target(env, np.array([0.012, -0.008, 0.005]))  # 1.5 cm away
    assert task.is_success()
    place_target(env, np.array([0.0, 0.025, 0.0]))  # 2.5 cm away
    assert not task.is_success()
    assert task.distance() == pytest.approx(0.025, abs=1e-9)


def test_dense_reward_grows_closer_to_target_and_sparse_is_binary():
    dense = gym.make("cerebellum/Reach-v0", reward_type="dense")
    sparse = gym.make("cerebellum/Reach-v0", reward_type="sparse")
    rewards = {}
    for env in (dense, sparse):
        env.reset(seed=0)
        values = []
        for gap in (0.2, 0.1, 0.03, 0.01):
            place_target(env, np.array([gap, 0.0, 0.0]))
            values.append(env.unwrapped.compute_reward())
        rewards[env.unwrapped.reward_type] = values
    assert rewards["dense"] == sorted(rewards["dense"]) and len(set(rewards["dense"])) == 4
    assert rewards["dense"][0] == pytest.approx(-0.2)
    assert rewards["dense"][3] == pytest.approx(-0.01 + ReachEnv.success_bonus)
    assert rewards["sparse"] == [0.0, 0.0, 0.0, 1.0]


def test_bad_reward_type_is_rejected():
    with pytest.raises(ValueError, match="reward_type"):
        gym.make("cerebellum/Reach-v0", reward_type="shaped")


@pytest.mark.parametrize("randomization", [False, True])
def test_expert_reaches_and_holds(randomization):
    env = gym.make("cerebellum/Reach-v0", randomization=randomization)
    assert all(run_expert(env, seed) for seed in range(4))


# ---------------------------------------------------------------- user robots
@pytest.fixture
def user_arm(tmp_path):
    path = tmp_path / "arm.xml"
    path.write_text(USER_ARM.format(extra=""))
    return path


def test_user_robot_gets_target_cameras_and_its_position_actuators(user_arm):
    env = gym.make("cerebellum/Reach-v0", robot_mjcf=str(user_arm), end_effector_site="tip",
                   obs_mode="state_pixels", cameras=("top", "front"), image_size=(48, 64))
    obs, _ = env.reset(seed=0)
    task = env.unwrapped
    assert env.action_space.shape == (3,)
    np.testing.assert_allclose(env.action_space.high, [1.5, 1.2, 1.5])
    assert task.joint_names == ["yaw", "pitch1", "pitch2"] and task.action_units == ["rad"] * 3
    assert obs["agent_pos"].shape == (3,) and obs["environment_state"].shape == (6,)
    for frame in obs["pixels"].values():
        assert frame.std() > 3
    env.close()


def test_user_robot_targets_are_reached_by_the_expert(user_arm):
    env = gym.make("cerebellum/Reach-v0", robot_mjcf=user_arm, end_effector_site="tip")
    assert all(run_expert(env, seed) for seed in range(3))


def test_user_robot_with_a_motor_keeps_only_position_actuators(tmp_path):
    path = tmp_path / "arm.xml"
    path.write_text(USER_ARM.format(extra='<motor name="m" joint="pitch2" ctrlrange="-1 1"/>'))
    env = gym.make("cerebellum/Reach-v0", robot_mjcf=path, end_effector_site="tip")
    env.reset(seed=0)
    env.step(np.zeros(3, np.float32))
    assert env.action_space.shape == (3,) and env.unwrapped.data.ctrl[3] == 0.0


def test_user_robot_bad_inputs_raise_clear_errors(tmp_path, user_arm):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ReachEnv(robot_mjcf=tmp_path / "missing.xml", end_effector_site="tip")
    with pytest.raises(ValueError, match="has no site 'hand'.*'tip'"):
        ReachEnv(robot_mjcf=user_arm, end_effector_site="hand")
    with pytest.raises(ValueError, match="needs end_effector_site"):
        ReachEnv(robot_mjcf=user_arm)
    with pytest.raises(ValueError, match="only used together with robot_mjcf"):
        ReachEnv(end_effector_site="tip")
    broken = tmp_path / "broken.xml"
    broken.write_text("<mujoco><worldbody><body></worldbody></mujoco>")
    with pytest.raises(ValueError, match="could not load robot_mjcf"):
        ReachEnv(robot_mjcf=broken, end_effector_site="tip")
    motors = tmp_path / "motors.xml"
    motors.write_text(USER_ARM.replace("position", "motor").replace('kp="50" kv="2" ', "").format(extra=""))
    with pytest.raises(ValueError, match="no position actuators"):
        ReachEnv(robot_mjcf=motors, end_effector_site="tip")
