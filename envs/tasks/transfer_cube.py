"""TransferCube: the right arm of a bimanual ViperX rig picks a cube and hands it over to the left arm (ACT's task)."""

from __future__ import annotations

import mujoco
import numpy as np

from envs.assets import aloha
from envs.base import MujocoTaskEnv

SIDES = ("left", "right")
# Arm bases face each other across the table, as on ALOHA (0.938 m apart).
BASE_X = 0.469
CUBE_HALF = 0.02
CUBE_MASS = 0.06
# Cube spawn region in front of the right arm (gym-aloha's sample_box_pose, shifted so the arms sit on y = 0).
CUBE_X_RANGE = (0.0, 0.2)
CUBE_Y_RANGE = (-0.1, 0.1)
# Ready pose of each arm (ALOHA's start pose): joints in radians, gripper opening in metres.
HOME_ARM = (0.0, -0.96, 1.16, 0.0, -0.3, 0.0)
HOME_OPENING = 0.045

_SCENE = """
<mujoco model="transfer_cube">
  <compiler angle="radian" autolimits="true"/>
  <option cone="elliptic" impratio="10"/>
  <visual>
    <global offwidth="640" offheight="480"/>
    <quality shadowsize="2048"/>
    <headlight ambient="0.35 0.35 0.35" diffuse="0.5 0.5 0.5" specular="0.1 0.1 0.1"/>
  </visual>
  <asset>
    <texture name="sky" type="skybox" builtin="gradient" rgb1="0.55 0.7 0.85" rgb2="0.1 0.12 0.16" width="256"
             height="256"/>
    <texture name="floor" type="2d" builtin="checker" rgb1="0.3 0.32 0.34" rgb2="0.22 0.24 0.26" width="256"
             height="256"/>
    <material name="floor" texture="floor" texrepeat="8 8"/>
    <texture name="table" type="2d" builtin="flat" mark="random" random="0.02" rgb1="0.62 0.5 0.36"
             markrgb="0.5 0.4 0.28" width="256" height="256"/>
    <material name="table" texture="table" texrepeat="2 2"/>
  </asset>
  <default>
    {arm_defaults}
  </default>
  <worldbody>
    <light name="key" pos="0 -0.5 1.6" dir="0 0.3 -1" diffuse="0.6 0.6 0.6" specular="0.2 0.2 0.2" castshadow="true"/>
    <light name="fill" pos="0 0.8 1.2" dir="0 -0.5 -1" diffuse="0.3 0.3 0.3" castshadow="false"/>
    <geom name="floor" type="plane" pos="0 0 -0.75" size="3 3 0.1" material="floor" contype="{obj_type}"
          conaffinity="{obj_aff}"/>
    <geom name="table" type="box" pos="0 0 -0.02" size="0.65 0.4 0.02" material="table" contype="{obj_type}"
          conaffinity="{obj_aff}" friction="0.8 0.005 0.0001"/>
    <geom name="table_leg" type="box" pos="0 0 -0.39" size="0.55 0.3 0.35" rgba="0.25 0.2 0.15 1" contype="0"
          conaffinity="0"/>
    <camera name="top" pos="0 0 0.95" xyaxes="1 0 0 0 1 0" fovy="68"/>
    <camera name="angle" pos="0 -0.8 0.75" xyaxes="1 0 0 0 0.619 0.786" fovy="60"/>
    <camera name="front" pos="0 -1.05 0.32" xyaxes="1 0 0 0 0.196 0.981" fovy="55"/>
    {left_arm}
    {right_arm}
    <body name="cube" pos="0.1 0 {cube_half}">
      <freejoint name="cube"/>
      <geom name="cube" type="box" size="{cube_half} {cube_half} {cube_half}" mass="{cube_mass}" rgba="0.85 0.1 0.1 1"
            contype="{obj_type}" conaffinity="{obj_aff}" condim="4" friction="1 0.01 0.0002" solref="0.004 1"/>
    </body>
  </worldbody>
  {left_tendon}
  {right_tendon}
  <actuator>
      {left_act}
      {right_act}
  </actuator>
  <sensor>
    <!-- "found" counts the cube's contacts with each part; read as one slice of sensordata per step. -->
    <contact name="cube_left_finger_a" geom1="cube" geom2="left/finger_a" data="found"/>
    <contact name="cube_left_finger_b" geom1="cube" geom2="left/finger_b" data="found"/>
    <contact name="cube_right_arm" geom1="cube" subtree2="right/base" data="found"/>
    <contact name="cube_table" geom1="cube" geom2="table" data="found"/>
  </sensor>
</mujoco>
"""


