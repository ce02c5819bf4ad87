"""Scripted TransferCube expert: Cartesian waypoints for both grippers, tracked by damped-least-squares IK."""

from __future__ import annotations

import mujoco
import numpy as np

from envs.assets import aloha
from envs.tasks.transfer_cube import HOME_ARM

SIDES = ("left", "right")
DOWN, FORWARD = np.array([0.0, 0.0, -1.0]), np.array([1.0, 0.0, 0.0])  # world directions; the arms face along x
OPEN, CLOSED = aloha.OPENING_RANGE[1], aloha.OPENING_RANGE[0]


def _frame(approach: np.ndarray, fingers: np.ndarray) -> np.ndarray:
    """Gripper rotation matrix with x along `approach` and y (finger travel) as close as possible to `fingers`."""
    x = approach / np.linalg.norm(approach)
    y = fingers - (fingers @ x) * x
    y /= np.linalg.norm(y)
    return np.column_stack([x, y, np.cross(x, y)])


def _quat(mat: np.ndarray) -> np.ndarray:
    q = np.empty(4)
    mujoco.mju_mat2Quat(q, mat.ravel())
    return q


class ArmIK:
    """Damped-least-squares IK of one arm's grasp site on a scratch MjData (the env's state is never touched).

    Each iteration minimises |J dq - e|^2 + damping^2 |dq|^2 + sum_i w_i (q_i + dq_i - posture_i)^2. The posture
    term keeps the forearm roll near its ready value: with the wrist angle near zero, forearm roll and wrist rotate
    are nearly parallel axes, and plain DLS drifted through that near-singular direction to a roll of +pi or -pi
    depending on the sign of the cube's y. Both are valid poses, but joint trajectories that flip with the sign of
    one coordinate are a bimodal target for imitation; with the bias they vary smoothly with the cube pose. The
    poses the task asks for are reachable with zero roll, so the bias costs no accuracy there.
    """

    damping = 0.02
    rotation_weight = 0.3  # metres of position error worth one radian of orientation error
    max_joint_step = 0.2  # rad per iteration: keeps the linearisation valid for far targets
    # Posture weights per joint (waist, shoulder, elbow, forearm_roll, wrist_angle, wrist_rotate): roll only. 0.01
    # dominates the near-singular direction (J^T J eigenvalue ~1e-4 at the ready pose; the others are 0.002-0.7
    # along the task), and a zero-roll solution of the task is a fixed point of the biased iteration.
    posture_weight = np.array([0.0, 0.0, 0.0, 0.01, 0.0, 0.0])

    def __init__(self, model: mujoco.MjModel, data: mujoco.MjData, side: str) -> None:
        self.model, self.data = model, data
        self.site = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, f"{side}/grasp")
        joints = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, f"{side}/{j}") for j in aloha.ARM_JOINTS]
        self.qadr = model.jnt_qposadr[joints]
        self.dofs = model.jnt_dofadr[joints]
        self.low, self.high = model.jnt_range[joints, 0], model.jnt_range[joints, 1]
        self._jacp = np.zeros((3, model.nv))
        self._jacr = np.zeros((3, model.nv))
        self.posture = np.array(HOME_ARM)
        self._reg = self.damping**2 * np.eye(6) + np.diag(self.posture_weight)

    def forward(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Grasp-site position and rotation matrix for arm joints q."""
        self.data.qpos[self.qadr] = q
        mujoco.mj_kinematics(self.model, self.data)
        return self.data.site_xpos[self.site].copy(), self.data.site_xmat[self.site].reshape(3, 3).copy()

    def solve(self, q: np.ndarray, pos: np.ndarray, quat: np.ndarray, iters: int = 6) -> np.ndarray:
        m, d, w = self.model, self.data, self.rotation_weight
        err = np.empty(6)
        cur_quat, rot = np.empty(4), np.empty(3)
        jac = np.empty((6, 6))
        for _ in range(iters):
            d.qpos[self.qadr] = q
            mujoco.mj_kinematics(m, d)
            err[:3] = pos - d.site_xpos[self.site]
            mujoco.mju_mat2Quat(cur_quat, d.site_xmat[self.site])
            # subQuat gives the rotation vector in the current site frame; the Jacobian wants it in the world frame.
            mujoco.mju_subQuat(rot, quat, cur_quat)
            err[3:] = w * (d.site_xmat[self.site].reshape(3, 3) @ rot)
            if err[:3] @ err[:3] < 1e-8 and err[3:] @ err[3:] < (w * 1e-3) ** 2:
                break
            mujoco.mj_comPos(m, d)
            mujoco.mj_jacSite(m, d, self._jacp, self._jacr, self.site)
            jac[:3] = self._jacp[:, self.dofs]
            jac[3:] = w * self._jacr[:, self.dofs]
            dq = np.linalg.solve(jac.T @ jac + self._reg, jac.T @ err - self.posture_weight * (q - self.posture))
            step = np.abs(dq).max()
            if step > self.max_joint_step:
                dq *= self.max_joint_step / step
            q = np.clip(q + dq, self.low, self.high)
        return q


class _Mover:
    """A gripper pose target that moves towards its goal at bounded linear and angular speed and deceleration."""

    accel = 1.0  # m/s^2 of braking before the goal
    angular_accel = 8.0  # rad/s^2

    def __init__(self, pos: np.ndarray, quat: np.ndarray) -> None:
        self.pos, self.quat = pos.copy(), quat.copy()
        self.goal_pos, self.goal_quat = pos.copy(), quat.copy()
        self.speed, self.turn_rate = 0.3, 2.0

    def set_goal(self, pos: np.ndarray, mat: np.ndarray, speed: float, turn_rate: float = 2.0) -> None:
        self.goal_pos, self.goal_quat = np.asarray(pos, float), _quat(mat)
        self.speed, self.turn_rate = speed, turn_rate

    def goal_mat(self) -> np.ndarray:
        mat = np.empty(9)
        mujoco.mju_quat2Mat(mat, self.goal_quat)
        return mat.reshape(3, 3)

    def advance(self, dt: float) -> float:
        """Step the target towards the goal; returns the remaining distance (metres + radians).

        Speed is capped by sqrt(2 * accel * distance): constant braking that arrives in finite time. An earlier
        proportional slow-down crept over the last centimetres for about a second before every phase change, so
        the moment the expert moved on was nearly invisible in the observation, which made it hard to imitate.
        """
        delta = self.goal_pos - self.pos
        dist = float(np.linalg.norm(delta))
        step = min(self.speed, np.sqrt(2.0 * self.accel * dist)) * dt
        self.pos = self.goal_pos.copy() if dist <= step + 1e-5 else self.pos + delta * (step / dist)
        rot = np.empty(3)
        mujoco.mju_subQuat(rot, self.goal_quat, self.quat)
        angle = float(np.linalg.norm(rot))
        turn = min(self.turn_rate, np.sqrt(2.0 * self.angular_accel * angle)) * dt
        if angle <= turn + 1e-4:
            self.quat = self.goal_quat.copy()
        else:
            mujoco.mju_quatIntegrate(self.quat, rot / angle, turn)
        return max(dist - step, 0.0) + max(angle - turn, 0.0)


class TransferCubeExpert:
    """Pick with the right gripper from above, carry to a meeting point, hand over to the left gripper, release.

    Acts on observations only (agent_pos, environment_state). Phases advance on observed events (gripper reached
    the goal, fingers closed on the cube), not on a clock, and fall back to an earlier phase when the cube is lost,
    so noise, action delay and changed gains (domain randomization) are tolerated. Each phase sets a goal pose per
    gripper; a speed-limited target moves towards it and IK converts the target into the joint command.
    """

    meet = np.array([0.0, 0.0, 0.22])  # cube centre during the hand-over (ACT's meeting point, our frame)
    hover = 0.09  # metres above the cube before descending
    left_standoff = 0.12  # metres the left gripper waits short of the cube before moving in
    close_time = 0.4  # seconds the fingers get to close before the grasp is checked
    release_time = 0.35
    filter_gain = 0.4  # weight of a new reading in the low-pass filters
    cube_deadband = 0.003  # metres the filtered cube must move before goals follow it
    cube_turn_deadband = 0.03  # radians, likewise for its orientation

    def __init__(self, env) -> None:
        task = env.unwrapped
        self.model = task.model
        self.dt = 1.0 / float(task.control_hz)
        self.scratch = mujoco.MjData(self.model)
        self.ik = {side: ArmIK(self.model, self.scratch, side) for side in SIDES}
        cube_geom = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_GEOM, "cube")
        self.cube_width = 2.0 * float(self.model.geom_size[cube_geom, 0])
        self.reset()

    def reset(self) -> None:
        self.phase = "start"
        self.phase_steps = 0
        self.q_cmd: dict[str, np.ndarray] = {}
        self.grip: dict[str, float] = {}
        self.movers: dict[str, _Mover] = {}
        self.cube_pos: np.ndarray | None = None
        self.opening: dict[str, float] = {}
        self.q_meas: dict[str, np.ndarray] = {}
        self.retries = 0

    # ------------------------------------------------------------------ observation handling
    def _observe(self, obs: dict) -> None:
        if "agent_pos" not in obs or "environment_state" not in obs:
            raise ValueError(
                f"TransferCubeExpert needs a state observation with 'agent_pos' and 'environment_state', got keys "
                f"{sorted(obs)} (use obs_mode='state' or 'state_pixels')"
            )
        q = np.asarray(obs["agent_pos"], dtype=np.float64)
        state = np.asarray(obs["environment_state"], dtype=np.float64)
        if q.shape != (14,) or state.shape != (7,) or not (np.isfinite(q).all() and np.isfinite(state).all()):
            raise ValueError(
                f"TransferCubeExpert expects one unbatched observation: finite agent_pos (14,) and environment_state "
                f"(7,), got shapes {q.shape} and {state.shape}"
            )
        first = self.cube_pos is None
        # Light low-pass filters on the noisy readings (observation noise under randomization); the lag they add
        # only matters for moving things, and goals are taken from the cube when it is (nearly) still.
        a = 1.0 if first else self.filter_gain
        for side, arm, opening in (("left", q[:6], q[6]), ("right", q[7:13], q[13])):
            self.q_meas[side] = arm.copy() if first else (1 - a) * self.q_meas[side] + a * arm
            self.opening[side] = opening if first else (1 - a) * self.opening[side] + a * opening
        self.cube_raw = state[:3]
        self.cube_filt = self.cube_raw.copy() if first else (1 - a) * self.cube_filt + a * self.cube_raw
        # Goals follow the cube only when it has moved by more than the noise, so a target can be "arrived" at.
        if first or np.linalg.norm(self.cube_filt - self.cube_pos) > self.cube_deadband:
            self.cube_pos = self.cube_filt.copy()
        quat = state[3:7]
        if not first:
            sign = 1.0 if quat @ self.cube_quat_filt >= 0 else -1.0  # q and -q are the same rotation
            quat = (1 - a) * self.cube_quat_filt + a * sign * quat
        self.cube_quat_filt = quat / np.linalg.norm(quat)
        rot = np.empty(3)
        if not first:
            mujoco.mju_subQuat(rot, self.cube_quat_filt, self.cube_quat)
        if first or np.linalg.norm(rot) > self.cube_turn_deadband:
            self.cube_quat = self.cube_quat_filt.copy()
            mat = np.empty(9)
            mujoco.mju_quat2Mat(mat, self.cube_quat)
            self.cube_mat = mat.reshape(3, 3)

    def _cube_axis(self, direction: np.ndarray) -> np.ndarray:
        """The cube face normal closest to `direction` (a world vector), signed to point along it."""
        dots = self.cube_mat.T @ direction
        i = int(np.argmax(np.abs(dots)))
        return self.cube_mat[:, i] * np.sign(dots[i])

    def _grasp_frame(self, side: str, approach: np.ndarray, finger_hint: np.ndarray) -> np.ndarray:
        """Gripper frame approaching along `approach` with the fingers on the cube faces normal to `finger_hint`;
        of the two symmetric choices the one nearer the current gripper roll is taken (less wrist rotation)."""
        fingers = self._cube_axis(finger_hint)
        current_y = self.ik[side].forward(self.q_cmd[side])[1][:, 1]
        if fingers @ current_y < 0:
            fingers = -fingers
        return _frame(approach, fingers)

    def _holding(self, side: str) -> bool:
        return 0.6 * self.cube_width < self.opening[side] < self.cube_width + 0.012

    def _measured_site(self, side: str) -> np.ndarray:
        """Grasp-site position from the (filtered) measured joints: where the gripper really is."""
        return self.ik[side].forward(self.q_meas[side])[0]

    # ------------------------------------------------------------------ phases
    def _set_phase(self, phase: str) -> None:
        self.phase, self.phase_steps = phase, 0

    def _restart(self) -> None:
        """The cube was missed or dropped: open the right gripper and pick it up again from wherever it lies."""
        self.grip["right"] = OPEN
        self.retries += 1
        self._set_phase("approach")

    def _plan(self, arrived: dict[str, bool]) -> None:
        """Set each gripper's goal and opening for the current phase; advance phases on observed events."""
        left, right = self.movers["left"], self.movers["right"]
        t = self.phase_steps * self.dt
        phase = self.phase

        if phase == "approach":  # right gripper above the cube, left gripper to its waiting pose
            pick = self._grasp_frame("right", self._cube_axis(DOWN), np.array([0.0, 1.0, 0.0]))
            right.set_goal(self.cube_pos - self.hover * pick[:, 0], pick, speed=0.5)
            self._left_wait()
            if arrived["right"] and self._near("right", 0.01):
                self._set_phase("descend")
        elif phase == "descend":
            pick = self._grasp_frame("right", self._cube_axis(DOWN), np.array([0.0, 1.0, 0.0]))
            right.set_goal(self.cube_pos, pick, speed=0.15)
            if (arrived["right"] and self._near("right", 0.006)) or t > 2.0:
                self._set_phase("close")
        elif phase == "close":
            self.grip["right"] = CLOSED
            if t >= self.close_time:
                if self._holding("right"):
                    self._set_phase("lift")
                else:
                    self._restart()
        elif phase == "lift":  # carry to the meeting point, keeping the pick orientation
            right.set_goal(self.meet, right.goal_mat(), speed=0.3)
            self._left_wait()
            if self._lost("right") or not self._holding("right"):
                self._restart()
            elif arrived["right"] and self._near("right", 0.01):
                self._set_phase("handover")
        elif phase == "handover":  # left gripper moves in around the held cube, fingers on its top and bottom
            self.grip["left"] = OPEN
            grasp = self._grasp_frame("left", self._cube_axis(FORWARD), np.array([0.0, 0.0, 1.0]))
            left.set_goal(self.cube_pos, grasp, speed=0.15)
            if self._lost("right"):
                self._restart()
            elif (arrived["left"] and self._near("left", 0.006)) or t > 2.5:
                self._set_phase("left_close")
        elif phase == "left_close":
            self.grip["left"] = CLOSED
            if t >= self.close_time:
                self._set_phase("release" if self._holding("left") else "handover")
        elif phase == "release":
            self.grip["right"] = OPEN
            if t >= self.release_time:
                self._set_phase("retreat")
        elif phase == "retreat":  # right gripper backs off upwards and away; the left keeps the cube
            right.set_goal(self.meet + np.array([0.12, 0.0, 0.12]), right.goal_mat(), speed=0.3)
            if arrived["right"]:
                self._set_phase("done")
        if phase in ("release", "retreat", "done") and self._lost("left"):
            self._restart()  # the hand-over failed and the cube fell

    def _left_wait(self) -> None:
        """Left gripper open, level, fingers vertical, a stand-off short of the meeting point."""
        self.grip["left"] = OPEN
        current_y = self.ik["left"].forward(self.q_cmd["left"])[1][:, 1]
        grasp = _frame(FORWARD, np.array([0.0, 0.0, 1.0 if current_y[2] >= 0 else -1.0]))
        self.movers["left"].set_goal(self.meet - self.left_standoff * FORWARD, grasp, speed=0.3)

    def _lost(self, side: str) -> bool:
        return float(np.linalg.norm(self.cube_raw - self._measured_site(side))) > 0.04

    def _near(self, side: str, tol: float) -> bool:
        return float(np.linalg.norm(self._measured_site(side) - self.movers[side].goal_pos)) < tol

    # ------------------------------------------------------------------ policy call
    def __call__(self, observation: dict) -> np.ndarray:
        self._observe(observation)
        if self.phase == "start":
            for side in SIDES:
                self.q_cmd[side] = self.q_meas[side].copy()
                pos, mat = self.ik[side].forward(self.q_cmd[side])
                self.movers[side] = _Mover(pos, _quat(mat))
                self.grip[side] = OPEN
            self._set_phase("approach")
            self.remaining = {side: np.inf for side in SIDES}
        phase = self.phase
        self._plan({side: self.remaining[side] < 1e-3 for side in SIDES})
        action = np.empty(14, dtype=np.float32)
        for i, side in enumerate(SIDES):
            mover = self.movers[side]
            self.remaining[side] = mover.advance(self.dt)
            self.q_cmd[side] = self.ik[side].solve(self.q_cmd[side], mover.pos, mover.quat)
            action[7 * i : 7 * i + 6] = self.q_cmd[side]
            action[7 * i + 6] = self.grip[side]
        if self.phase != phase:
            # The new phase sets its goals on the next call, so distances measured now say nothing about them.
            self.remaining = {side: np.inf for side in SIDES}
        self.phase_steps += 1
        return action
