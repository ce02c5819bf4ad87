"""Seeded domain randomization of MuJoCo models, applied at reset (off by default)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import mujoco
import numpy as np

from envs.validation import check_int, check_pair, check_real, did_you_mean

# An upper bound on the per-episode action delay: the queue holds one action per step, and a delay beyond this
# (20 s at 50 Hz) is a configuration mistake rather than a latency to train against.
MAX_ACTION_DELAY_STEPS = 1000


@dataclass
class DomainRandomizationConfig:
    """Ranges for domain randomization. Scales multiply the model's nominal value; each is (low, high).

    A range of (1.0, 1.0) or a std of 0.0 switches that term off. `enabled=False` (the default) switches all off.
    """

    enabled: bool = False
    friction_scale: tuple[float, float] = (0.8, 1.2)
    object_mass_scale: tuple[float, float] = (0.8, 1.2)
    object_size_scale: tuple[float, float] = (0.95, 1.05)
    joint_damping_scale: tuple[float, float] = (0.8, 1.2)
    armature_scale: tuple[float, float] = (0.8, 1.2)
    actuator_gain_scale: tuple[float, float] = (0.9, 1.1)
    # Action delay in whole control steps, drawn uniformly from [low, high] once per episode.
    action_delay_steps: tuple[int, int] = (0, 1)
    # Gaussian observation noise, physical units: radians (or metres) for agent_pos, metres/radians for object state.
    agent_pos_noise_std: float = 0.002
    environment_state_noise_std: float = 0.002
    # Pixels only: camera pose jitter (metres, degrees), light intensity scale, per-geom colour jitter (RGB delta).
    camera_pos_std: float = 0.01
    camera_rot_std_deg: float = 2.0
    light_intensity_scale: tuple[float, float] = (0.7, 1.3)
    color_jitter: float = 0.08

    def __post_init__(self) -> None:
        owner = "DomainRandomizationConfig"
        for f in dataclasses.fields(self):
            name, value = f.name, getattr(self, f.name)
            arg = f"randomization.{name}"
            if name == "enabled":
                if not isinstance(value, (bool, np.bool_)):
                    raise ValueError(f"{owner}: {arg} must be true or false, got {type(value).__name__} {value!r}")
                self.enabled = bool(value)
            elif name == "action_delay_steps":
                low, high = (check_int(owner, f"{arg}[{i}]", v, minimum=0, maximum=MAX_ACTION_DELAY_STEPS,
                                       reason=" control steps (the delay queue holds one action per step)")
                             for i, v in enumerate(check_pair(owner, arg, value)))
                if low > high:
                    raise ValueError(f"{owner}: {arg} needs low <= high, got {[low, high]}")
                self.action_delay_steps = (low, high)
            elif name.endswith("_scale"):
                low, high = (check_real(owner, f"{arg}[{i}]", v, minimum=0.0,
                                        reason=" (scales multiply a nominal value)")
                             for i, v in enumerate(check_pair(owner, arg, value)))
                if low > high:
                    raise ValueError(f"{owner}: {arg} needs low <= high, got {[low, high]}")
                setattr(self, name, (low, high))
            else:
                maximum = 1.0 if name == "color_jitter" else None
                reason = " (an RGB delta; colours span 0..1)" if maximum else ""
                setattr(self, name, check_real(owner, arg, value, minimum=0.0, strict=False, maximum=maximum,
                                               reason=reason))

    @classmethod
    def visual_only(cls) -> "DomainRandomizationConfig":
        """Camera pose, light intensity and colours randomized, physics nominal (every scale 1, no action delay, no
        observation noise): the preset for camera policies. configs/env/randomization/visual.yaml mirrors it."""
        return cls(enabled=True, friction_scale=(1.0, 1.0), object_mass_scale=(1.0, 1.0),
                   object_size_scale=(1.0, 1.0), joint_damping_scale=(1.0, 1.0), armature_scale=(1.0, 1.0),
                   actuator_gain_scale=(1.0, 1.0), action_delay_steps=(0, 0), agent_pos_noise_std=0.0,
                   environment_state_noise_std=0.0)

    @classmethod
    def from_any(cls, value: "DomainRandomizationConfig | Mapping[str, Any] | bool | None") -> "DomainRandomizationConfig":
        """Accept a config, a mapping (e.g. a Hydra DictConfig), True (defaults on) or None/False (off)."""
        if value is None or value is False or (isinstance(value, np.bool_) and not value):
            return cls(enabled=False)
        if value is True or isinstance(value, np.bool_):
            return cls(enabled=True)
        if isinstance(value, cls):
            return value
        if isinstance(value, Mapping) or hasattr(value, "items"):
            data = dict(value.items())
            known = [f.name for f in dataclasses.fields(cls)]
            unknown = sorted((k for k in data if k not in known), key=str)
            if unknown:
                hints = "".join(did_you_mean(k, known) for k in unknown)
                raise ValueError(f"unknown randomization option(s) {unknown}{hints}; valid options: {known}")
            # Giving ranges without `enabled` means the user wants them used.
            data.setdefault("enabled", True)
            return cls(**data)
        raise ValueError(
            f"randomization must be a mapping of options, true/false or None, got {type(value).__name__} {value!r:.80}"
        )


@dataclass
class _Nominal:
    """Copies of the model fields that randomization touches, restored before every draw."""

    arrays: dict[str, np.ndarray] = field(default_factory=dict)


class ModelRandomizer:
    """Applies a DomainRandomizationConfig to an MjModel; restores nominal values first so draws never compound."""

    _FIELDS = (
        "geom_friction", "body_mass", "body_inertia", "geom_size", "geom_pos", "geom_rbound", "geom_aabb",
        "dof_damping", "dof_armature", "actuator_gainprm", "actuator_biasprm", "cam_pos", "cam_quat",
        "light_diffuse", "light_specular", "geom_rgba", "mat_rgba", "bvh_aabb",
    )

    def __init__(
        self,
        model: mujoco.MjModel,
        config: DomainRandomizationConfig,
        object_bodies: Sequence[str] = (),
        size_randomized_bodies: Sequence[str] = (),
        robot_dofs: np.ndarray | None = None,
        color_geoms: Sequence[int] | None = None,
    ) -> None:
        self.model = model
        self.config = config
        self._nominal = _Nominal({name: getattr(model, name).copy() for name in self._FIELDS})
        self._object_bodies = np.array([self._body_id(n) for n in object_bodies], dtype=int)
        self._size_bodies = [self._body_id(n) for n in size_randomized_bodies]
        self._size_geoms = [np.flatnonzero(model.geom_bodyid == b) for b in self._size_bodies]
        self._robot_dofs = np.arange(model.nv) if robot_dofs is None else np.asarray(robot_dofs, dtype=int)
        self._color_geoms = np.arange(model.ngeom) if color_geoms is None else np.asarray(color_geoms, dtype=int)
        # Only position-servo actuators (bias = -kp * q) get gain randomization; scaling gain and bias together keeps
        # them servos with a different stiffness instead of turning them into biased motors.
        gain = model.actuator_gainprm[:, 0]
        bias = model.actuator_biasprm[:, 1]
        self._servo_actuators = np.flatnonzero((gain > 0) & np.isclose(bias, -gain))
        self.size_scales: dict[str, float] = {}

    def _body_id(self, name: str) -> int:
        body_id = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_BODY, name)
        if body_id < 0:
            raise ValueError(f"randomization names body {name!r}, which is not in the model")
        return body_id

    def restore(self) -> None:
        for name, nominal in self._nominal.arrays.items():
            getattr(self.model, name)[...] = nominal
        self.size_scales = {}

    def apply(self, rng: np.random.Generator, visual_rng: np.random.Generator | None = None) -> None:
        """Restore nominal values, then draw and apply one randomization. Draw order is fixed for determinism.

        Visual terms (camera, light, colour) come from their own `visual_rng`, and only when it is given, so an env
        that renders draws exactly the same dynamics as one that does not."""
        self.restore()
        cfg = self.config
        if not cfg.enabled:
            return
        m, nominal = self.model, self._nominal.arrays
        m.geom_friction[:, 0] = nominal["geom_friction"][:, 0] * rng.uniform(*cfg.friction_scale)
        if len(self._object_bodies):
            scale = rng.uniform(*cfg.object_mass_scale, size=len(self._object_bodies))
            m.body_mass[self._object_bodies] = nominal["body_mass"][self._object_bodies] * scale
            m.body_inertia[self._object_bodies] = nominal["body_inertia"][self._object_bodies] * scale[:, None]
        for body, geoms in zip(self._size_bodies, self._size_geoms):
            s = rng.uniform(*cfg.object_size_scale)
            self.size_scales[mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_BODY, body)] = s
            m.geom_size[geoms] = nominal["geom_size"][geoms] * s
            m.geom_pos[geoms] = nominal["geom_pos"][geoms] * s
            m.geom_rbound[geoms] = nominal["geom_rbound"][geoms] * s
            m.geom_aabb[geoms] = nominal["geom_aabb"][geoms] * s
            m.body_inertia[body] = m.body_inertia[body] * s * s
            # MuJoCo culls contacts with the body's bounding-volume hierarchy: it must grow with the geoms.
            bvh = slice(m.body_bvhadr[body], m.body_bvhadr[body] + m.body_bvhnum[body])
            m.bvh_aabb[bvh] = nominal["bvh_aabb"][bvh] * s
        dofs = self._robot_dofs
        m.dof_damping[dofs] = nominal["dof_damping"][dofs] * rng.uniform(*cfg.joint_damping_scale, size=len(dofs))
        m.dof_armature[dofs] = nominal["dof_armature"][dofs] * rng.uniform(*cfg.armature_scale, size=len(dofs))
        acts = self._servo_actuators
        if len(acts):
            g = rng.uniform(*cfg.actuator_gain_scale, size=len(acts))
            m.actuator_gainprm[acts, 0] = nominal["actuator_gainprm"][acts, 0] * g
            m.actuator_biasprm[acts, 1] = nominal["actuator_biasprm"][acts, 1] * g
        if visual_rng is not None:
            self._apply_visual(visual_rng)

    def _apply_visual(self, rng: np.random.Generator) -> None:
        cfg, m, nominal = self.config, self.model, self._nominal.arrays
        if m.ncam:
            m.cam_pos[:] = nominal["cam_pos"] + rng.normal(0.0, cfg.camera_pos_std, size=(m.ncam, 3))
            for cam in range(m.ncam):
                axis = rng.normal(size=3)
                axis /= np.linalg.norm(axis) + 1e-12
                angle = np.deg2rad(rng.normal(0.0, cfg.camera_rot_std_deg))
                delta = np.zeros(4)
                mujoco.mju_axisAngle2Quat(delta, axis, angle)
                quat = np.zeros(4)
                mujoco.mju_mulQuat(quat, nominal["cam_quat"][cam], delta)
                m.cam_quat[cam] = quat
        if m.nlight:
            scale = rng.uniform(*cfg.light_intensity_scale, size=(m.nlight, 1))
            m.light_diffuse[:] = np.clip(nominal["light_diffuse"] * scale, 0.0, 1.0)
            m.light_specular[:] = np.clip(nominal["light_specular"] * scale, 0.0, 1.0)
        geoms = self._color_geoms
        jitter = rng.uniform(-cfg.color_jitter, cfg.color_jitter, size=(len(geoms), 3))
        m.geom_rgba[geoms, :3] = np.clip(nominal["geom_rgba"][geoms, :3] + jitter, 0.0, 1.0)
        if m.nmat:
            jitter = rng.uniform(-cfg.color_jitter, cfg.color_jitter, size=(m.nmat, 3))
            m.mat_rgba[:, :3] = np.clip(nominal["mat_rgba"][:, :3] + jitter, 0.0, 1.0)
