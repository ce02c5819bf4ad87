"""Reach: move an arm's end effector (the SO-101 by default, or a user's own MJCF robot) to a random target."""

from __future__ import annotations

import math
import os

import mujoco
import numpy as np

from envs.assets import so101
from envs.base import MujocoTaskEnv
from envs.validation import check_choice

REWARD_TYPES = ("dense", "sparse")
_TARGET_RGBA = "0.9 0.15 0.15 0.55"


class ReachEnv(MujocoTaskEnv):
    """An arm reaches a random target point with its end-effector site.

    Robot: the SO-101 arm (5 joints + gripper) on a table, or any MJCF robot given as `robot_mjcf=<path>` with
    `end_effector_site=<site name>`; its position actuators form the action space.
    Action (SO-101): 6 absolute position-servo targets [shoulder_pan, shoulder_lift, elbow_flex, wrist_flex,
      wrist_roll] in rad and the gripper jaw angle in rad (0 ~ closed, 1.745 wide open). Box bounds = joint limits;
      out-of-bound actions are clipped. For a user robot: one target per position actuator, in its joint's units.
    Observation: agent_pos = actuated joint positions (rad / m);
      environment_state = [target xyz, end-effector xyz] (m, world frame; the table top is z = 0).
    Reward: reward_type="dense": -distance(end effector, target) in metres, plus 0.1 while within the success radius
      (a step that sharpens the optimum so a learned policy settles inside it); "sparse": 1.0 on success else 0.0.
    Success: the end-effector site within `success_radius` (2 cm) of the target. Episodes do not terminate on success
      (terminate_on_success=False): the task is to reach *and hold*, so evaluation can score the final state and
      recorded demonstrations keep a fixed length; truncation after max_episode_steps (default 100 = 2 s at 50 Hz).
    Targets are drawn uniformly from a cylinder sector in front of the SO-101 that its IK reaches everywhere
      (radius 0.14-0.30 m from the shoulder_pan axis, azimuth +-60 deg, height 0.04-0.24 m); for a user robot, as the
      end-effector position of a uniformly random joint configuration within the joint limits (redrawn while it
      penetrates something, e.g. the robot's floor), so every target is reachable by construction. The SO-101 starts
      near its ready pose (joint noise +-0.02 rad), a user robot at its model's qpos0. The target is a visual-only
      mocap sphere (no collision, no physics cost).
    """

    default_max_episode_steps = 100
    environment_state_names = ("target_x", "target_y", "target_z", "ee_x", "ee_y", "ee_z")
    environment_state_units = ("m",) * 6
    default_cameras = ("top",)
    render_camera = "front"
    success_radius = 0.02
    success_bonus = 0.1
    target_radius = (0.14, 0.30)
    target_azimuth = (-math.pi / 3, math.pi / 3)
    target_height = (0.04, 0.24)
    # Small joint noise on the start pose so a learned policy does not overfit one exact initial state.
    initial_joint_noise = 0.02

    def __init__(
        self,
        reward_type: str = "dense",
        robot_mjcf: str | os.PathLike | None = None,
        end_effector_site: str | None = None,
        **kwargs,
    ) -> None:
        self.reward_type = check_choice("ReachEnv", "reward_type", reward_type, REWARD_TYPES)
        self._user_robot = None
        if robot_mjcf is not None and not isinstance(robot_mjcf, (str, os.PathLike)):
            raise ValueError(f"ReachEnv: robot_mjcf must be a path to an MJCF file, got {type(robot_mjcf).__name__}")
        if end_effector_site is not None and not isinstance(end_effector_site, str):
            raise ValueError(
                f"ReachEnv: end_effector_site must be a site name, got {type(end_effector_site).__name__}"
            )
        if robot_mjcf is not None:
            self._user_robot = _UserRobot(robot_mjcf, end_effector_site)
        elif end_effector_site is not None:
            raise ValueError("ReachEnv: end_effector_site is only used together with robot_mjcf=<path to MJCF>")
        super().__init__(**kwargs)

    # ------------------------------------------------------------------ model
    def build_mjcf(self) -> str:
        if self._user_robot is not None:
            return self._user_robot.scene_xml()
        target = (
            f'<body name="target" mocap="true" pos="0.2 0 0.15">'
            f'<geom name="target" type="sphere" size="{self.success_radius}" rgba="{_TARGET_RGBA}" '
            f'contype="0" conaffinity="0"/></body>'
        )
        return so101.scene_xml(model_name="so101_reach", worldbody_extra=target)

    def setup(self) -> None:
        m = self.model
        self.end_effector_site = so101.TCP_SITE if self._user_robot is None else self._user_robot.site
        self.ee_site_id = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_SITE, self.end_effector_site)
        self.target_mocap = m.body_mocapid[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, "target")]
        if self._user_robot is None:
            self.actuator_ids = np.arange(m.nu)
            joints = so101.JOINT_NAMES
        else:
            self.actuator_ids = self._user_robot.actuator_ids
            joints = self._user_robot.joint_names
        jids = [mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, j) for j in joints]
        self._joint_names = list(joints)
        self.qpos_index = m.jnt_qposadr[jids].copy()
        self.dof_index = m.jnt_dofadr[jids].copy()
        self.joint_range = m.jnt_range[jids].copy()
        d = self.data
        # Views into MjData stay valid for the env's lifetime, so per-step work is slicing without name lookups.
        contiguous = np.array_equal(self.qpos_index, np.arange(self.qpos_index[0], self.qpos_index[0] + len(jids)))
        self._agent_qpos = d.qpos[self.qpos_index[0] : self.qpos_index[0] + len(jids)] if contiguous else None
        self._ee_pos = d.site_xpos[self.ee_site_id]
        self._target_pos = d.mocap_pos[self.target_mocap]
        self._env_state = np.empty(6)
        self._ctrl = d.ctrl
        self._all_actuators = len(self.actuator_ids) == m.nu
        self._scratch = mujoco.MjData(m)  # forward kinematics for sampling user-robot targets

    # ------------------------------------------------------------------ task hooks
    @property
    def joint_names(self) -> list[str]:
        return list(self._joint_names)

    @property
    def action_names(self) -> list[str]:
        return list(self._joint_names)

    @property
    def action_units(self) -> list[str]:
        if self._user_robot is None:
            return list(so101.ACTION_UNITS)
        return self._user_robot.units

    def action_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        ranges = self.model.actuator_ctrlrange[self.actuator_ids]
        return ranges[:, 0].copy(), ranges[:, 1].copy()

    def apply_action(self, action: np.ndarray) -> None:
        if self._all_actuators:
            self._ctrl[:] = action
        else:
            self._ctrl[self.actuator_ids] = action

    def ctrl_passthrough(self) -> np.ndarray:
        return self.actuator_ids

    def initial_action(self) -> np.ndarray:
        return np.clip(self.data.ctrl[self.actuator_ids], self._action_low, self._action_high)

    def robot_dofs(self) -> np.ndarray:
        return self.dof_index

    def sample_initial_state(self, rng: np.random.Generator) -> None:
        d = self.data
        if self._user_robot is None:
            home = so101.HOME_QPOS + rng.uniform(-1.0, 1.0, 6) * self.initial_joint_noise
            q = np.clip(home, self.joint_range[:, 0], self.joint_range[:, 1])
            r = rng.uniform(*self.target_radius)
            az = rng.uniform(*self.target_azimuth)
            target = (r * math.cos(az), r * math.sin(az), rng.uniform(*self.target_height))
        else:
            q = np.clip(self.model.qpos0[self.qpos_index], self.joint_range[:, 0], self.joint_range[:, 1])
            target = self._user_robot.sample_target(self.model, self._scratch, self.qpos_index, self.joint_range, rng)
        d.qpos[self.qpos_index] = q
        d.ctrl[self.actuator_ids] = np.clip(
            q, self.model.actuator_ctrlrange[self.actuator_ids, 0], self.model.actuator_ctrlrange[self.actuator_ids, 1]
        )
        d.mocap_pos[self.target_mocap] = target

    def agent_pos(self) -> np.ndarray:
        if self._agent_qpos is not None:
            return self._agent_qpos
        return self.data.qpos[self.qpos_index]

    def environment_state(self) -> np.ndarray:
        # Filled in place (the base class copies it into the observation): cheaper than np.concatenate.
        out = self._env_state
        out[:3] = self._target_pos
        out[3:] = self._ee_pos
        return out

    def distance(self) -> float:
        """Metres between the end-effector site and the target."""
        return mujoco.mju_dist3(self._ee_pos, self._target_pos)

    def compute_reward(self) -> float:
        dist = self.distance()
        if self.reward_type == "sparse":
            return 1.0 if dist < self.success_radius else 0.0
        return -dist + (self.success_bonus if dist < self.success_radius else 0.0)

    def is_success(self) -> bool:
        return self.distance() < self.success_radius

    def reward_and_success(self) -> tuple[float, bool]:
        # One distance for both: this env's physics is cheap enough that every microsecond of overhead shows.
        dist = mujoco.mju_dist3(self._ee_pos, self._target_pos)  # distance(), without the extra call
        success = dist < self.success_radius
        if self.reward_type == "sparse":
            return (1.0 if success else 0.0), success
        return -dist + (self.success_bonus if success else 0.0), success


