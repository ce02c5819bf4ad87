"""MJCF builder for a bimanual ALOHA-style rig: two ViperX-300-6DOF-like arms with parallel grippers, primitive geoms.

Kinematics follow the public ViperX 300 6DOF specification (Trossen/Interbotix): joint offsets between consecutive
axes and joint ranges are the published figures, link masses approximate them; the shapes are our own boxes,
capsules and cylinders.

Frames: each arm's base frame has x pointing forward (towards the other arm), z up. At zero joint angles the upper
arm points straight up and the forearm straight forward. The gripper frame (site `<side>/grasp`, centred between the
finger pads) has x along the approach direction, y along the finger travel, z = x cross y.

Gripper: two coupled slide fingers (equality constraint, like the rack-and-pinion of the real gripper) driven by one
position servo on a fixed tendon whose length is the gap between the finger pads, so the gripper is commanded and
measured as the opening in metres.

Servos: MuJoCo position actuators with joint damping. Moving links are gravity compensated (body gravcomp), which
stands in for the integral action of the real servos' position loops: a commanded pose is reached without sag.
"""

from __future__ import annotations

from dataclasses import dataclass

# Distances between consecutive joint axes (metres), ViperX 300 6DOF public spec.
BASE_TO_WAIST = 0.079
WAIST_TO_SHOULDER = 0.04805
SHOULDER_TO_ELBOW = (0.05955, 0.3)  # (forward, up): the upper arm has a small forward offset at the elbow
ELBOW_TO_FOREARM_ROLL = 0.2
FOREARM_ROLL_TO_WRIST = 0.1
WRIST_TO_WRIST_ROTATE = 0.069744

# Gripper geometry in the gripper frame (metres), our own design sized like the ViperX gripper.
FINGER_ROOT_X = 0.085  # where the fingers ride on the rail
FINGER_LENGTH = 0.075
FINGER_THICKNESS = 0.01  # along the travel axis
FINGER_WIDTH = 0.022  # across the travel axis
GRASP_X = FINGER_ROOT_X + FINGER_LENGTH - 0.015  # pad centre: 15 mm behind the fingertips
MAX_OPENING = 0.082  # each finger travels 0..41 mm from the centre of the rail
OPENING_RANGE = (0.004, 0.074)  # commanded opening, like the software limits of the real gripper

ARM_JOINTS = ("waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate")


@dataclass(frozen=True)
class JointSpec:
    axis: str
    range: tuple[float, float]
    kp: float  # servo stiffness, N m / rad
    damping: float  # N m s / rad (implicit in MuJoCo's Euler integrator, so stiff servos stay stable)
    armature: float  # reflected rotor inertia, kg m^2
    force: float  # servo torque limit, N m


# Ranges from the ViperX 300 6DOF spec; servo gains are ours: damping ratios 1.0-1.6 at the ready pose, natural
# frequencies 27-52 rad/s (fast enough to track 50 Hz targets, slow enough to be stable at a 2 ms timestep).
JOINTS: dict[str, JointSpec] = {
    "waist": JointSpec("0 0 1", (-3.14158, 3.14158), 80.0, 8.0, 0.05, 35.0),
    "shoulder": JointSpec("0 1 0", (-1.85005, 1.25664), 400.0, 30.0, 0.1, 144.0),
    "elbow": JointSpec("0 1 0", (-1.76278, 1.6057), 300.0, 20.0, 0.08, 59.0),
    "forearm_roll": JointSpec("1 0 0", (-3.14158, 3.14158), 60.0, 3.0, 0.02, 22.0),
    "wrist_angle": JointSpec("0 1 0", (-1.8675, 2.23402), 60.0, 3.0, 0.02, 35.0),
    "wrist_rotate": JointSpec("1 0 0", (-3.14158, 3.14158), 20.0, 1.0, 0.01, 35.0),
}
GRIPPER_KP = 250.0  # N/m on the pad gap: ~9 N squeeze on a 4 cm cube when commanded closed
GRIPPER_FORCE = 12.0  # N
FINGER_DAMPING = 12.0  # N s/m per finger: damping ratio ~0.8 for the coupled fingers

# Collision bits: arm links (contype 2) touch the table and objects (conaffinity 3) but not each other or the other
# arm: the hand-over puts both grippers around one cube, and link-link contacts would only add solver work.
ARM_CONTYPE, ARM_CONAFFINITY = 2, 0
OBJECT_CONTYPE, OBJECT_CONAFFINITY = 1, 3


def arm_defaults() -> str:
    """<default> classes shared by both arms.

    Finger pads: condim 4 (torsional friction, so a cube held off-centre does not spin) and a stiff contact
    (solref time constant 4 ms = 2 physics steps): with softer contacts a shaken cube creeps along the pads.
    """
    return f"""
    <default class="viperx">
      <joint limited="true"/>
      <geom contype="{ARM_CONTYPE}" conaffinity="{ARM_CONAFFINITY}" rgba="0.12 0.12 0.13 1" condim="3"/>
      <default class="viperx_visual">
        <geom contype="0" conaffinity="0" mass="0" group="1"/>
      </default>
      <default class="viperx_finger">
        <joint type="slide" range="0 {MAX_OPENING / 2}" damping="{FINGER_DAMPING}" armature="0.02"/>
        <geom type="box" condim="4" friction="1.5 0.01 0.0002" solref="0.004 1" solimp="0.95 0.99 0.001"
              rgba="0.55 0.55 0.58 1"/>
      </default>
    </default>"""