class TransferCubeEnv(MujocoTaskEnv):
    """Bimanual cube hand-over (ACT's sim TransferCube): the right arm picks, the left arm must end up holding it.

    Action (14, float32, absolute position targets at `control_hz`, default 50 Hz; out-of-range values are clipped):
      [left waist, shoulder, elbow, forearm_roll, wrist_angle, wrist_rotate (rad), left gripper opening (m),
       right ... same 7].  The gripper opening is the gap between the finger pads, 0.004..0.074 m.
    agent_pos (14): the same quantities measured.
    environment_state (7): cube position (m) and orientation quaternion (w, x, y, z) in the world frame: table top at
    z = 0, arm bases at x = -0.469 (left) and +0.469 (right), y = 0; cameras "top", "angle", "front", "left_wrist",
    "right_wrist".

    Reward: gym-aloha's stages, unnormalised, 0..4 per step: 1 the right arm (its gripper) touches the cube, 2 ... and
    the cube is off the table, 3 a left finger touches the cube, 4 success. Success: both left fingers touch the
    cube, no part of the right arm does, and the cube does not touch the table. Contacts are read from MuJoCo contact
    sensors, i.e. those of the last physics substep of the control step.

    The cube spawns with random x, y in front of the right arm and no rotation, like gym-aloha; the expert also
    copes with a rotated cube.
    """

    default_control_hz = 50.0
    default_max_episode_steps = 400
    environment_state_names = ("cube_x", "cube_y", "cube_z", "cube_qw", "cube_qx", "cube_qy", "cube_qz")
    environment_state_units = ("m", "m", "m") + ("quaternion",) * 4
    default_cameras = ("top",)
    render_camera = "angle"
    randomized_object_bodies = ("cube",)
    size_randomized_bodies = ("cube",)
    max_stage = 4  # the reward at success (gym-aloha's max_reward), for users who normalise returns

    def build_mjcf(self) -> str:
        return _SCENE.format(
            arm_defaults=aloha.arm_defaults(),
            left_arm=aloha.arm_body("left", (-BASE_X, 0.0, 0.0), "1 0 0 0"),
            right_arm=aloha.arm_body("right", (BASE_X, 0.0, 0.0), "0 0 0 1"),
            left_tendon=aloha.arm_tendon_equality("left"),
            right_tendon=aloha.arm_tendon_equality("right"),
            left_act=aloha.arm_actuators("left"),
            right_act=aloha.arm_actuators("right"),
            obj_type=aloha.OBJECT_CONTYPE,
            obj_aff=aloha.OBJECT_CONAFFINITY,
            cube_half=CUBE_HALF,
            cube_mass=CUBE_MASS,
        )

    def setup(self) -> None:
        m = self.model

        def qadr(name: str) -> int:
            return int(m.jnt_qposadr[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, name)])

        self.joint_names = [f"{side}/{j}" for side in SIDES for j in (*aloha.ARM_JOINTS, "gripper")]
        self.action_units = (["rad"] * 6 + ["m"]) * 2
        # agent_pos gathers the arm joints from qpos and adds finger_b to finger_a for each gripper opening: two
        # gathers and an add, rather than a (14 x nq) matmul whose BLAS dispatch dominated the step's overhead.
        readout, finger_b = [], []
        for name in self.joint_names:
            side, joint = name.split("/")
            readout.append(qadr(f"{side}/finger_a") if joint == "gripper" else qadr(name))
            if joint == "gripper":
                finger_b.append(qadr(f"{side}/finger_b"))
        self._readout_qadr = np.array(readout)
        self._gripper_rows = np.array([i for i, n in enumerate(self.joint_names) if n.endswith("/gripper")])
        self._finger_b_qadr = np.array(finger_b)
        self._arm_qadr = np.array([qadr(f"{s}/{j}") for s in SIDES for j in aloha.ARM_JOINTS])
        self._finger_qadr = np.array([qadr(f"{s}/{f}") for s in SIDES for f in ("finger_a", "finger_b")])
        self._cube_qadr = qadr("cube")
        self._cube_geom = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_GEOM, "cube")
        cube_joint = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, "cube")
        self._robot_dofs = np.flatnonzero(m.dof_jntid != cube_joint)
        # Persistent views into MjData (its buffers are never reallocated), so per-step reads cost no lookups.
        self._qpos = self.data.qpos
        self._cube_pose = self.data.qpos[self._cube_qadr : self._cube_qadr + 7]
        self._contacts = self.data.sensordata[:4]

    def robot_dofs(self) -> np.ndarray:
        return self._robot_dofs

    def max_object_size_scale(self) -> tuple[float, str]:
        # The unrotated cube spawns up to CUBE_X_RANGE[1] towards the right arm and CUBE_Y_RANGE to the sides: it must
        # clear the right arm's base box and stay on the table.
        m, d = self.model, self.data
        mujoco.mj_kinematics(m, d)
        base = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_GEOM, "right/base")
        table = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_GEOM, "table")
        base_near_x = float(d.geom_xpos[base, 0] - np.abs(d.geom_xmat[base].reshape(3, 3)[0]) @ m.geom_size[base])
        table_half_y = float(m.geom_size[table, 1])
        half = float(m.geom_size[self._cube_geom, 0])
        room = min(base_near_x - CUBE_X_RANGE[1], table_half_y - max(abs(v) for v in CUBE_Y_RANGE))
        return room / half, (
            f"the cube (half size {half} m at scale 1) spawns up to x = {CUBE_X_RANGE[1]} m and |y| = "
            f"{max(abs(v) for v in CUBE_Y_RANGE)} m and must clear the right arm's base (x >= {base_near_x:.3f} m) "
            f"and stay on the table (|y| <= {table_half_y} m)"
        )

    def home_action(self) -> np.ndarray:
        return np.array((*HOME_ARM, HOME_OPENING) * 2)

    def sample_initial_state(self, rng: np.random.Generator) -> None:
        d = self.data
        home = self.home_action()
        d.qpos[self._arm_qadr] = np.concatenate([home[:6], home[7:13]])
        d.qpos[self._finger_qadr] = HOME_OPENING / 2
        d.ctrl[:] = home
        half = float(self.model.geom_size[self._cube_geom, 2])  # current size (domain randomization may scale it)
        x, y = rng.uniform(CUBE_X_RANGE[0], CUBE_X_RANGE[1]), rng.uniform(CUBE_Y_RANGE[0], CUBE_Y_RANGE[1])
        self._cube_pose[:] = (x, y, half, 1.0, 0.0, 0.0, 0.0)

    def agent_pos(self) -> np.ndarray:
        qpos = self._qpos
        out = qpos[self._readout_qadr]
        out[self._gripper_rows] += qpos[self._finger_b_qadr]
        return out

    def environment_state(self) -> np.ndarray:
        return self._cube_pose

    def stage(self) -> int:
        """gym-aloha's reward stage 0..4 from the cube's contact counts (sensors evaluated inside mj_step)."""
        left_a, left_b, right, table = self._contacts.tolist()
        if left_a and left_b and not right and not table:
            return 4
        if left_a or left_b:
            return 3
        if right:
            return 1 if table else 2
        return 0

    def compute_reward(self) -> float:
        return float(self.stage())

    def is_success(self) -> bool:
        left_a, left_b, right, table = self._contacts.tolist()
        return bool(left_a and left_b and not right and not table)

    def reward_and_success(self) -> tuple[float, bool]:
        stage = self.stage()
        return float(stage), stage == 4