class MissingRobotFileError(FileNotFoundError, ValueError):
    """A robot_mjcf path that does not exist: a bad argument (ValueError) and a missing file (FileNotFoundError)."""


class _UserRobot:
    """A user's MJCF robot prepared for Reach: checks the file, then adds a target, a light and two cameras."""

    max_target_tries = 50

    def __init__(self, path: str | os.PathLike, site: str | None) -> None:
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise MissingRobotFileError(f"ReachEnv: robot_mjcf file {path!r} does not exist")
        if not site:
            raise ValueError("ReachEnv: robot_mjcf needs end_effector_site=<a site on the robot's end effector>")
        try:
            spec = mujoco.MjSpec.from_file(path)
            model = spec.compile()
        except Exception as exc:  # MuJoCo reports parse/compile errors as several exception types
            raise ValueError(f"ReachEnv: could not load robot_mjcf {path!r}: {exc}") from exc
        if mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, site) < 0:
            sites = [mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_SITE, i) for i in range(model.nsite)]
            raise ValueError(f"ReachEnv: robot_mjcf {path!r} has no site {site!r}; its sites are {sites}")
        for name in ("target", "top", "front"):
            for kind in (mujoco.mjtObj.mjOBJ_BODY, mujoco.mjtObj.mjOBJ_CAMERA, mujoco.mjtObj.mjOBJ_GEOM):
                if mujoco.mj_name2id(model, kind, name) >= 0:
                    raise ValueError(f"ReachEnv: robot_mjcf {path!r} already uses the name {name!r}, which Reach adds")
        self.path, self.site = path, site
        self.actuator_ids, self.joint_names, self.units = self._position_actuators(model)
        self._spec, self._model = spec, model

    def _position_actuators(self, model: mujoco.MjModel) -> tuple[np.ndarray, list[str], list[str]]:
        ids, joints, units = [], [], []
        for a in range(model.nu):
            gain, bias = model.actuator_gainprm[a, 0], model.actuator_biasprm[a, :2]
            is_position = (
                int(model.actuator_gaintype[a]) == int(mujoco.mjtGain.mjGAIN_FIXED)
                and int(model.actuator_biastype[a]) == int(mujoco.mjtBias.mjBIAS_AFFINE)
                and gain > 0
                and np.isclose(bias[1], -gain)
                and int(model.actuator_trntype[a]) == int(mujoco.mjtTrn.mjTRN_JOINT)
            )
            if not is_position:
                continue
            jid = int(model.actuator_trnid[a, 0])
            jtype = int(model.jnt_type[jid])
            if jtype not in (int(mujoco.mjtJoint.mjJNT_HINGE), int(mujoco.mjtJoint.mjJNT_SLIDE)):
                continue
            name = mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_ACTUATOR, a) or f"actuator{a}"
            if not model.actuator_ctrllimited[a]:
                raise ValueError(
                    f"ReachEnv: position actuator {name!r} in {self.path!r} has no ctrlrange; the action space needs "
                    "finite bounds (set ctrlrange to the joint limits)"
                )
            if not model.jnt_limited[jid]:
                raise ValueError(
                    f"ReachEnv: joint of actuator {name!r} in {self.path!r} has no range; targets are sampled within "
                    "joint limits, so give the joint a range"
                )
            ids.append(a)
            joints.append(mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_JOINT, jid) or f"joint{jid}")
            units.append("rad" if jtype == int(mujoco.mjtJoint.mjJNT_HINGE) else "m")
        if not ids:
            raise ValueError(
                f"ReachEnv: robot_mjcf {self.path!r} has no position actuators on hinge/slide joints "
                "(<position joint=... kp=... ctrlrange=...>); Reach controls the robot through them"
            )
        return np.array(ids, dtype=int), joints, units

    def _workspace(self) -> tuple[np.ndarray, float]:
        """Centre and radius of the end effector's reachable region, from random joint configurations."""
        model, data = self._model, mujoco.MjData(self._model)
        rng = np.random.default_rng(0)
        site = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, self.site)
        jids = model.actuator_trnid[self.actuator_ids, 0]
        qadr, ranges = model.jnt_qposadr[jids], model.jnt_range[jids]
        points = []
        for _ in range(256):
            data.qpos[qadr] = rng.uniform(ranges[:, 0], ranges[:, 1])
            mujoco.mj_kinematics(model, data)
            points.append(data.site_xpos[site].copy())
        points = np.array(points)
        centre = 0.5 * (points.min(0) + points.max(0))
        return centre, max(float(np.linalg.norm(points - centre, axis=1).max()), 0.05)

    def scene_xml(self) -> str:
        spec = self._spec
        base = os.path.dirname(os.path.abspath(self.path))
        # The XML string is compiled without a file location, so asset folders must become absolute paths.
        spec.meshdir = os.path.join(base, spec.meshdir or "")
        spec.texturedir = os.path.join(base, spec.texturedir or "")
        spec.visual.global_.offwidth = max(spec.visual.global_.offwidth, 640)
        spec.visual.global_.offheight = max(spec.visual.global_.offheight, 480)
        centre, radius = self._workspace()
        world = spec.worldbody
        world.add_light(pos=centre + [0.0, 0.0, 3.0 * radius], dir=[0.0, 0.0, -1.0], diffuse=[0.6, 0.6, 0.6])
        top = world.add_camera(name="top", pos=centre + [0.0, 0.0, 2.6 * radius], fovy=60.0)
        top.alt.type = mujoco.mjtOrientation.mjORIENTATION_XYAXES
        top.alt.xyaxes = [0.0, -1.0, 0.0, 1.0, 0.0, 0.0]
        front_pos = centre + [2.6 * radius, 0.0, 1.0 * radius]
        front = world.add_camera(name="front", pos=front_pos, fovy=60.0)
        front.alt.type = mujoco.mjtOrientation.mjORIENTATION_XYAXES
        front.alt.xyaxes = [float(v) for v in so101.look_at_xyaxes(front_pos, centre).split()]
        target = world.add_body(name="target", mocap=True, pos=centre)
        target.add_geom(
            name="target",
            type=mujoco.mjtGeom.mjGEOM_SPHERE,
            size=[ReachEnv.success_radius, 0, 0],
            rgba=[float(v) for v in _TARGET_RGBA.split()],
            contype=0,
            conaffinity=0,
        )
        return spec.to_xml()

    def sample_target(self, model, scratch, qpos_index, joint_range, rng) -> np.ndarray:
        """End-effector position of a random joint configuration, preferring one without contacts (e.g. a floor)."""
        site = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, self.site)
        for _ in range(self.max_target_tries):
            scratch.qpos[:] = model.qpos0
            scratch.qpos[qpos_index] = rng.uniform(joint_range[:, 0], joint_range[:, 1])
            mujoco.mj_fwdPosition(model, scratch)
            if not (scratch.contact.dist[: scratch.ncon] < 0).any():
                return scratch.site_xpos[site].copy()
        # A target reached only through penetration would be a silent wrong goal: say why none was found.
        raise ValueError(
            f"ReachEnv.reset: {self.max_target_tries} random joint configurations of robot_mjcf {self.path!r} all "
            "penetrate something (e.g. a link always inside the floor or another link); fix the model's geometry, "
            "joint ranges or collision filters"
        )
