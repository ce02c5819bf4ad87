"""Push-T specifics: units, exact T overlap, success/termination, reward shape, physics invariance, expert, frames."""

import math

import gymnasium as gym
import mujoco
import numpy as np
import pytest

import envs  # noqa: F401  (registers the tasks)
from envs.assets.push_t import TShape
from envs.experts import make_expert
from envs.tasks.push_t import PushTEnv, TOverlap
from tests.envs.episodes import expert_episode

ENV_ID = "cerebellum/PushT-v0"
NO_NOISE = {"agent_pos_noise_std": 0.0, "environment_state_noise_std": 0.0}


def place(task: PushTEnv, block, pusher=(0.24, 0.24)) -> None:
    """Put the block at (x, y, yaw) and the pusher somewhere, at rest, and recompute derived quantities."""
    q = task.data.qpos
    q[task._bx], q[task._by], q[task._byaw] = block
    q[task._px : task._px + 2] = pusher
    task.data.qvel[:] = 0.0
    task.data.ctrl[:] = pusher
    mujoco.mj_forward(task.model, task.data)


def raster_coverage(rects: np.ndarray, dx: float, dy: float, dyaw: float, step: float = 0.0002) -> float:
    """Independent estimate: the fraction of a fine grid over the goal T that lies inside the moved block T."""
    inside_goal, points = [], []
    for _, cy, hx, hy in rects:
        xs = np.arange(-hx + step / 2, hx, step)
        ys = np.arange(cy - hy + step / 2, cy + hy, step)
        gx, gy = np.meshgrid(xs, ys)
        points.append(np.stack([gx.ravel(), gy.ravel()], axis=1))
    points = np.concatenate(points)
    c, s = math.cos(dyaw), math.sin(dyaw)
    local = (points - (dx, dy)) @ np.array([[c, -s], [s, c]])  # into the block's frame
    for _, cy, hx, hy in rects:
        inside_goal.append((np.abs(local[:, 0]) <= hx) & (np.abs(local[:, 1] - cy) <= hy))
    return float(np.mean(inside_goal[0] | inside_goal[1]))


def test_spaces_units_and_timing():
    env = gym.make(ENV_ID)
    task = env.unwrapped
    assert task.control_hz == 10.0 and task.n_substeps == 50 and task.max_episode_steps == 300
    assert env.action_space.shape == (2,)
    np.testing.assert_allclose(env.action_space.low, -0.25)
    np.testing.assert_allclose(env.action_space.high, 0.25)
    assert task.action_units == ["m", "m"] and task.action_names == ["pusher_x", "pusher_y"]
    obs, _ = env.reset(seed=0)
    assert obs["agent_pos"].shape == (2,) and obs["environment_state"].shape == (3,)
    x, y, yaw = obs["environment_state"]
    assert abs(x) <= 0.15 + 1e-6 and abs(y) <= 0.15 + 1e-6 and -math.pi <= yaw < math.pi
    # A position target is reached (metres, world frame).
    target = np.array([0.1, -0.2], np.float32)
    for _ in range(10):
        obs, *_ = env.step(target)
    np.testing.assert_allclose(obs["agent_pos"], target, atol=2e-3)


def test_overlap_is_exact_for_translations_and_matches_a_raster_for_random_poses():
    rects = TShape().rects()
    overlap = TOverlap(rects)
    area_mm2 = 6300.0  # gym-pusht's T: 120 x 30 + 30 x 90 (mm)
    assert overlap.area == pytest.approx(area_mm2 * 1e-6)
    assert overlap(0.0, 0.0, 0.0) == pytest.approx(1.0)
    for d in (0.001, 0.004, 0.012):  # closed forms: shifting the T by d uncovers 120 mm x d either way
        assert overlap(d, 0.0, 0.0) == pytest.approx(1 - 120 * d * 1e3 / area_mm2, abs=1e-12)
        assert overlap(0.0, d, 0.0) == pytest.approx(1 - 120 * d * 1e3 / area_mm2, abs=1e-12)
    assert overlap(0.17, 0.0, 0.3) == 0.0
    rng = np.random.default_rng(0)
    for _ in range(12):
        dx, dy = rng.normal(0, 0.03, size=2)
        dyaw = rng.uniform(-math.pi, math.pi)
        assert overlap(dx, dy, dyaw) == pytest.approx(raster_coverage(rects, dx, dy, dyaw), abs=4e-3)
    with pytest.raises(ValueError, match="bar sitting on a stem"):
        TOverlap(np.array([[0, 0.1, 0.06, 0.015], [0, -0.03, 0.015, 0.045]]))


def test_success_terminates_and_near_misses_do_not_count():
    env = gym.make(ENV_ID)
    task = env.unwrapped
    env.reset(seed=1)
    gx, gy, gyaw = task.goal_pose
    along_bar = np.array([math.cos(gyaw), math.sin(gyaw)])
    place(task, (*(np.array([gx, gy]) + 0.004 * along_bar), gyaw))  # 4 mm off: coverage 1 - 120 * 4 / 6300
    assert task.coverage() == pytest.approx(1 - 480 / 6300) and not task.is_success()
    place(task, (gx, gy, gyaw + math.radians(3)))
    assert not task.is_success()
    place(task, (gx + 0.001, gy - 0.001, gyaw + 2 * math.pi + math.radians(0.5)))  # yaw wraps
    assert task.is_success()
    _, reward, terminated, truncated, info = env.step(np.array([0.24, 0.24], np.float32))
    assert info["is_success"] and terminated and not truncated and reward == 1.0


