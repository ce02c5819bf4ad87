"""TransferCube: units and bounds, grasp/success detection on constructed states, staged reward, expert, cameras."""

import gymnasium as gym
import mujoco
import numpy as np
import pytest

import envs  # noqa: F401
from envs.assets import aloha
from envs.experts import make_expert
from envs.experts.transfer_cube import ArmIK, _frame, _Mover, _quat
from envs.tasks.transfer_cube import CUBE_HALF, CUBE_X_RANGE, CUBE_Y_RANGE, HOME_ARM

ENV_ID = "cerebellum/TransferCube-v0"


@pytest.fixture
def env():
    e = gym.make(ENV_ID)
    yield e
    e.close()


def qadr(model, joint):
    return model.jnt_qposadr[mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, joint)]


def set_gripper(task, side, opening):
    m, d = task.model, task.data
    d.qpos[qadr(m, f"{side}/finger_a")] = d.qpos[qadr(m, f"{side}/finger_b")] = opening / 2


def set_arm(task, side, q):
    m, d = task.model, task.data
    for name, value in zip(aloha.ARM_JOINTS, q):
        d.qpos[qadr(m, f"{side}/{name}")] = value


def place_cube_in_gripper(task, side, squeeze=0.0006):
    """Cube centred between the pads of `side`'s gripper, faces aligned with them, pads pressing by `squeeze`."""
    m, d = task.model, task.data
    mujoco.mj_kinematics(m, d)
    site = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_SITE, f"{side}/grasp")
    cube = qadr(m, "cube")
    d.qpos[cube : cube + 3] = d.site_xpos[site]
    d.qpos[cube + 3 : cube + 7] = _quat(d.site_xmat[site].reshape(3, 3))
    set_gripper(task, side, 2 * CUBE_HALF - 2 * squeeze)


def solve_site(task, side, pos, mat):
    ik = ArmIK(task.model, mujoco.MjData(task.model), side)
    q = ik.solve(np.array(HOME_ARM), pos, _quat(mat), iters=200)
    reached, _ = ik.forward(q)
    assert np.linalg.norm(reached - pos) < 1e-4
    return q


def test_spaces_units_and_joint_limits(env):
    task = env.unwrapped
    assert env.action_space.shape == (14,) and env.action_space.dtype == np.float32
    assert task.joint_names == task.action_names
    assert task.action_names[:7] == [f"left/{j}" for j in (*aloha.ARM_JOINTS, "gripper")]
    assert task.action_units == (["rad"] * 6 + ["m"]) * 2
    low, high = env.action_space.low, env.action_space.high
    # ViperX 300 6DOF joint limits (shoulder, elbow, wrist angle) and the gripper opening range in metres.
    np.testing.assert_allclose(low[[1, 2, 4, 6]], [-1.85005, -1.76278, -1.8675, 0.004], atol=1e-6)
    np.testing.assert_allclose(high[[8, 9, 11, 13]], [1.25664, 1.6057, 2.23402, 0.074], atol=1e-6)
    obs, _ = env.reset(seed=0)
    assert obs["agent_pos"].shape == (14,) and obs["environment_state"].shape == (7,)
    np.testing.assert_allclose(obs["agent_pos"], task.home_action(), atol=1e-6)


def test_gripper_opening_is_the_gap_between_the_pads_in_metres(env):
    task = env.unwrapped
    env.reset(seed=0)
    m, d = task.model, task.data
    set_gripper(task, "right", 0.031)
    mujoco.mj_forward(m, d)
    pads = [mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_GEOM, f"right/finger_{f}") for f in "ab"]
    centres = d.geom_xpos[pads]
    thickness = m.geom_size[pads, 1]
    gap = np.linalg.norm(centres[0] - centres[1]) - thickness.sum()
    assert gap == pytest.approx(0.031, abs=1e-9)
    assert task.agent_pos()[13] == pytest.approx(0.031, abs=1e-9)


def test_cube_spawns_on_the_table_in_front_of_the_right_arm():
    env = gym.make(ENV_ID, randomization={"object_size_scale": (0.9, 0.9)})
    positions = np.array([env.reset(seed=s)[0]["environment_state"][:3] for s in range(30)])
    assert positions[:, 0].min() >= CUBE_X_RANGE[0] - 0.01 and positions[:, 0].max() <= CUBE_X_RANGE[1] + 0.01
    assert positions[:, 1].min() >= CUBE_Y_RANGE[0] - 0.01 and positions[:, 1].max() <= CUBE_Y_RANGE[1] + 0.01
    assert np.ptp(positions[:, 0]) > 0.1 and np.ptp(positions[:, 1]) > 0.1
    # Resting on the table whatever its (randomized) size: centre height = its current half size.
    np.testing.assert_allclose(positions[:, 2], 0.9 * CUBE_HALF, atol=0.006)
    env.close()


