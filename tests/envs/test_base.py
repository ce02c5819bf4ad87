"""Base-class behaviour checked on a minimal pendulum-and-box task defined here."""

import gymnasium as gym
import mujoco
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from envs.base import MujocoTaskEnv

XML = """
<mujoco>
  <worldbody>
    <light pos="0 0 3"/>
    <geom name="floor" type="plane" size="1 1 .1" rgba=".8 .8 .8 1"/>
    <body name="arm" pos="0 0 .5">
      <joint name="hinge" type="hinge" axis="0 1 0" range="-1.5 1.5" damping="0.1"/>
      <geom type="capsule" fromto="0 0 0 .3 0 0" size=".02" rgba="0 0 1 1"/>
    </body>
    <body name="box" pos=".2 0 .05">
      <freejoint/>
      <geom name="box" type="box" size=".05 .05 .05" rgba="1 0 0 1"/>
    </body>
    <camera name="top" pos="0 -1.2 .8" xyaxes="1 0 0 0 .6 .8"/>
  </worldbody>
  <actuator><position name="hinge" joint="hinge" kp="20" ctrlrange="-1.5 1.5"/></actuator>
</mujoco>
"""


class PendulumBoxEnv(MujocoTaskEnv):
    default_max_episode_steps = 20
    randomized_object_bodies = ("box",)
    size_randomized_bodies = ("box",)

    def build_mjcf(self):
        return XML

    def setup(self):
        pass

    def sample_initial_state(self, rng):
        self.data.qpos[0] = rng.uniform(-0.5, 0.5)
        self.data.qpos[1] = rng.uniform(0.1, 0.3)

    def agent_pos(self):
        return self.data.qpos[:1]

    def environment_state(self):
        return self.data.qpos[1:8]

    def compute_reward(self):
        return -abs(self.data.qpos[0])

    def is_success(self):
        return abs(self.data.qpos[0]) < 0.05


def rollout(env, seed, actions):
    obs, _ = env.reset(seed=seed)
    traj = [obs["agent_pos"].copy(), obs["environment_state"].copy()]
    for a in actions:
        obs, *_ = env.step(a)
        traj += [obs["agent_pos"].copy(), obs["environment_state"].copy()]
    return np.concatenate(traj)


def test_check_env_passes_for_state_and_pixels():
    check_env(PendulumBoxEnv(), skip_render_check=True)
    env = PendulumBoxEnv(obs_mode="state_pixels", image_size=(32, 40))
    check_env(env, skip_render_check=True)
    env.close()


def test_same_seed_same_trajectory_bitwise_with_randomization():
    actions = np.linspace(-1, 1, 15)[:, None].astype(np.float32)
    a = rollout(PendulumBoxEnv(randomization=True), 3, actions)
    b = rollout(PendulumBoxEnv(randomization=True), 3, actions)
    c = rollout(PendulumBoxEnv(randomization=True), 4, actions)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_randomization_leaves_initial_task_state_unchanged_and_restores_nominal_model():
    plain, randomized = PendulumBoxEnv(), PendulumBoxEnv(randomization={"agent_pos_noise_std": 0.0,
                                                                         "environment_state_noise_std": 0.0})
    nominal_mass = plain.model.body_mass.copy()
    o1, _ = plain.reset(seed=7)
    o2, _ = randomized.reset(seed=7)
    np.testing.assert_array_equal(o1["agent_pos"], o2["agent_pos"])
    assert not np.array_equal(randomized.model.body_mass, nominal_mass)
    randomized._randomizer.restore()
    np.testing.assert_array_equal(randomized.model.body_mass, nominal_mass)


@pytest.mark.parametrize("bad", [np.array([np.nan], np.float32), np.array([np.inf], np.float32), np.zeros(2)])
def test_bad_actions_raise_clear_errors(bad):
    env = PendulumBoxEnv()
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action"):
        env.step(bad)


class HalfScaleActionEnv(PendulumBoxEnv):
    """Its action is twice the servo target, so MuJoCo's ctrlrange cannot enforce the action bounds."""

    def action_bounds(self):
        return np.array([-3.0]), np.array([3.0])

    def apply_action(self, action):
        self.data.ctrl[:] = 0.5 * action


@pytest.mark.parametrize("env_cls", [PendulumBoxEnv, HalfScaleActionEnv])
def test_out_of_bound_actions_act_like_the_bound(env_cls):
    high = env_cls().action_space.high
    clipped = rollout(env_cls(), 0, [high] * 5)
    beyond = rollout(env_cls(), 0, [high * 7.0] * 5)
    np.testing.assert_array_equal(clipped, beyond)
    # Where the action goes straight into a ctrl-limited actuator MuJoCo clamps it; otherwise step() clips.
    assert env_cls()._clip_in_python == (env_cls is HalfScaleActionEnv)


