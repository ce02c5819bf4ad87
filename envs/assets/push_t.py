"""MJCF builder for the Push-T scene: a planar round pusher, a T-shaped block on a table and a flat goal-T marker."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _is_real(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


@dataclass(frozen=True)
class TShape:
    """The T as two boxes in its own frame (origin at the centre of area, bar at +y, stem towards -y), metres.

    gym-pusht's T (bar 120 x 30 px, stem 30 x 90 px) at 1 mm per pixel.
    """

    bar_half: tuple[float, float] = (0.060, 0.015)
    stem_half: tuple[float, float] = (0.015, 0.045)
    half_height: float = 0.015  # half of the block's thickness

    def __post_init__(self) -> None:
        halves = (self.bar_half, self.stem_half)
        if not all(isinstance(h, (tuple, list, np.ndarray)) for h in halves):
            raise ValueError(f"TShape: bar_half and stem_half must be (x, y) pairs, got {self}")
        sizes = (*self.bar_half, *self.stem_half, self.half_height)
        if not all(_is_real(v) for v in sizes):
            raise ValueError(f"TShape: bar_half, stem_half and half_height must be numbers, got {self}")
        if len(self.bar_half) != 2 or len(self.stem_half) != 2 or not all(np.isfinite(sizes)) or min(sizes) <= 0:
            raise ValueError(f"TShape: bar_half, stem_half (2 values each) and half_height must be > 0, got {self}")
        if self.stem_half[0] >= self.bar_half[0]:
            raise ValueError(f"TShape: the stem must be narrower than the bar, got {self}")

    @property
    def bar_center_y(self) -> float:
        # Chosen so the area centroid (and with uniform density the centre of mass) sits at the body origin.
        bar_area = self.bar_half[0] * self.bar_half[1]
        stem_area = self.stem_half[0] * self.stem_half[1]
        offset = self.bar_half[1] + self.stem_half[1]  # bar centre to stem centre
        return stem_area * offset / (bar_area + stem_area)

    @property
    def stem_center_y(self) -> float:
        return self.bar_center_y - self.bar_half[1] - self.stem_half[1]

    @property
    def area(self) -> float:
        return 4.0 * (self.bar_half[0] * self.bar_half[1] + self.stem_half[0] * self.stem_half[1])

    @property
    def gyration_radius_sq(self) -> float:
        """Polar moment of area about the centre divided by the area (m^2): I_z = mass * this for uniform density."""
        total = 0.0
        for _, cy, hx, hy in self.rects():
            total += 4 * hx * hy * ((hx * hx + hy * hy) / 3 + cy * cy)
        return total / self.area

    def mean_radius(self, n: int = 100) -> float:
        """Mean distance of the T's area from its centre (m): the torsional friction arm under uniform pressure."""
        total = 0.0
        u = (np.arange(n) + 0.5) / n * 2 - 1
        for _, cy, hx, hy in self.rects():
            gx, gy = np.meshgrid(hx * u, cy + hy * u)
            total += np.hypot(gx, gy).mean() * 4 * hx * hy
        return float(total / self.area)

    def rects(self) -> np.ndarray:
        """(2, 4) rows [center_x, center_y, half_x, half_y] for bar and stem in the T frame."""
        return np.array(
            [
                [0.0, self.bar_center_y, *self.bar_half],
                [0.0, self.stem_center_y, *self.stem_half],
            ]
        )


