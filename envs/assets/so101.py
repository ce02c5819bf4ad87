"""MJCF builder for an SO-101-like arm (5 joints + hinge-jaw gripper) on a table, from primitive geoms."""

from __future__ import annotations

import numpy as np

# Kinematics follow TheRobotStudio SO-101 ("new calibration": 0 rad is the middle of each joint's range), with the
# joint axes and signs of the public description so joint angles mean the same thing as on the real arm:
#   shoulder_pan  positive turns the arm clockwise seen from above;
#   shoulder_lift, elbow_flex, wrist_flex  positive pitches the distal links forward/down;
#   gripper  0 ~ jaws closed, positive opens the moving jaw (rad of the jaw joint, like the real STS3215 servo).
# Joint anchors below are in the world frame at the zero pose, relative to the shoulder_pan axis on the table.
JOINT_NAMES = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper")
ARM_JOINTS = JOINT_NAMES[:5]
JOINT_RANGES = np.array(
    [
        [-1.9199, 1.9199],  # shoulder_pan  (+-110 deg)
        [-1.7453, 1.7453],  # shoulder_lift (+-100 deg)
        [-1.69, 1.69],  # elbow_flex    (+-97 deg)
        [-1.6581, 1.6581],  # wrist_flex    (+-95 deg)
        [-2.7438, 2.8412],  # wrist_roll    (-157 .. +163 deg)
        [-0.1745, 1.7453],  # gripper       (-10 .. +100 deg)
    ]
)
ACTION_UNITS = ["rad"] * 6

SHOULDER_LIFT_ANCHOR = np.array([0.0304, -0.0183, 0.1166])
UPPER_ARM = np.array([0.0280, 0.0, 0.1126])  # shoulder_lift -> elbow_flex (~0.116 m)
FOREARM = np.array([0.1349, 0.0, 0.0052])  # elbow_flex -> wrist_flex (~0.135 m)
WRIST = np.array([0.0611, 0.0181, 0.0])  # wrist_flex -> wrist_roll (puts the gripper back on the pan plane)
TCP_DEPTH = 0.095  # wrist_roll -> grasp centre along the approach axis

# Gripper frame: z = approach (out of the fingers), x = closing direction of the moving jaw, y = jaw hinge axis.
FIXED_JAW_FACE_X = -0.019  # inner face of the fixed jaw: 4 mm clearance from a centred 3 cm cube
JAW_HINGE = np.array([0.030, 0.0, 0.036])
JAW_PAD_HALF = np.array([0.003, 0.011, 0.016])
# Jaw angle at which the pad closes on the nominal 3 cm cube pushed against the fixed jaw; the pad is tilted so that
# it is parallel to the fixed jaw there (flat-on-flat contact holds a cube far better than an edge).
JAW_GRASP_ANGLE = 0.35
GRIPPER_OPEN = 0.9  # wide enough for the cube with margin; the full range opens to ~10 cm
GRIPPER_CLOSED = -0.1745  # command that squeezes: the servo pushes until the jaw meets something

# Servo model (STS3215 in position mode): stiff P with velocity damping, torque-limited. Tuned for 2 ms steps.
ARM_KP, ARM_KV, ARM_TORQUE = 60.0, 2.5, 3.0
JAW_KP, JAW_KV, JAW_TORQUE = 8.0, 0.8, 0.6
ARMATURE, DAMPING = 0.028, 0.6

# A ready pose with the gripper above the workspace, pointing down.
HOME_QPOS = np.array([0.0, -0.9, 0.75, 1.5, 0.0, 0.0])

# Collision bits: robot links collide with the world (table, objects) but not with each other.
ROBOT_CONTYPE, ROBOT_CONAFFINITY = 2, 1
WORLD_CONTYPE, WORLD_CONAFFINITY = 1, 2
OBJECT_CONTYPE, OBJECT_CONAFFINITY = 1, 3

TCP_SITE = "tcp"
FIXED_JAW_GEOMS = ("fixed_jaw",)
MOVING_JAW_GEOMS = ("moving_jaw_stem", "moving_jaw_pad")


def _fmt(values) -> str:
    return " ".join(f"{float(v):.6g}" for v in np.ravel(values))


def _rot_y(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def look_at_xyaxes(pos, target, up=(0.0, 0.0, 1.0)) -> str:
    """MJCF `xyaxes` of a camera at `pos` looking at `target` (MuJoCo cameras look along their -z)."""
    pos, target, up = (np.asarray(v, dtype=float) for v in (pos, target, up))
    forward = target - pos
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, up)
    right /= np.linalg.norm(right)
    return _fmt(np.concatenate([right, np.cross(right, forward)]))