def test_truncation_and_success_flag():
    env = PendulumBoxEnv(max_episode_steps=5)
    env.reset(seed=0)
    for i in range(5):
        _, _, terminated, truncated, info = env.step(np.zeros(1, np.float32))
        assert "is_success" in info and not terminated
    assert truncated


def test_physics_blow_up_truncates_with_error_instead_of_nan():
    env = PendulumBoxEnv()
    env.reset(seed=0)
    env.data.qvel[:] = 1e12  # force an unstable state
    _, _, terminated, truncated, info = env.step(np.zeros(1, np.float32))
    assert truncated and not terminated
    assert "physics_error" in info
    assert "physics_error" in info and "unstable" in info["physics_error"]


def test_positions_blown_up_in_the_last_substep_end_the_episode_not_in_float32_inf():
    # MuJoCo checks the state at the start of each substep; the env checks qpos after the last one as well.
    env = PendulumBoxEnv(timestep=1e300, control_hz=1e-300)
    env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(np.ones(1, np.float32))
    assert truncated and not terminated and "physics_error" in info
    assert np.isfinite(obs["agent_pos"]).all() and np.isfinite(obs["environment_state"]).all()


def test_latency_delays_actions_by_configured_steps():
    env = PendulumBoxEnv(randomization={"action_delay_steps": (2, 2), "agent_pos_noise_std": 0.0,
                                        "environment_state_noise_std": 0.0})
    env.reset(seed=0)
    hold = env.data.ctrl.copy()
    env.step(np.array([1.0], np.float32))
    assert env.data.ctrl[0] == hold[0]
    env.step(np.array([0.5], np.float32))
    env.step(np.array([0.2], np.float32))
    assert env.data.ctrl[0] == pytest.approx(1.0)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_delayed_actions_are_copied_so_a_reused_buffer_applies_each_steps_value(dtype):
    env = PendulumBoxEnv(randomization={"action_delay_steps": (2, 2), "agent_pos_noise_std": 0.0,
                                        "environment_state_noise_std": 0.0})
    env.reset(seed=0)
    hold = float(env.data.ctrl[0])
    buffer = np.zeros(1, dtype)
    sent = [0.9, -0.4, 0.25, -1.1, 0.6, 1.3]
    applied = []
    for value in sent:
        buffer[0] = value  # the caller refills one buffer, as a control loop does
        env.step(buffer)
        applied.append(float(env.data.ctrl[0]))
    expected = [hold, hold] + [float(dtype(v)) for v in sent[:-2]]
    assert applied == pytest.approx(expected, abs=0, rel=0)


def test_pixels_render_only_requested_cameras_and_not_blank():
    env = PendulumBoxEnv(obs_mode="pixels", image_size=(48, 64), render_mode="rgb_array")
    obs, _ = env.reset(seed=0)
    assert set(obs) == {"pixels"} and set(obs["pixels"]) == {"top"}
    img = obs["pixels"]["top"]
    assert img.shape == (48, 64, 3) and img.dtype == np.uint8
    assert img.std() > 5
    assert env.render().shape == (240, 320, 3)
    env.close()


def test_unknown_camera_and_bad_timing_are_rejected():
    with pytest.raises(ValueError, match="no camera 'side'"):
        PendulumBoxEnv(obs_mode="pixels", cameras=("side",))
    with pytest.raises(ValueError, match="whole multiple"):
        PendulumBoxEnv(control_hz=30, timestep=0.002)
    with pytest.raises(ValueError, match="unknown randomization"):
        PendulumBoxEnv(randomization={"frictoin_scale": (0.5, 1)})


def test_vector_env():
    envs = gym.vector.SyncVectorEnv([PendulumBoxEnv for _ in range(2)])
    obs, _ = envs.reset(seed=[1, 2])
    assert obs["agent_pos"].shape == (2, 1)
    envs.step(np.zeros((2, 1), np.float32))
    envs.close()


def test_rendering_does_not_change_randomized_dynamics():
    actions = np.linspace(-1, 1, 15)[:, None].astype(np.float32)
    plain = rollout(PendulumBoxEnv(randomization=True), 11, actions)
    rendering = PendulumBoxEnv(randomization=True, render_mode="rgb_array")
    assert np.array_equal(plain, rollout(rendering, 11, actions))
    rendering.close()
