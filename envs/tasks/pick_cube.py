"""PickCube: the SO-101 arm grasps a randomly placed cube and lifts it to a target height above the table."""

from __future__ import annotations

import math

import mujoco
import numpy as np

from envs.assets import so101
from envs.base import MujocoTaskEnv
from envs.validation import check_choice, check_pair, check_real

REWARD_TYPES = ("dense", "sparse")
CUBE_HALF = 0.015  # metres (a 3 cm cube)
CUBE_MASS = 0.03  # kg


class PickCubeEnv(MujocoTaskEnv):
    """Pick up a 3 cm cube and lift it above a target height.

    Action: 6 absolute position-servo targets [shoulder_pan, shoulder_lift, elbow_flex, wrist_flex, wrist_roll] in
      rad and the gripper jaw angle in rad (0 ~ closed, 1.745 wide open; commanding below the contact angle
      squeezes). Box bounds = joint limits; out-of-bound actions are clipped.
    Observation: agent_pos = the 6 joint positions (rad);
      environment_state = [cube xyz (m), cube quaternion wxyz, target height (m), gripper TCP xyz (m)] (11 values;
      world frame, the table top is z = 0, the shoulder_pan axis at the origin).
    Success: the cube centre is at least `target height` above the table AND the cube touches both gripper jaws
      (held, not balanced or thrown). Episodes do not terminate on success: the expert lifts and holds.
    Reward: reward_type="dense" (ManiSkill-PickCube-like, in [0, 1]):
        (reach + grasped + grasped * lift) / 3, and 1.0 on success, with
        reach = 1 - tanh(5 |tcp - cube|), lift = 1 - tanh(5 * max(target - cube height, 0));
      "sparse": 1.0 on success else 0.0.
    Initial state: cube centre at 0.13-0.23 m from the shoulder_pan axis, azimuth +-45 deg, random yaw; target
      height uniform in `target_height_range` (default 0.08-0.12 m), shown by a visual-only green marker above the
      cube's start so pixel policies can see it; the arm starts near its ready pose (joint noise +-0.02 rad).
    """

    default_max_episode_steps = 200
    environment_state_names = (
        "cube_x", "cube_y", "cube_z", "cube_qw", "cube_qx", "cube_qy", "cube_qz",
        "target_height", "tcp_x", "tcp_y", "tcp_z",
    )
    environment_state_units = ("m", "m", "m") + ("quaternion",) * 4 + ("m",) * 4
    default_cameras = ("top",)
    render_camera = "front"
    randomized_object_bodies = ("cube",)
    size_randomized_bodies = ("cube",)
    cube_radius = (0.13, 0.23)
    cube_azimuth = (-math.pi / 4, math.pi / 4)
    initial_joint_noise = 0.02
    # Within this distance of the TCP the cube may be in the hand; beyond it the contact check is skipped.
    grasp_check_distance = 0.04

    def __init__(
        self,
        reward_type: str = "dense",
        target_height_range: tuple[float, float] = (0.08, 0.12),
        **kwargs,
    ) -> None:
        reward_type = check_choice("PickCubeEnv", "reward_type", reward_type, REWARD_TYPES)
        low, high = (check_real("PickCubeEnv", f"target_height_range[{i}]", v)
                     for i, v in enumerate(check_pair("PickCubeEnv", "target_height_range", target_height_range)))
        if not (0.03 <= low <= high <= 0.2):
            raise ValueError(
                f"PickCubeEnv: target_height_range must satisfy 0.03 <= low <= high <= 0.2 m (reachable while holding "
                f"the cube), got {target_height_range!r}"
            )
        self.reward_type = reward_type
        self.target_height_range = (low, high)
        super().__init__(**kwargs)

    # ------------------------------------------------------------------ model
    def build_mjcf(self) -> str:
        cube = f"""
    <body name="cube" pos="0.18 0 {CUBE_HALF}">
      <freejoint name="cube"/>
      <geom name="cube" type="box" size="{CUBE_HALF} {CUBE_HALF} {CUBE_HALF}" mass="{CUBE_MASS}" rgba="0.85 0.15 0.15 1"
            friction="1.0 0.01 0.001" contype="{so101.OBJECT_CONTYPE}" conaffinity="{so101.OBJECT_CONAFFINITY}"/>
    </body>
    <body name="goal" mocap="true" pos="0.18 0 0.1">
      <!-- Opaque: a camera policy reads the target height from this marker (at 96 px it spans 2-3 pixels, and a
           half-transparent one blended into the table behind it). -->
      <geom name="goal" type="sphere" size="0.008" rgba="0.1 0.85 0.2 1" contype="0" conaffinity="0"/>
    </body>"""
        return so101.scene_xml(model_name="so101_pick_cube", worldbody_extra=cube)

    def setup(self) -> None:
        m, d = self.model, self.data
        name2id = lambda kind, name: mujoco.mj_name2id(m, kind, name)  # noqa: E731
        self.cube_body = name2id(mujoco.mjtObj.mjOBJ_BODY, "cube")
        self.cube_geom = name2id(mujoco.mjtObj.mjOBJ_GEOM, "cube")
        cube_joint = name2id(mujoco.mjtObj.mjOBJ_JOINT, "cube")
        self.cube_qpos = int(m.jnt_qposadr[cube_joint])
        self.tcp_site = name2id(mujoco.mjtObj.mjOBJ_SITE, so101.TCP_SITE)
        self.goal_mocap = int(m.body_mocapid[name2id(mujoco.mjtObj.mjOBJ_BODY, "goal")])
        jids = [name2id(mujoco.mjtObj.mjOBJ_JOINT, j) for j in so101.JOINT_NAMES]
        self.robot_qpos = m.jnt_qposadr[jids].copy()
        self.robot_dof = m.jnt_dofadr[jids].copy()
        self.joint_range = m.jnt_range[jids].copy()
        # Lookup tables: geom id -> belongs to the fixed / moving jaw (vectorised contact test).
        self._fixed_jaw = np.zeros(m.ngeom, dtype=bool)
        self._moving_jaw = np.zeros(m.ngeom, dtype=bool)
        self._fixed_jaw[[name2id(mujoco.mjtObj.mjOBJ_GEOM, g) for g in so101.FIXED_JAW_GEOMS]] = True
        self._moving_jaw[[name2id(mujoco.mjtObj.mjOBJ_GEOM, g) for g in so101.MOVING_JAW_GEOMS]] = True
        # Views into MjData (fixed for the env's lifetime) keep per-step work to slicing.
        self._arm_qpos = d.qpos[self.robot_qpos[0] : self.robot_qpos[0] + 6]
        self._cube_pose = d.qpos[self.cube_qpos : self.cube_qpos + 7]
        self._cube_pos = d.qpos[self.cube_qpos : self.cube_qpos + 3]
        self._tcp_pos = d.site_xpos[self.tcp_site]
        self._ctrl = d.ctrl
        self.target_height = float(np.mean(self.target_height_range))
        self._target = np.array([self.target_height])

    # ------------------------------------------------------------------ task hooks
    @property
    def joint_names(self) -> list[str]:
        return list(so101.JOINT_NAMES)

    @property
    def action_names(self) -> list[str]:
        return list(so101.JOINT_NAMES)

    @property
    def action_units(self) -> list[str]:
        return list(so101.ACTION_UNITS)

    def apply_action(self, action: np.ndarray) -> None:
        self._ctrl[:] = action

    def ctrl_passthrough(self) -> np.ndarray:
        return np.arange(self.model.nu)

    def robot_dofs(self) -> np.ndarray:
        return self.robot_dof

    def max_object_size_scale(self) -> tuple[float, str]:
        # The cube (yaw within +-45 deg: footprint half-diagonal sqrt(2) * half) spawns as close as cube_radius[0] to
        # the shoulder_pan axis, where the arm's base cylinder stands.
        m = self.model
        base = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_GEOM, "base")
        base_radius = float(m.geom_size[base, 0])
        half = float(m.geom_size[self.cube_geom, 0])
        largest = (self.cube_radius[0] - base_radius) / (math.sqrt(2.0) * half)
        return largest, (
            f"the cube (half size {half} m at scale 1) spawns {self.cube_radius[0]} m from the arm's axis and must "
            f"clear its base (radius {base_radius} m)"
        )

    def cube_half_size(self) -> float:
        """Current cube half size (m); domain randomization may scale it."""
        return float(self.model.geom_size[self.cube_geom, 0])

    def sample_initial_state(self, rng: np.random.Generator) -> None:
        d = self.data
        q = so101.HOME_QPOS + rng.uniform(-1.0, 1.0, 6) * self.initial_joint_noise
        q = np.clip(q, self.joint_range[:, 0], self.joint_range[:, 1])
        d.qpos[self.robot_qpos] = q
        d.ctrl[:] = q
        r = rng.uniform(*self.cube_radius)
        az = rng.uniform(*self.cube_azimuth)
        yaw = rng.uniform(-math.pi / 4, math.pi / 4)
        self.target_height = float(rng.uniform(*self.target_height_range))
        self._target[0] = self.target_height
        x, y = r * math.cos(az), r * math.sin(az)
        d.qpos[self.cube_qpos : self.cube_qpos + 7] = (
            x, y, self.cube_half_size(), math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)
        )
        d.mocap_pos[self.goal_mocap] = (x, y, self.target_height)

    def agent_pos(self) -> np.ndarray:
        return self._arm_qpos

    def environment_state(self) -> np.ndarray:
        return np.concatenate((self._cube_pose, self._target, self._tcp_pos))

    def is_grasped(self) -> bool:
        """The cube touches both jaws."""
        if mujoco.mju_dist3(self._tcp_pos, self._cube_pos) > self.grasp_check_distance:
            return False
        return self._touches_both_jaws()

    def _touches_both_jaws(self) -> bool:
        # A vectorised scan of MuJoCo's contact list (no Python loop over contacts).
        ncon = self.data.ncon
        if ncon < 2:
            return False
        geoms = self.data.contact.geom[:ncon]
        with_cube = (geoms == self.cube_geom).any(axis=1)
        other = geoms[with_cube].sum(axis=1) - self.cube_geom
        return bool(self._fixed_jaw[other].any() and self._moving_jaw[other].any())

    def is_success(self) -> bool:
        return self._cube_pos[2] >= self.target_height and self.is_grasped()

    def compute_reward(self) -> float:
        return self.reward_and_success()[0]

    def reward_and_success(self) -> tuple[float, bool]:
        # The contact scan is the costly part: done at most once per step for both outcomes.
        dist = mujoco.mju_dist3(self._tcp_pos, self._cube_pos)
        grasped = dist <= self.grasp_check_distance and self._touches_both_jaws()
        cube_z = float(self._cube_pos[2])
        success = grasped and cube_z >= self.target_height
        if success:
            return 1.0, True
        if self.reward_type == "sparse":
            return 0.0, False
        reach = 1.0 - math.tanh(5.0 * dist)
        if not grasped:
            return reach / 3.0, False
        lift = 1.0 - math.tanh(5.0 * (self.target_height - cube_z))
        return (reach + 1.0 + lift) / 3.0, False
