"""Damped-least-squares site IK on the SO-101 model: accuracy, orientation targets, limits and bad input."""

import mujoco
import numpy as np
import pytest

from envs.assets import so101
from envs.kinematics import SiteIK
from envs.experts.pick_cube import top_down_frame


@pytest.fixture(scope="module")
def model():
    return mujoco.MjModel.from_xml_string(so101.scene_xml(model_name="ik_test"))


def test_forward_matches_mujoco_forward(model):
    ik = SiteIK(model, so101.TCP_SITE, so101.ARM_JOINTS)
    q = np.array([0.3, -0.4, 0.6, 0.9, -0.5])
    pos, mat = ik.forward(q)
    data = mujoco.MjData(model)
    data.qpos[:5] = q
    mujoco.mj_forward(model, data)
    site = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, so101.TCP_SITE)
    np.testing.assert_allclose(pos, data.site_xpos[site], atol=1e-12)
    np.testing.assert_allclose(mat.ravel(), data.site_xmat[site], atol=1e-12)


def test_position_ik_recovers_targets_of_random_configurations(model):
    ik = SiteIK(model, so101.TCP_SITE, so101.ARM_JOINTS[:4])
    rng = np.random.default_rng(0)
    low, high = np.array([-1.0, -0.8, -0.5, -0.5]), np.array([1.0, 0.8, 1.2, 1.5])
    solved = 0
    while solved < 25:
        q_true = rng.uniform(low, high)
        target, _ = ik.forward(q_true)
        if target[0] < 0.1 or target[2] < 0.02:  # keep the hand in front of the arm and above the table
            continue
        result = ik.solve(target, so101.HOME_QPOS[:4], pos_tol=5e-4, max_iters=200)
        assert result.converged, (q_true, result)
        reached, _ = ik.forward(result.qpos)
        assert np.linalg.norm(reached - target) < 5e-4
        assert np.all(result.qpos >= so101.JOINT_RANGES[:4, 0]) and np.all(result.qpos <= so101.JOINT_RANGES[:4, 1])
        solved += 1


@pytest.mark.parametrize("jaw_yaw", [0.0, 0.7, -1.2])
def test_pose_ik_reaches_a_top_down_grasp(model, jaw_yaw):
    ik = SiteIK(model, so101.TCP_SITE, so101.ARM_JOINTS)
    target = np.array([0.17, 0.06, 0.03])
    frame = top_down_frame(np.arctan2(0.06, 0.17) + jaw_yaw * 0.3)
    result = ik.solve(target, so101.HOME_QPOS[:5], target_mat=frame, pos_tol=5e-4, rot_tol=5e-3, max_iters=200)
    assert result.converged, result
    pos, mat = ik.forward(result.qpos)
    assert np.linalg.norm(pos - target) < 5e-4
    assert mat[:, 2] @ np.array([0.0, 0.0, -1.0]) > 0.999  # approach axis points down


def test_unreachable_target_stays_within_limits_and_reports_failure(model):
    ik = SiteIK(model, so101.TCP_SITE, so101.ARM_JOINTS[:4])
    result = ik.solve(np.array([1.0, 0.0, 0.2]), so101.HOME_QPOS[:4], max_iters=60)
    assert not result.converged and result.position_error > 0.3
    assert np.all(result.qpos >= ik.lower) and np.all(result.qpos <= ik.upper)


def test_ik_does_not_touch_other_state(model):
    data = mujoco.MjData(model)
    ik = SiteIK(model, so101.TCP_SITE, so101.ARM_JOINTS[:4])
    before = data.qpos.copy()
    ik.solve(np.array([0.2, 0.0, 0.1]), so101.HOME_QPOS[:4])
    np.testing.assert_array_equal(data.qpos, before)


def test_bad_names_and_targets_raise(model):
    with pytest.raises(ValueError, match="no site 'nope'"):
        SiteIK(model, "nope", so101.ARM_JOINTS)
    with pytest.raises(ValueError, match="no joint 'elbow'"):
        SiteIK(model, so101.TCP_SITE, ["elbow"])
    ik = SiteIK(model, so101.TCP_SITE, so101.ARM_JOINTS[:4])
    with pytest.raises(ValueError, match="target_pos"):
        ik.solve(np.array([0.1, np.nan, 0.1]), so101.HOME_QPOS[:4])
    with pytest.raises(ValueError, match="q_init"):
        ik.solve(np.array([0.1, 0.0, 0.1]), np.zeros(3))
