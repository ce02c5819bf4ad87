"""Scripted PickCube expert: IK waypoints above the cube, descend, close, lift; re-planned from every observation."""

from __future__ import annotations

import math

import numpy as np

from envs.assets import so101
from envs.kinematics import SiteIK

APPROACH, DESCEND, CLOSE, LIFT = range(4)


def top_down_frame(jaw_yaw: float) -> np.ndarray:
    """Gripper frame pointing straight down with the jaws closing along world direction `jaw_yaw`."""
    c, s = math.cos(jaw_yaw), math.sin(jaw_yaw)
    # columns: closing direction x, hinge axis y = z cross x, approach z = down
    return np.array([[c, s, 0.0], [s, -c, 0.0], [0.0, 0.0, -1.0]])


class PickCubeExpert:
    """A phase machine over observations: approach above the cube, descend, close, lift to the target height.

    Each call re-plans from the observed joints and cube pose: a Cartesian waypoint moves towards the phase's goal at
    a capped speed and damped-least-squares IK (warm-started) turns it into joint targets. Phases advance on
    observed conditions (tool near the goal, jaw stopped closing), and a cube that leaves the hand sends the expert
    back to the approach, so delays, noise and slips cost time rather than the episode.
    """

    hover_height = 0.06  # metres above the cube centre before descending
    grasp_offset = 0.006  # TCP above the cube centre at the grasp, so the fingertips clear the table
    lift_margin = 0.025  # hold the TCP this far above the target height
    approach_speed = 0.008  # metres per control step (0.4 m/s at 50 Hz)
    descend_speed = 0.004
    lift_speed = 0.005

    def __init__(self, env) -> None:
        self.env = env
        self.ik = SiteIK(env.model, so101.TCP_SITE, so101.ARM_JOINTS, rotation_weight=0.15)
        self.ik_lift = SiteIK(env.model, so101.TCP_SITE, so101.ARM_JOINTS[:4])
        self.roll_range = so101.JOINT_RANGES[4]
        self.reset()

    def reset(self) -> None:
        self.phase = APPROACH
        self._waypoint: np.ndarray | None = None
        self._q: np.ndarray | None = None
        self._gripper = so101.GRIPPER_OPEN
        self._jaw_history: list[float] = []
        self._grasp_q: np.ndarray | None = None
        self._lift_goal: np.ndarray | None = None
        self._steps_in_phase = 0

    # ------------------------------------------------------------------ helpers
    def _jaw_yaw(self, cube_quat: np.ndarray, cube_xy: np.ndarray) -> float:
        """A cube face direction (mod 90 deg) that keeps the wrist roll small."""
        w, x, y, z = cube_quat
        yaw = math.atan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))
        radial = math.atan2(cube_xy[1], cube_xy[0])
        # With the wrist roll at 0 the jaws close along the radial direction; pick the face closest to it.
        k = round((radial - yaw) / (math.pi / 2))
        return yaw + k * math.pi / 2

    def _set_phase(self, phase: int) -> None:
        self.phase = phase
        self._steps_in_phase = 0
        self._jaw_history.clear()

    def _move_waypoint(self, goal: np.ndarray, speed: float) -> None:
        delta = goal - self._waypoint
        dist = float(np.linalg.norm(delta))
        self._waypoint = goal.copy() if dist <= speed else self._waypoint + delta * (speed / dist)

    # ------------------------------------------------------------------ policy
    def __call__(self, observation: dict) -> np.ndarray:
        q_obs = np.asarray(observation["agent_pos"], dtype=np.float64)
        state = np.asarray(observation["environment_state"], dtype=np.float64)
        cube, cube_quat, target_z = state[:3], state[3:7], float(state[7])
        tcp, _ = self.ik.forward(q_obs[:5])
        if self._q is None:
            self._q = q_obs[:5].copy()
            self._waypoint = tcp.copy()
        self._steps_in_phase += 1
        grasp_point = cube + np.array([0.0, 0.0, self.grasp_offset])
        jaw_yaw = self._jaw_yaw(cube_quat, cube[:2])

        if self.phase in (APPROACH, DESCEND):
            self._gripper = so101.GRIPPER_OPEN
            hover = grasp_point + np.array([0.0, 0.0, self.hover_height])
            if self.phase == APPROACH:
                self._move_waypoint(hover, self.approach_speed)
                if np.linalg.norm(tcp - hover) < 0.012 and q_obs[5] > so101.GRIPPER_OPEN - 0.15:
                    self._set_phase(DESCEND)
            else:
                # Track the cube's observed xy while descending; a nudged cube is followed, not missed.
                if np.linalg.norm(tcp[:2] - grasp_point[:2]) > 0.02:
                    self._set_phase(APPROACH)
                self._move_waypoint(grasp_point, self.descend_speed)
                if np.linalg.norm(tcp - grasp_point) < 0.006:
                    self._set_phase(CLOSE)
            result = self.ik.solve(self._waypoint, self._q, target_mat=top_down_frame(jaw_yaw), max_iters=30,
                                   pos_tol=3e-4, rot_tol=5e-3)
            self._q = result.qpos
        elif self.phase == CLOSE:
            self._gripper = so101.GRIPPER_CLOSED
            self._jaw_history.append(float(q_obs[5]))
            recent = self._jaw_history[-4:]
            # The jaw has stopped moving (after the command had time to act, whatever the action delay).
            stalled = self._steps_in_phase > 5 and max(recent) - min(recent) < 0.015
            if stalled and q_obs[5] < so101.GRIPPER_OPEN - 0.2:
                if q_obs[5] < 0.1:  # closed on nothing: the cube was missed
                    self._set_phase(APPROACH)
                else:
                    self._grasp_q = self._q.copy()
                    self._lift_goal = np.array([tcp[0], tcp[1], target_z + self.lift_margin])
                    self._set_phase(LIFT)
        elif self.phase == LIFT:
            self._gripper = so101.GRIPPER_CLOSED
            if np.linalg.norm(cube - tcp) > 0.035:  # dropped: start over
                self._set_phase(APPROACH)
                self._gripper = so101.GRIPPER_OPEN
            else:
                # Closed loop on the observed cube height: raise the goal while the cube is still short of it.
                if cube[2] < target_z + 0.005 and self._steps_in_phase > 40:
                    self._lift_goal[2] = min(self._lift_goal[2] + 0.001, 0.22)
                self._move_waypoint(self._lift_goal, self.lift_speed)
                # Position-only IK keeps the hand near its grasp posture (the wrist cannot stay vertical high up).
                arm = self.ik_lift.solve(self._waypoint, self._q[:4], posture=self._grasp_q[:4], posture_weight=0.2,
                                         max_iters=30, pos_tol=3e-4)
                self._q[:4] = arm.qpos
        action = np.empty(6, dtype=np.float32)
        action[:5] = self._q
        action[5] = self._gripper
        return action