@dataclass(frozen=True)
class PushTSceneConfig:
    """Physical parameters of the scene (SI units)."""

    shape: TShape = TShape()
    goal_pose: tuple[float, float, float] = (0.0, 0.0, np.pi / 4)  # x, y (m), yaw (rad) of the T's centre of area
    workspace_half: float = 0.25  # pusher targets are limited to [-w, w]^2
    block_range_half: float = 0.25  # the block's centre stays on the table (slide joint limits)
    table_half: float = 0.30
    pusher_radius: float = 0.015
    pusher_mass: float = 0.3
    pusher_kp: float = 200.0  # N/m, position servo stiffness
    pusher_damping: float = 15.0  # N s/m, ~critical damping of the servo
    pusher_force_limit: float = 10.0  # N; with the damping this caps the pusher speed near 0.7 m/s
    block_mass: float = 0.1
    # Block-table friction as one contact under the centre of area with sliding and torsional friction in an
    # elliptic cone: the ellipsoidal limit surface of quasi-static pushing (isotropic, Coulomb), at the cost of a
    # single contact. The torsional coefficient is mu times the mean distance of the T's area from its centre.
    pad_radius: float = 0.002
    block_table_friction: float = 0.3
    pusher_block_friction: float = 0.5

    def __post_init__(self) -> None:
        if not isinstance(self.shape, TShape):
            raise ValueError(f"PushTSceneConfig: shape must be a TShape, got {type(self.shape).__name__}")
        numbers = {f: getattr(self, f) for f in self.__dataclass_fields__ if f not in ("shape", "goal_pose")}
        not_numbers = {k: v for k, v in numbers.items() if not _is_real(v)}
        pose_ok = isinstance(self.goal_pose, (tuple, list, np.ndarray)) and all(_is_real(v) for v in self.goal_pose)
        if not_numbers or not pose_ok:
            raise ValueError(f"PushTSceneConfig: these must be numbers: {not_numbers or {'goal_pose': self.goal_pose}}")
        positive = {
            name: getattr(self, name)
            for name in ("workspace_half", "block_range_half", "table_half", "pusher_radius", "pusher_mass",
                         "pusher_kp", "pusher_damping", "pusher_force_limit", "block_mass", "pad_radius",
                         "block_table_friction", "pusher_block_friction")
        }
        bad = {k: v for k, v in positive.items() if not (np.isfinite(v) and v > 0)}
        if bad:
            raise ValueError(f"PushTSceneConfig: these must be finite and > 0: {bad}")
        if max(self.workspace_half, self.block_range_half) > self.table_half:
            raise ValueError(
                f"PushTSceneConfig: workspace_half ({self.workspace_half}) and block_range_half "
                f"({self.block_range_half}) must not exceed table_half ({self.table_half})"
            )
        if len(self.goal_pose) != 3 or not np.all(np.isfinite(self.goal_pose)):
            raise ValueError(f"PushTSceneConfig: goal_pose must be finite (x, y, yaw), got {self.goal_pose}")
        if max(abs(self.goal_pose[0]), abs(self.goal_pose[1])) > self.workspace_half:
            raise ValueError(f"PushTSceneConfig: goal_pose {self.goal_pose} lies outside the pusher's workspace")


def _box(name: str, pos, half, rgba: str, extra: str = "") -> str:
    return (
        f'<geom name="{name}" type="box" pos="{pos[0]:.6f} {pos[1]:.6f} {pos[2]:.6f}" '
        f'size="{half[0]:.6f} {half[1]:.6f} {half[2]:.6f}" rgba="{rgba}" {extra}/>'
    )