def test_success_when_left_gripper_holds_cube_in_the_air(env):
    task = env.unwrapped
    env.reset(seed=0)
    place_cube_in_gripper(task, "left")
    mujoco.mj_forward(task.model, task.data)
    assert task.is_success() and task.compute_reward() == 4.0

    set_gripper(task, "left", 0.07)  # fingers open: the cube floats free of them
    mujoco.mj_forward(task.model, task.data)
    assert not task.is_success() and task.compute_reward() == 0.0


def test_right_gripper_holding_is_stage_two_not_success(env):
    task = env.unwrapped
    env.reset(seed=0)
    place_cube_in_gripper(task, "right")
    mujoco.mj_forward(task.model, task.data)
    assert task.stage() == 2 and not task.is_success()


def test_no_success_while_both_hold_or_cube_on_table(env):
    task = env.unwrapped
    env.reset(seed=0)
    meet = np.array([0.0, 0.0, 0.22])
    left_frame = _frame(np.array([1.0, 0, 0]), np.array([0, 0, 1.0]))
    right_frame = _frame(np.array([0, 0, -1.0]), np.array([0, -1.0, 0]))
    set_arm(task, "left", solve_site(task, "left", meet, left_frame))
    set_arm(task, "right", solve_site(task, "right", meet, right_frame))
    place_cube_in_gripper(task, "left")
    set_gripper(task, "right", 2 * CUBE_HALF - 0.0012)
    mujoco.mj_forward(task.model, task.data)
    assert task.stage() == 3 and not task.is_success()  # the right gripper still touches the cube

    set_gripper(task, "right", 0.07)
    mujoco.mj_forward(task.model, task.data)
    assert task.is_success()

    on_table = np.array([-0.1, 0.0, CUBE_HALF - 0.0005])
    set_arm(task, "left", solve_site(task, "left", on_table, _frame(np.array([0, 0, -1.0]), np.array([0, 1.0, 0]))))
    place_cube_in_gripper(task, "left")
    mujoco.mj_forward(task.model, task.data)
    assert task.stage() == 3 and not task.is_success()  # held by the left gripper but still on the table


def test_closed_gripper_holds_the_cube_while_the_arm_swings():
    # Lowest friction and heaviest cube that the default randomization ranges allow.
    env = gym.make(ENV_ID, randomization={"friction_scale": (0.8, 0.8), "object_mass_scale": (1.2, 1.2),
                                          "object_size_scale": (1.0, 1.0), "action_delay_steps": (0, 0)})
    task = env.unwrapped
    env.reset(seed=0)
    place_cube_in_gripper(task, "left")
    mujoco.mj_forward(task.model, task.data)
    action = task.home_action()
    action[6] = aloha.OPENING_RANGE[0]  # commanded fully closed: the servo squeezes the cube
    site = mujoco.mj_name2id(task.model, mujoco.mjtObj.mjOBJ_SITE, "left/grasp")
    for step in range(100):  # 2 s of brisk waist and wrist motion
        phase = 2 * np.pi * step / 50
        action[0], action[5] = 0.6 * np.sin(phase), 1.2 * np.sin(phase)
        obs, reward, _, _, info = env.step(action.astype(np.float32))
        assert info["is_success"], f"cube slipped out at step {step}"
    offset = obs["environment_state"][:3] - task.data.site_xpos[site]
    assert np.linalg.norm(offset) < 0.01
    env.close()


def test_expert_passes_every_reward_stage_in_order_and_succeeds():
    env = gym.make(ENV_ID)
    expert = make_expert(env)
    obs, _ = env.reset(seed=3)
    expert.reset()
    stages = []
    for _ in range(env.unwrapped.max_episode_steps):
        obs, reward, terminated, truncated, info = env.step(expert(obs))
        if not stages or stages[-1] != reward:
            stages.append(reward)
        assert "physics_error" not in info
    assert stages == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert info["is_success"], "the left gripper must still hold the cube at the end of the episode"
    env.close()