def _moving_jaw_geoms() -> tuple[str, str]:
    """Pad and stem of the moving jaw in the jaw frame (hinge at the origin, q = 0)."""
    pad_center_grasp = np.array([FIXED_JAW_FACE_X + 0.030 + JAW_PAD_HALF[0], 0.0, TCP_DEPTH])
    back = _rot_y(-JAW_GRASP_ANGLE)
    pad_center = back @ (pad_center_grasp - JAW_HINGE)
    # The pad's local z is tilted by -JAW_GRASP_ANGLE so that at the grasp angle it lines up with the fixed jaw.
    pad_axes = back  # columns: pad x, y, z in the jaw frame
    pad_top_outer = pad_center + pad_axes @ np.array([JAW_PAD_HALF[0], 0.0, -JAW_PAD_HALF[2]])
    pad = (
        f'<geom name="moving_jaw_pad" class="finger" type="box" size="{_fmt(JAW_PAD_HALF)}" '
        f'pos="{_fmt(pad_center)}" xyaxes="{_fmt(np.concatenate([pad_axes[:, 0], pad_axes[:, 1]]))}"/>'
    )
    stem = (
        f'<geom name="moving_jaw_stem" class="link" type="capsule" size="0.004" '
        f'fromto="0 0 0 {_fmt(pad_top_outer)}" rgba="0.1 0.1 0.1 1"/>'
    )
    return stem, pad


def so101_defaults() -> str:
    """<default> classes used by the arm (place inside the model's <default>)."""
    return f"""
    <default class="so101">
      <joint damping="{DAMPING}" armature="{ARMATURE}" limited="true"/>
      <position kp="{ARM_KP}" kv="{ARM_KV}" forcerange="-{ARM_TORQUE} {ARM_TORQUE}" ctrllimited="true"/>
      <default class="link">
        <geom contype="{ROBOT_CONTYPE}" conaffinity="{ROBOT_CONAFFINITY}" rgba="1 0.82 0.12 1" group="0"/>
      </default>
      <default class="servo">
        <geom type="box" contype="0" conaffinity="0" rgba="0.1 0.1 0.1 1" group="0"/>
      </default>
      <default class="finger">
        <geom contype="{ROBOT_CONTYPE}" conaffinity="{ROBOT_CONAFFINITY}" rgba="0.95 0.75 0.1 1"
              friction="1.5 0.02 0.001" condim="4" solref="0.004 1" solimp="0.95 0.99 0.001"/>
      </default>
    </default>"""


def so101_body(prefix: str = "", pos=(0.0, 0.0, 0.0)) -> str:
    """The arm's body tree (base fixed to the world at `pos`), with a wrist camera and the `tcp` site."""
    stem, pad = _moving_jaw_geoms()
    r = JOINT_RANGES
    p = prefix
    fixed_jaw_half = np.array([0.004, 0.011, 0.037])
    fixed_jaw_pos = np.array([FIXED_JAW_FACE_X - fixed_jaw_half[0], 0.0, TCP_DEPTH + 0.014 - fixed_jaw_half[2]])
    return f"""
    <body name="{p}base" pos="{_fmt(pos)}" childclass="so101">
      <geom name="{p}base" class="link" type="cylinder" size="0.045 0.03" pos="0 0 0.03"/>
      <body name="{p}shoulder" pos="0 0 0.06">
        <joint name="{p}shoulder_pan" axis="0 0 -1" range="{_fmt(r[0])}"/>
        <inertial pos="0 0 0.03" mass="0.100" diaginertia="8e-5 8e-5 3e-5"/>
        <geom class="servo" size="0.02 0.024 0.03" pos="0 0 0.02"/>
        <geom name="{p}shoulder_bracket" class="link" type="box" size="0.022 0.008 0.03"
              pos="{_fmt([SHOULDER_LIFT_ANCHOR[0], SHOULDER_LIFT_ANCHOR[1] + 0.024, 0.046])}"/>
        <body name="{p}upper_arm" pos="{_fmt(SHOULDER_LIFT_ANCHOR - [0, 0, 0.06])}">
          <joint name="{p}shoulder_lift" axis="0 1 0" range="{_fmt(r[1])}"/>
          <inertial pos="{_fmt(UPPER_ARM * 0.5)}" mass="0.103" diaginertia="1.5e-4 1.5e-4 4e-5"/>
          <geom name="{p}upper_arm" class="link" type="capsule" size="0.016" fromto="0 0 0 {_fmt(UPPER_ARM)}"/>
          <geom class="servo" size="0.012 0.02 0.024" pos="{_fmt(UPPER_ARM)}" euler="0 0.24 0"/>
          <body name="{p}lower_arm" pos="{_fmt(UPPER_ARM)}">
            <joint name="{p}elbow_flex" axis="0 1 0" range="{_fmt(r[2])}"/>
            <inertial pos="{_fmt(FOREARM * 0.6)}" mass="0.104" diaginertia="3e-5 1.6e-4 1.5e-4"/>
            <geom name="{p}lower_arm" class="link" type="capsule" size="0.014" fromto="0.012 0 0 {_fmt(FOREARM)}"/>
            <geom class="servo" size="0.024 0.02 0.012" pos="{_fmt(FOREARM - [0.02, 0, 0])}"/>
            <body name="{p}wrist" pos="{_fmt(FOREARM)}">
              <joint name="{p}wrist_flex" axis="0 1 0" range="{_fmt(r[3])}"/>
              <inertial pos="{_fmt(WRIST * 0.5)}" mass="0.079" diaginertia="3.7e-5 2.5e-5 2.1e-5"/>
              <geom name="{p}wrist" class="link" type="box" size="0.03 0.012 0.016"
                    pos="{_fmt([0.033, WRIST[1] * 0.5, 0])}"/>
              <body name="{p}gripper" pos="{_fmt(WRIST)}" xyaxes="0 0 1 0 -1 0">
                <joint name="{p}wrist_roll" axis="0 0 -1" range="{_fmt(r[4])}"/>
                <inertial pos="0 0 0.035" mass="0.087" diaginertia="4e-5 4e-5 2e-5"/>
                <geom name="{p}gripper_housing" class="link" type="box" size="0.02 0.016 0.02" pos="0.004 0 0.022"/>
                <geom name="{p}{FIXED_JAW_GEOMS[0]}" class="finger" type="box" size="{_fmt(fixed_jaw_half)}"
                      pos="{_fmt(fixed_jaw_pos)}"/>
                <site name="{p}{TCP_SITE}" pos="0 0 {TCP_DEPTH}" size="0.005" group="4" rgba="0 1 0 1"/>
                <camera name="{p}wrist" pos="0 0.04 0.015" xyaxes="1 0 0 0 -0.95 -0.3" fovy="75"/>
                <body name="{p}moving_jaw" pos="{_fmt(JAW_HINGE)}">
                  <joint name="{p}gripper" axis="0 1 0" range="{_fmt(r[5])}" damping="0.05"/>
                  <inertial pos="-0.01 0 0.03" mass="0.012" diaginertia="6.6e-6 5.3e-6 1.9e-6"/>
                  {stem}
                  {pad}
                </body>
              </body>
            </body>
          </body>
        </body>
      </body>
    </body>"""