def arm_body(side: str, pos: tuple[float, float, float], yaw_quat: str) -> str:
    """One arm as a <body> tree named `<side>/...`, with its base at `pos` and orientation `yaw_quat` (w x y z)."""
    p = f"{side}/"
    j = JOINTS
    ex, ez = SHOULDER_TO_ELBOW

    def joint(name: str) -> str:
        s = j[name]
        return (f'<joint name="{p}{name}" axis="{s.axis}" range="{s.range[0]} {s.range[1]}" '
                f'damping="{s.damping}" armature="{s.armature}"/>')

    fx, ft, fw = FINGER_LENGTH / 2, FINGER_THICKNESS / 2, FINGER_WIDTH / 2
    # Finger geoms sit so that their inner faces are at y = +-q: the pad gap equals the sum of the two slide joints.
    return f"""
    <body name="{p}base" pos="{pos[0]} {pos[1]} {pos[2]}" quat="{yaw_quat}" childclass="viperx">
      <geom name="{p}base" type="box" pos="-0.03 0 0.025" size="0.07 0.06 0.025" mass="0.97"/>
      <body name="{p}shoulder_link" pos="0 0 {BASE_TO_WAIST}" gravcomp="1">
        {joint("waist")}
        <geom type="cylinder" pos="0 0 0.015" size="0.045 0.03" mass="0.8"/>
        <body name="{p}upper_arm_link" pos="0 0 {WAIST_TO_SHOULDER}" gravcomp="1">
          {joint("shoulder")}
          <geom name="{p}upper_arm" type="capsule" fromto="0 0 0 {ex} 0 {ez}" size="0.028" mass="0.79"/>
          <body name="{p}upper_forearm_link" pos="{ex} 0 {ez}" gravcomp="1">
            {joint("elbow")}
            <geom name="{p}upper_forearm" type="capsule" fromto="0 0 0 {ELBOW_TO_FOREARM_ROLL} 0 0" size="0.025"
                  mass="0.32"/>
            <body name="{p}lower_forearm_link" pos="{ELBOW_TO_FOREARM_ROLL} 0 0" gravcomp="1">
              {joint("forearm_roll")}
              <geom name="{p}lower_forearm" type="capsule" fromto="0.01 0 0 {FOREARM_ROLL_TO_WRIST - 0.02} 0 0"
                    size="0.022" mass="0.41"/>
              <body name="{p}wrist_link" pos="{FOREARM_ROLL_TO_WRIST} 0 0" gravcomp="1">
                {joint("wrist_angle")}
                <geom name="{p}wrist" type="cylinder" fromto="0 -0.022 0 0 0.022 0" size="0.022" mass="0.115"/>
                <body name="{p}gripper_link" pos="{WRIST_TO_WRIST_ROTATE} 0 0" gravcomp="1">
                  {joint("wrist_rotate")}
                  <geom name="{p}gripper_housing" type="box" pos="0.035 0 0" size="0.035 0.03 0.022" mass="0.55"/>
                  <geom name="{p}gripper_rail" type="box" pos="{FINGER_ROOT_X - 0.005} 0 0"
                        size="0.008 {MAX_OPENING / 2 + FINGER_THICKNESS + 0.004} 0.014" mass="0.12"/>
                  <site name="{p}grasp" pos="{GRASP_X} 0 0" size="0.006" rgba="0 1 0 0.4" group="4"/>
                  <camera name="{side}_wrist" pos="0.04 0 0.055" xyaxes="0 -1 0 0.414 0 0.91" fovy="75"/>
                  <body name="{p}finger_a" pos="{FINGER_ROOT_X} 0 0" gravcomp="1">
                    <joint name="{p}finger_a" class="viperx_finger" axis="0 1 0"/>
                    <geom name="{p}finger_a" class="viperx_finger" pos="{fx} {ft} 0" size="{fx} {ft} {fw}"
                          mass="0.086"/>
                  </body>
                  <body name="{p}finger_b" pos="{FINGER_ROOT_X} 0 0" gravcomp="1">
                    <joint name="{p}finger_b" class="viperx_finger" axis="0 -1 0"/>
                    <geom name="{p}finger_b" class="viperx_finger" pos="{fx} {-ft} 0" size="{fx} {ft} {fw}"
                          mass="0.086"/>
                  </body>
                </body>
              </body>
            </body>
          </body>
        </body>
      </body>
    </body>"""


def arm_tendon_equality(side: str) -> str:
    """The gripper tendon (pad gap) and the finger coupling of one arm."""
    p = f"{side}/"
    return f"""
    <tendon>
      <fixed name="{p}gripper"><joint joint="{p}finger_a" coef="1"/><joint joint="{p}finger_b" coef="1"/></fixed>
    </tendon>
    <equality>
      <joint joint1="{p}finger_a" joint2="{p}finger_b" polycoef="0 1 0 0 0" solref="0.005 1"/>
    </equality>"""


def arm_actuators(side: str) -> str:
    """Seven position servos in action order: six joints (radians), then the gripper opening (metres)."""
    p = f"{side}/"
    lines = []
    for name in ARM_JOINTS:
        s = JOINTS[name]
        lines.append(
            f'<position name="{p}{name}" joint="{p}{name}" kp="{s.kp}" ctrlrange="{s.range[0]} {s.range[1]}" '
            f'forcerange="{-s.force} {s.force}"/>'
        )
    lines.append(
        f'<position name="{p}gripper" tendon="{p}gripper" kp="{GRIPPER_KP}" '
        f'ctrlrange="{OPENING_RANGE[0]} {OPENING_RANGE[1]}" forcerange="{-GRIPPER_FORCE} {GRIPPER_FORCE}"/>'
    )
    return "\n      ".join(lines)
