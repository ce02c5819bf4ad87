"""Scripted Reach expert: a straight Cartesian path to the observed target by IK, then hold with integral correction."""

from __future__ import annotations

import numpy as np

from envs.assets import so101
from envs.kinematics import SiteIK


class ReachExpert:
    """Moves the end effector along a straight line to the observed target, then holds it there.

    Each call advances a Cartesian waypoint towards the goal at `speed` and turns it into joint targets with
    warm-started damped-least-squares IK (a straight path keeps the hand off the table, unlike a joint-space jump).
    Closed loop on observations only: once the arm has settled, a remaining error between the observed end effector
    and target larger than `deadband` (gravity sag, servo gains under randomization) shifts the IK goal by a fraction
    of the error.
    """

    speed = 0.02  # metres per control step (1 m/s at 50 Hz)
    deadband = 0.004  # metres; below this the error is mostly observation noise
    integral_gain = 0.3
    settled_joint_step = 0.01  # rad per control step: the arm has stopped, so its error is a steady state

    def __init__(self, env) -> None:
        self.env = env
        names = list(env.joint_names)
        self._so101 = names == list(so101.JOINT_NAMES)
        # The SO-101's wrist roll spins the end effector about its own axis and the gripper does not move it.
        ik_joints = list(so101.ARM_JOINTS[:4]) if self._so101 else names
        self.ik = SiteIK(env.model, env.end_effector_site, ik_joints)
        self._ik_columns = np.array([names.index(j) for j in ik_joints])
        self._posture = so101.HOME_QPOS[:4] if self._so101 else None
        self._low, self._high = env.action_space.low.astype(np.float64), env.action_space.high.astype(np.float64)
        self.reset()

    def reset(self) -> None:
        self._action: np.ndarray | None = None
        self._goal: np.ndarray | None = None
        self._waypoint: np.ndarray | None = None
        self._last_q: np.ndarray | None = None

    def __call__(self, observation: dict) -> np.ndarray:
        q = np.asarray(observation["agent_pos"], dtype=np.float64)
        state = np.asarray(observation["environment_state"], dtype=np.float64)
        target, ee = state[:3], state[3:6]
        if self._action is None:
            self._goal = target.copy()
            self._waypoint = ee.copy()
            self._action = np.clip(q, self._low, self._high)
            if self._so101:
                self._action[5] = 0.0  # gripper closed and out of the way
        delta = self._goal - self._waypoint
        dist = float(np.linalg.norm(delta))
        if dist > self.speed:
            self._waypoint = self._waypoint + delta * (self.speed / dist)
        else:
            self._waypoint = self._goal.copy()
            error = target - ee
            settled = self._last_q is not None and np.abs(q - self._last_q).max() < self.settled_joint_step
            if settled and np.linalg.norm(error) > self.deadband:
                self._goal = self._goal + self.integral_gain * error
                self._waypoint = self._goal.copy()
        result = self.ik.solve(
            self._waypoint,
            self._action[self._ik_columns],
            posture=self._posture,
            posture_weight=0.05 if self._so101 else 0.0,
            max_iters=50,
            pos_tol=5e-4,
        )
        self._action[self._ik_columns] = result.qpos
        self._last_q = q
        return self._action.astype(np.float32)