def expert_actions_for_cube_at(x, y, steps):
    """The expert's first `steps` actions with the cube placed at (x, y) on the table."""
    env = gym.make(ENV_ID)
    task = env.unwrapped
    env.reset(seed=0)
    cube = qadr(task.model, "cube")
    task.data.qpos[cube : cube + 2] = (x, y)
    mujoco.mj_forward(task.model, task.data)
    expert = make_expert(env)
    obs = {"agent_pos": task.agent_pos().astype(np.float32), "environment_state": task.environment_state().astype(np.float32)}
    actions = []
    for _ in range(steps):
        actions.append(expert(obs))
        obs, *_ = env.step(actions[-1])
    env.close()
    return np.array(actions)


def test_expert_joint_trajectories_vary_continuously_with_the_cube_position():
    # Cubes 4 cm apart on either side of y = 0: the demonstrations must stay close (imitation learns one smooth map
    # from cube pose to joint trajectory); plain DLS used to roll the right forearm to +pi on one side, -pi on the other.
    steps = 150  # approach, descent, grasp and the start of the lift
    actions = [expert_actions_for_cube_at(0.1, y, steps) for y in (0.02, -0.02)]
    forearm_roll = [aloha.ARM_JOINTS.index("forearm_roll"), 7 + aloha.ARM_JOINTS.index("forearm_roll")]
    for a in actions:
        assert np.abs(a[:, forearm_roll]).max() < 0.3
    # What differs is the waist and wrist turning towards the cube: ~0.17 rad here, 2 pi with the roll flip.
    assert np.abs(actions[0] - actions[1]).max() < 0.3


def test_pose_target_brakes_to_a_stop_at_the_goal_in_finite_time():
    start, goal = np.zeros(3), np.array([0.1, 0.0, 0.0])
    mover = _Mover(start, _quat(np.eye(3)))
    mover.set_goal(goal, np.eye(3), speed=0.3)
    dt, positions = 0.02, [start]
    for _ in range(100):
        remaining = mover.advance(dt)
        positions.append(mover.pos.copy())
        if remaining == 0.0:
            break
    steps = np.diff(np.array(positions)[:, 0])
    assert remaining == 0.0 and np.array_equal(mover.pos, goal)
    # Cruise at the speed limit, then brake at no more than the deceleration limit; never back up.
    assert steps.max() == pytest.approx(0.3 * dt) and steps.min() >= 0.0
    # Cruise plus braking time (d / v + v / (2 a)) bounds the arrival, unlike a proportional slow-down.
    assert len(steps) * dt <= 0.1 / 0.3 + 0.3 / (2 * _Mover.accel) + 2 * dt


@pytest.mark.parametrize("seed,randomization", [(11, False), (12, True), (13, True)])
def test_expert_solves_seeds(seed, randomization):
    env = gym.make(ENV_ID, randomization=randomization)
    expert = make_expert(env)
    obs, info = env.reset(seed=seed)
    expert.reset()
    success = False
    while True:
        obs, _, terminated, truncated, info = env.step(expert(obs))
        success |= info["is_success"]
        if terminated or truncated:
            break
    assert success and info["is_success"]
    env.close()


def test_physics_stays_stable_under_bang_bang_commands(env):
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    low, high = env.action_space.low, env.action_space.high
    for _ in range(150):
        action = np.where(rng.random(14) < 0.5, low, high).astype(np.float32)
        obs, reward, terminated, truncated, info = env.step(action)
        assert "physics_error" not in info
        assert np.isfinite(obs["agent_pos"]).all() and np.isfinite(obs["environment_state"]).all()


def test_every_camera_renders_an_informative_frame():
    cameras = ("top", "angle", "front", "left_wrist", "right_wrist")
    env = gym.make(ENV_ID, obs_mode="pixels", cameras=cameras, image_size=(48, 64))
    obs, _ = env.reset(seed=0)
    for cam in cameras:
        frame = obs["pixels"][cam]
        assert frame.shape == (48, 64, 3) and frame.std() > 10, cam
    env.close()


def test_expert_rejects_pixel_only_or_batched_observations(env):
    expert = make_expert(env)
    obs, _ = env.reset(seed=0)
    with pytest.raises(ValueError, match="agent_pos"):
        expert({"pixels": {}})
    with pytest.raises(ValueError, match="unbatched"):
        expert({key: np.stack([value, value]) for key, value in obs.items()})