def so101_actuators(prefix: str = "") -> str:
    """Position servos on every joint; control ranges are the joint limits."""
    lines = []
    for name, (low, high) in zip(JOINT_NAMES, JOINT_RANGES):
        gains = "" if name != "gripper" else f' kp="{JAW_KP}" kv="{JAW_KV}" forcerange="-{JAW_TORQUE} {JAW_TORQUE}"'
        lines.append(
            f'<position name="{prefix}{name}" class="so101" joint="{prefix}{name}" '
            f'ctrlrange="{low:.6g} {high:.6g}"{gains}/>'
        )
    return "\n    ".join(lines)


def scene_xml(
    *,
    model_name: str,
    worldbody_extra: str = "",
    assets_extra: str = "",
    defaults_extra: str = "",
    robot: bool = True,
) -> str:
    """A whole scene: table, lights, `top` and `front` cameras, the SO-101 arm (with `wrist` camera) and extras."""
    robot_body = so101_body() if robot else ""
    actuators = f"<actuator>\n    {so101_actuators()}\n  </actuator>" if robot else ""
    front = look_at_xyaxes((0.5, 0.0, 0.3), (0.15, 0.0, 0.07))
    return f"""<mujoco model="{model_name}">
  <compiler angle="radian" autolimits="true"/>
  <option timestep="0.002" integrator="implicitfast" cone="elliptic" impratio="10"/>
  <visual>
    <global offwidth="640" offheight="480"/>
    <quality shadowsize="1024"/>
    <headlight ambient="0.35 0.35 0.35" diffuse="0.5 0.5 0.5" specular="0.1 0.1 0.1"/>
  </visual>
  <asset>
    <texture name="sky" type="skybox" builtin="gradient" rgb1="0.55 0.7 0.9" rgb2="0.2 0.25 0.35"
             width="64" height="64"/>
    <texture name="table" type="2d" builtin="checker" rgb1="0.62 0.5 0.38" rgb2="0.56 0.45 0.34"
             width="64" height="64"/>
    <material name="table" texture="table" texrepeat="8 8" reflectance="0.05"/>
    {assets_extra}
  </asset>
  <default>
    {so101_defaults()}
    {defaults_extra}
  </default>
  <worldbody>
    <light name="key" pos="0.3 -0.4 1.2" dir="-0.2 0.35 -1" diffuse="0.6 0.6 0.6" castshadow="true"/>
    <light name="fill" pos="-0.4 0.5 1.0" dir="0.4 -0.4 -1" diffuse="0.25 0.25 0.25" castshadow="false"/>
    <geom name="table" type="plane" size="0.8 0.8 0.02" pos="0.15 0 0" material="table"
          contype="{WORLD_CONTYPE}" conaffinity="{WORLD_CONAFFINITY}"/>
    <camera name="top" pos="0.17 0 0.6" xyaxes="0 -1 0 1 0 0" fovy="45"/>
    <camera name="front" pos="0.5 0 0.3" xyaxes="{front}" fovy="55"/>
    {robot_body}
    {worldbody_extra}
  </worldbody>
  {actuators}
</mujoco>
"""