def test_dense_reward_grows_towards_the_goal_and_sparse_reward_is_binary():
    task = gym.make(ENV_ID).unwrapped
    task.reset(seed=2)
    gx, gy, gyaw = task.goal_pose
    rewards = []
    for f in np.linspace(1.0, 0.0, 8):
        place(task, (gx + 0.08 * f, gy - 0.05 * f, gyaw + 1.2 * f))
        rewards.append(task.compute_reward())
    assert rewards[0] < 0.5 and rewards[-1] == 1.0 and np.all(np.diff(rewards) > 0)
    sparse = gym.make(ENV_ID, reward_type="sparse").unwrapped
    sparse.reset(seed=2)
    place(sparse, (gx + 0.01, gy, gyaw))
    assert sparse.compute_reward() == 0.0
    place(sparse, (gx, gy, gyaw))
    assert sparse.compute_reward() == 1.0
    with pytest.raises(ValueError, match="reward_type"):
        gym.make(ENV_ID, reward_type="shaped")
    with pytest.raises(ValueError, match="success_coverage"):
        gym.make(ENV_ID, success_coverage=1.5)


def test_initial_states_are_away_from_the_goal_and_collision_free():
    task = gym.make(ENV_ID).unwrapped
    for seed in range(20):
        obs, info = task.reset(seed=seed)
        assert not info["is_success"] and task.coverage() < task.max_initial_coverage
        assert task.distance_to_block(obs["agent_pos"], obs["environment_state"]) > 0.009
        assert task.data.ncon == 1  # only the pad on the table: the pusher touches nothing


def test_size_randomization_scales_goal_marker_and_success_with_the_block():
    task = gym.make(ENV_ID, randomization={"object_size_scale": (1.04, 1.05), **NO_NOISE}).unwrapped
    nominal = TShape().rects()
    task.reset(seed=0)
    scale = task.block_rects()[:, 2:] / nominal[:, 2:]
    assert np.all((scale > 1.039) & (scale < 1.051))
    goal = task.model.geom_size[task._goal_geoms, :2]
    np.testing.assert_allclose(goal, task.block_rects()[:, 2:])
    place(task, task.goal_pose)
    assert task.coverage() == pytest.approx(1.0)
    # The block settles on its (scaled) pad instead of dropping or popping up at reset.
    z0 = task.data.qpos[task._bz]
    task.step(task.data.ctrl.astype(np.float32))
    assert abs(task.data.qpos[task._bz] - z0) < 2e-4


def test_a_push_has_the_same_effect_wherever_the_block_is_and_however_it_is_turned():
    """Isotropic table friction: the expert's push library relies on this."""
    task = gym.make(ENV_ID).unwrapped
    outcomes = []
    for x, y, yaw in [(0.0, 0.0, 0.0), (-0.05, 0.08, 1.1), (0.07, -0.04, -2.5)]:
        task.reset(seed=0)
        c, s = math.cos(yaw), math.sin(yaw)
        rot = np.array([[c, -s], [s, c]])
        start_local, push_local = np.array([-0.045, -0.04]), np.array([0.6, 0.8])  # under the bar, to its side
        start = rot @ start_local + (x, y)
        place(task, (x, y, yaw), pusher=start)
        for k in range(1, 9):
            task.step((start + rot @ push_local * 0.01 * k).astype(np.float32))
        q = task.data.qpos
        moved = rot.T @ (np.array([q[task._bx], q[task._by]]) - (x, y))
        outcomes.append([*moved, q[task._byaw] - yaw])
    outcomes = np.array(outcomes)
    assert np.linalg.norm(outcomes[0, :2]) > 0.02 and abs(outcomes[0, 2]) > 0.1  # it moved and turned
    np.testing.assert_allclose(outcomes[1:], outcomes[:1].repeat(2, 0), atol=2e-4)


@pytest.mark.slow
@pytest.mark.parametrize("randomization", [False, True])
def test_expert_solves_a_few_seeds(randomization):
    env = gym.make(ENV_ID, randomization=randomization)
    for seed in (0, 1, 2):
        terminated, info = expert_episode(env, seed)
        assert info["is_success"] and terminated, f"seed {seed} not solved"


def test_expert_rejects_other_tasks():
    class NotPushT(gym.Env):
        pass

    with pytest.raises(ValueError, match="no scripted expert"):
        make_expert(NotPushT())


@pytest.mark.parametrize("camera", ["top", "front"])
def test_cameras_render_the_scene_with_the_goal_marker(camera):
    env = gym.make(ENV_ID, obs_mode="pixels", cameras=(camera,), image_size=(96, 96))
    obs, _ = env.reset(seed=0)
    frame = obs["pixels"][camera].astype(int)
    assert frame.shape == (96, 96, 3) and frame.std() > 10
    green = (frame[..., 1] > frame[..., 0] + 40) & (frame[..., 1] > frame[..., 2] + 40)
    assert green.sum() > 20, "goal T not visible"
    env.close()


def test_scene_options_move_the_goal_and_bad_ones_are_rejected():
    task = gym.make(ENV_ID, scene={"goal_pose": [0.05, -0.03, 0.0]}).unwrapped
    task.reset(seed=0)
    np.testing.assert_allclose(task.data.xpos[task.model.geom_bodyid[task._goal_geoms[0]]][:2], (0.05, -0.03))
    place(task, (0.05, -0.03, 0.0))
    assert task.is_success()
    with pytest.raises(ValueError, match="unknown scene option"):
        gym.make(ENV_ID, scene={"goal": (0, 0, 0)})
    with pytest.raises(ValueError, match="pusher_kp"):
        gym.make(ENV_ID, scene={"pusher_kp": -1.0})