def push_t_scene_xml(cfg: PushTSceneConfig = PushTSceneConfig()) -> str:
    """Return the MJCF string of the Push-T scene."""
    s = cfg.shape
    h, r_pad = s.half_height, cfg.pad_radius
    z_block = h + 2 * r_pad  # the pad touches the table; the pusher pushes at the block's mid-height
    gx, gy, gyaw = cfg.goal_pose
    w, b, t = cfg.workspace_half, cfg.block_range_half, cfg.table_half
    izz = cfg.block_mass * s.gyration_radius_sq
    quat = f"{np.cos(gyaw / 2):.8f} 0 0 {np.sin(gyaw / 2):.8f}"
    block_rgba, goal_rgba = "0.40 0.46 0.56 1", "0.40 0.80 0.40 1"
    bar, stem = s.rects()
    # Collision groups: 1 = pusher & block sides, 2 = pad & table. The goal marker collides with nothing.
    marker = 'contype="0" conaffinity="0" group="1"'
    side = f'contype="1" conaffinity="1" condim="3" friction="{cfg.pusher_block_friction} 0.005 0.0001"'
    mu = cfg.block_table_friction
    pad = f'contype="2" conaffinity="2" condim="4" friction="{mu} {mu * s.mean_radius():.6f} 0.0001"'
    return f"""
<mujoco model="push_t">
  <compiler angle="radian" autolimits="true"/>
  <option timestep="0.002" integrator="implicitfast" cone="elliptic" gravity="0 0 -9.81"/>
  <visual>
    <global offwidth="640" offheight="480"/>
    <headlight ambient="0.25 0.25 0.25" diffuse="0.25 0.25 0.25" specular="0 0 0"/>
  </visual>
  <asset>
    <texture name="grid" type="2d" builtin="checker" rgb1="0.85 0.85 0.83" rgb2="0.78 0.78 0.76"
             width="256" height="256"/>
    <material name="table" texture="grid" texrepeat="6 6"/>
    <texture name="sky" type="skybox" builtin="gradient" rgb1="0.55 0.65 0.8" rgb2="0.15 0.2 0.3"
             width="64" height="64"/>
  </asset>
  <default>
    <geom solref="0.01 1" solimp="0.95 0.99 0.001"/>
  </default>
  <worldbody>
    <light name="sun" pos="0 -0.3 1.5" dir="0 0.2 -1" diffuse="0.45 0.45 0.45" specular="0.1 0.1 0.1"
           directional="true"/>
    <geom name="table" type="plane" size="{t} {t} 0.01" material="table" {pad}/>
    <body name="goal" pos="{gx} {gy} 0" quat="{quat}">
      {_box("goal_bar", (bar[0], bar[1], 0.0005), (bar[2], bar[3], 0.0005), goal_rgba, marker)}
      {_box("goal_stem", (stem[0], stem[1], 0.0005), (stem[2], stem[3], 0.0005), goal_rgba, marker)}
    </body>
    <body name="block" pos="0 0 {z_block}">
      <joint name="block_x" type="slide" axis="1 0 0" range="{-b} {b}"/>
      <joint name="block_y" type="slide" axis="0 1 0" range="{-b} {b}"/>
      <joint name="block_z" type="slide" axis="0 0 1"/>
      <joint name="block_yaw" type="hinge" axis="0 0 1"/>
      <inertial pos="0 0 0" mass="{cfg.block_mass}" diaginertia="{0.6 * izz:.8g} {0.6 * izz:.8g} {izz:.8g}"/>
      {_box("block_bar", (bar[0], bar[1], 0), (bar[2], bar[3], h), block_rgba, side)}
      {_box("block_stem", (stem[0], stem[1], 0), (stem[2], stem[3], h), block_rgba, side)}
      <!-- A contact margin keeps the pad's contact continuously detected despite micrometre bobbing. -->
      <geom name="pad" type="sphere" size="{r_pad}" pos="0 0 {-h - r_pad:.6f}" rgba="0.3 0.3 0.3 1" margin="0.0005"
            {pad}/>
    </body>
    <body name="pusher" pos="0 0 {z_block}">
      <joint name="pusher_x" type="slide" axis="1 0 0" range="{-w - 0.02} {w + 0.02}" damping="{cfg.pusher_damping}"/>
      <joint name="pusher_y" type="slide" axis="0 1 0" range="{-w - 0.02} {w + 0.02}" damping="{cfg.pusher_damping}"/>
      <geom name="pusher" type="sphere" size="{cfg.pusher_radius}" mass="{cfg.pusher_mass}" rgba="0.25 0.41 0.88 1"
            {side}/>
    </body>
    <camera name="top" pos="0 0 0.8" xyaxes="1 0 0 0 1 0" fovy="38"/>
    <camera name="front" pos="0 -0.62 0.55" xyaxes="1 0 0 0 0.66 0.75" fovy="45"/>
  </worldbody>
  <actuator>
    <position name="pusher_x" joint="pusher_x" kp="{cfg.pusher_kp}" ctrlrange="{-w} {w}"
              forcerange="{-cfg.pusher_force_limit} {cfg.pusher_force_limit}"/>
    <position name="pusher_y" joint="pusher_y" kp="{cfg.pusher_kp}" ctrlrange="{-w} {w}"
              forcerange="{-cfg.pusher_force_limit} {cfg.pusher_force_limit}"/>
  </actuator>
</mujoco>
"""
