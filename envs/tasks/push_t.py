"""Push-T (the Diffusion Policy benchmark) in MuJoCo: a planar pusher pushes a T-shaped block into a goal pose."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

import mujoco
import numpy as np

from envs.assets.push_t import PushTSceneConfig, TShape, push_t_scene_xml
from envs.base import MujocoTaskEnv
from envs.validation import check_choice, check_real

REWARD_TYPES = ("dense", "sparse")
_TWO_PI = 2.0 * math.pi


def wrap_angle(angle: float) -> float:
    """Angle in [-pi, pi)."""
    return (angle + math.pi) % _TWO_PI - math.pi


# ---------------------------------------------------------------------------------------------------------------
# Overlap of two Ts, hand-written because it runs on every env.step that moved the block: scalar math on a handful
# of points is cheaper than numpy's per-call overhead or a geometry library. In the goal's frame each T is two
# axis-aligned boxes split at y = y_join; every block rectangle is split there, clipped by the remaining half-planes
# (Sutherland-Hodgman) and measured with the shoelace formula, exact up to float rounding.
# ---------------------------------------------------------------------------------------------------------------
def _split_at_y(points, c):
    """Split a convex polygon [(x, y), ...] into its parts below and above the line y = c."""
    below, above = [], []
    px, py = points[-1]
    prev_below = py < c
    for point in points:
        x, y = point
        is_below = y < c
        if is_below != prev_below:
            cut = (px + (c - py) / (y - py) * (x - px), c)
            below.append(cut)
            above.append(cut)
        (below if is_below else above).append(point)
        px, py, prev_below = x, y, is_below
    return below, above


def _clip(points, axis, c, keep_below: bool):
    """Keep the part of a convex polygon with coordinate `axis` <= c (keep_below) or >= c."""
    inside = (lambda u: u <= c) if keep_below else (lambda u: u >= c)
    out = []
    p = points[-1]
    pu = p[axis]
    p_in = inside(pu)
    for q in points:
        u = q[axis]
        q_in = inside(u)
        if q_in != p_in:
            t = (c - pu) / (u - pu)
            out.append((p[0] + t * (q[0] - p[0]), p[1] + t * (q[1] - p[1])))
        if q_in:
            out.append(q)
        p, pu, p_in = q, u, q_in
    return out


def _polygon_area(points) -> float:
    if len(points) < 3:
        return 0.0
    twice = 0.0
    px, py = points[-1]
    for x, y in points:
        twice += px * y - x * py
        px, py = x, y
    return 0.5 * twice


class TOverlap:
    """Coverage of a goal T by a block T of the same shape: area(block & goal) / area(goal), from the relative pose.

    `rects` rows are [center_x, center_y, half_x, half_y] for the bar (upper) and the stem (lower) in the T frame;
    both are centred on x = 0 and the bar's lower edge is the stem's upper edge.
    """

    def __init__(self, rects: np.ndarray) -> None:
        rects = np.asarray(rects, dtype=float)
        (bx, bcy, bhx, bhy), (sx, scy, shx, shy) = rects if rects.shape == (2, 4) else ((np.nan,) * 4,) * 2
        ok = rects.shape == (2, 4) and bx == 0 and sx == 0 and min(bhx, bhy, shx, shy) > 0
        if not ok or not math.isclose(bcy - bhy, scy + shy, abs_tol=1e-9):
            raise ValueError(
                "TOverlap needs rows [0, cy, hx, hy] (hx, hy > 0) for a bar sitting on a stem, got "
                f"{rects.tolist()}"
            )
        self.rects = ((float(bcy), float(bhx), float(bhy)), (float(scy), float(shx), float(shy)))
        self.y_join = float(bcy - bhy)
        self.y_top, self.y_bottom = float(bcy + bhy), float(scy - shy)
        self.bar_half_x, self.stem_half_x = float(bhx), float(shx)
        self.area = 4.0 * float(bhx * bhy + shx * shy)
        corners = [(hx, cy + sign * hy) for cy, hx, hy in self.rects for sign in (-1.0, 1.0)]
        # Two Ts whose centres are farther apart than twice this radius cannot overlap.
        self.circumradius = max(math.hypot(x, y) for x, y in corners)

    def __call__(self, dx: float, dy: float, dyaw: float) -> float:
        """Coverage for the block's centre of area at (dx, dy) and yaw dyaw in the goal T's frame."""
        reach = 2.0 * self.circumradius
        if dx * dx + dy * dy >= reach * reach:
            return 0.0
        c, s = math.cos(dyaw), math.sin(dyaw)
        y_join, y_top, y_bottom = self.y_join, self.y_top, self.y_bottom
        bar_x, stem_x = self.bar_half_x, self.stem_half_x
        total = 0.0
        for cy, hx, hy in self.rects:
            x0, y0 = dx - s * cy, dy + c * cy  # this rectangle's centre in the goal frame
            ax, ay, bx, by = c * hx, s * hx, -s * hy, c * hy
            ex, ey = abs(ax) + abs(bx), abs(ay) + abs(by)  # half extents of its bounding box
            if y0 - ey >= y_top or y0 + ey <= y_bottom or x0 - ex >= bar_x or x0 + ex <= -bar_x:
                continue
            corners = [(x0 + ax + bx, y0 + ay + by), (x0 - ax + bx, y0 - ay + by),
                       (x0 - ax - bx, y0 - ay - by), (x0 + ax - bx, y0 + ay - by)]
            if y0 + ey <= y_join:
                below, above = corners, None
            elif y0 - ey >= y_join:
                below, above = None, corners
            else:
                below, above = _split_at_y(corners, y_join)
            if above:
                if x0 - ex < -bar_x:
                    above = _clip(above, 0, -bar_x, keep_below=False)
                if x0 + ex > bar_x and above:
                    above = _clip(above, 0, bar_x, keep_below=True)
                if y0 + ey > y_top and above:
                    above = _clip(above, 1, y_top, keep_below=True)
                total += _polygon_area(above)
            if below and x0 - ex < stem_x and x0 + ex > -stem_x:
                if x0 - ex < -stem_x:
                    below = _clip(below, 0, -stem_x, keep_below=False)
                if x0 + ex > stem_x and below:
                    below = _clip(below, 0, stem_x, keep_below=True)
                if y0 - ey < y_bottom and below:
                    below = _clip(below, 1, y_bottom, keep_below=False)
                total += _polygon_area(below)
        return total / self.area


def _numbers(arg: str, value) -> tuple:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise ValueError(f"PushTEnv: {arg} must be a list of numbers, got {type(value).__name__} {value!r}")
    return tuple(value)


def _scene_config(scene) -> PushTSceneConfig:
    """Accept a PushTSceneConfig, a mapping of its fields (e.g. from Hydra; `shape` may be a mapping) or None."""
    if scene is None:
        return PushTSceneConfig()
    if isinstance(scene, PushTSceneConfig):
        return scene
    if isinstance(scene, Mapping) or hasattr(scene, "items"):
        fields = dict(scene.items())
        known = {f.name for f in dataclasses.fields(PushTSceneConfig)}
        unknown = sorted(set(fields) - known)
        if unknown:
            raise ValueError(f"PushTEnv: unknown scene option(s) {unknown}; expected some of {sorted(known)}")
        shape = fields.get("shape")
        if shape is not None and not isinstance(shape, TShape):
            if not (isinstance(shape, Mapping) or hasattr(shape, "items")):
                raise ValueError(f"PushTEnv: scene.shape must be a mapping of TShape fields, got {shape!r}")
            shape = dict(shape.items())
            known = {f.name for f in dataclasses.fields(TShape)}
            if set(shape) - known:
                raise ValueError(f"PushTEnv: unknown scene.shape option(s) {sorted(set(shape) - known, key=str)}; "
                                 f"expected some of {sorted(known)}")
            fields["shape"] = TShape(**{k: _numbers(f"scene.shape.{k}", v) if k != "half_height" else v
                                        for k, v in shape.items()})
        if "goal_pose" in fields:
            fields["goal_pose"] = _numbers("scene.goal_pose", fields["goal_pose"])
        return PushTSceneConfig(**fields)
    raise ValueError(f"PushTEnv: scene must be a PushTSceneConfig or a mapping, got {type(scene).__name__}")


class PushTEnv(MujocoTaskEnv):
    """Push a T-shaped block into the goal pose with a round planar pusher (gym-pusht in MuJoCo, metres).

    Action: (2,) absolute target (x, y) of the pusher in metres, world frame, bounds [-0.25, 0.25] each
    (out-of-bound targets are clipped). Position servos on two slide joints track it (force-limited, so the
    pusher's speed stays below ~0.7 m/s). Default 10 Hz control, 2 ms physics.
    Observation (state): agent_pos = pusher (x, y) in m; environment_state = block (x, y) in m of the T's centre of
    area and its yaw in rad wrapped to [-pi, pi) (yaw 0: bar towards +y). The goal is fixed at `goal_pose`
    (default x = y = 0, yaw = pi/4; gym-pusht's goal).
    Coverage = area(block T & goal T) / area(goal T), exact (see TOverlap). Success: coverage >= success_coverage
    (0.95); the episode then terminates. Reward: dense clip(coverage / success_coverage, 0, 1) like gym-pusht, or
    sparse 1.0 on success.
    The block (slide x, y, z and yaw joints) rests on the table on one pad with Coulomb sliding and torsional
    friction in an elliptic cone (isotropic; the ellipsoidal limit surface of quasi-static pushing). Domain
    randomization scales the block's size; the goal T is drawn with, and coverage uses, the block's current size.
    """

    default_control_hz = 10.0
    default_max_episode_steps = 300
    environment_state_names = ("block_x", "block_y", "block_yaw")
    environment_state_units = ("m", "m", "rad")
    default_image_size = (96, 96)
    render_size = (256, 256)
    terminate_on_success = True
    randomized_object_bodies = ("block",)
    size_randomized_bodies = ("block",)
    action_units = ["m", "m"]

    # Initial-state distribution (gym-pusht: block in [100, 400]^2 px, pusher in [50, 450]^2 px, goal at 256).
    block_init_half = 0.15
    pusher_init_half = 0.20
    max_initial_coverage = 0.5  # "away from the goal": resample block poses that already cover this much
    # Rejection sampling gives up after this many draws with a ValueError; a placeable scene needs a handful.
    max_sampling_tries = 1000

    def __init__(
        self,
        *args,
        reward_type: str = "dense",
        success_coverage: float = 0.95,
        scene: PushTSceneConfig | None = None,
        **kwargs,
    ) -> None:
        self.reward_type = check_choice("PushTEnv", "reward_type", reward_type, REWARD_TYPES)
        self.success_coverage = check_real("PushTEnv", "success_coverage", success_coverage, minimum=0.0, maximum=1.0,
                                           reason=" (a fraction of the goal's area)")
        self.scene = _scene_config(scene)
        super().__init__(*args, **kwargs)

    # ------------------------------------------------------------------ model
    def build_mjcf(self) -> str:
        return push_t_scene_xml(self.scene)

    def setup(self) -> None:
        m = self.model

        def joint_qpos(name: str) -> int:
            return int(m.jnt_qposadr[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, name)])

        def geom(name: str) -> int:
            return mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_GEOM, name)

        self._bx, self._by, self._bz, self._byaw = (
            joint_qpos(n) for n in ("block_x", "block_y", "block_z", "block_yaw")
        )
        self._px = joint_qpos("pusher_x")
        if joint_qpos("pusher_y") != self._px + 1:
            raise ValueError("PushT model: pusher_y must follow pusher_x in qpos")
        self._block_geoms = np.array([geom("block_bar"), geom("block_stem")])
        self._pad_geom = geom("pad")
        block_body = m.geom_bodyid[self._pad_geom]
        self._block_bvh = slice(m.body_bvhadr[block_body], m.body_bvhadr[block_body] + m.body_bvhnum[block_body])
        self._nominal_bvh = m.bvh_aabb[self._block_bvh].copy()
        self._nominal_bar_half_x = float(m.geom_size[self._block_geoms[0], 0])
        self._goal_geoms = np.array([geom("goal_bar"), geom("goal_stem")])
        self._pusher_dofs = np.array([m.jnt_dofadr[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, n)]
                                      for n in ("pusher_x", "pusher_y")])
        self.goal_pose = tuple(float(v) for v in self.scene.goal_pose)
        self._goal_cos, self._goal_sin = math.cos(self.goal_pose[2]), math.sin(self.goal_pose[2])
        self._env_state = np.zeros(3)
        self._sync_shape()
        self._rest_z = self._settled_block_height()
        self._nominal_pad_bottom = self._pad_bottom()

    def _settled_block_height(self) -> float:
        """Height of the block resting on its pad (contact softness and margin), so episodes start at rest."""
        m, d = self.model, self.data
        mujoco.mj_resetData(m, d)
        d.qpos[self._px : self._px + 2] = d.ctrl[:] = (self.scene.workspace_half, self.scene.workspace_half)
        mujoco.mj_step(m, d, nstep=int(round(0.5 / m.opt.timestep)))
        z = float(d.qpos[self._bz])
        mujoco.mj_resetData(m, d)
        return z

    def _pad_bottom(self) -> float:
        """Lowest point of the pad in the block frame (changes when the block's size is randomized)."""
        return float(self.model.geom_pos[self._pad_geom, 2] - self.model.geom_size[self._pad_geom, 0])

    def robot_dofs(self) -> np.ndarray:
        return self._pusher_dofs

    @property
    def action_names(self) -> list[str]:
        return ["pusher_x", "pusher_y"]

    def block_rects(self) -> np.ndarray:
        """Current (possibly size-randomized) bar and stem rectangles [cx, cy, hx, hy] in the block frame."""
        m, g = self.model, self._block_geoms
        return np.column_stack([m.geom_pos[g, :2], m.geom_size[g, :2]])

    def _sync_shape(self) -> None:
        """Make the goal marker, the collision bounds and the overlap computation match the block's current size."""
        m = self.model
        # MuJoCo culls collisions with the body's compiled bounding boxes: they must grow with the block, or a
        # larger block's pad sinks into the table before its contact is seen.
        scale = float(m.geom_size[self._block_geoms[0], 0]) / self._nominal_bar_half_x
        m.bvh_aabb[self._block_bvh] = self._nominal_bvh * scale
        m.geom_size[self._goal_geoms, :2] = m.geom_size[self._block_geoms, :2]
        m.geom_pos[self._goal_geoms, :2] = m.geom_pos[self._block_geoms, :2]
        self.overlap = TOverlap(self.block_rects())
        self._cov_key = None
        self._coverage = 0.0

    # ------------------------------------------------------------------ episode
    def max_object_size_scale(self) -> tuple[float, str]:
        # The block's centre starts within block_init_half of the goal; the whole T must then still lie on the table.
        scene = self.scene
        radius = TOverlap(self.block_rects()).circumradius  # nominal shape: setup() runs before any randomization
        room = scene.table_half - self.block_init_half - max(abs(scene.goal_pose[0]), abs(scene.goal_pose[1]))
        largest = room / radius
        return largest, (
            f"the T (circumradius {radius:.3f} m at scale 1) starts within {self.block_init_half} m of the goal "
            f"{scene.goal_pose[:2]} and must lie on the table (half size {scene.table_half} m)"
        )

    def sample_initial_state(self, rng: np.random.Generator) -> None:
        self._sync_shape()
        q = self.data.qpos
        gx, gy, _ = self.goal_pose
        for _ in range(self.max_sampling_tries):
            bx, by = rng.uniform(-self.block_init_half, self.block_init_half, size=2) + (gx, gy)
            yaw = rng.uniform(-math.pi, math.pi)
            if self._overlap_at(bx, by, yaw) < self.max_initial_coverage:
                break
        else:
            self._sampling_failed(f"block pose covering < {self.max_initial_coverage} of the goal")
        for _ in range(self.max_sampling_tries):
            pusher = rng.uniform(-self.pusher_init_half, self.pusher_init_half, size=2)
            if self.distance_to_block(pusher, (bx, by, yaw)) > 0.01:
                break
        else:
            self._sampling_failed("pusher position clear of the block")
        rest_z = self._rest_z + self._nominal_pad_bottom - self._pad_bottom()
        q[self._bx], q[self._by], q[self._bz], q[self._byaw] = bx, by, rest_z, yaw
        q[self._px : self._px + 2] = pusher
        self.data.ctrl[:] = pusher

    def _sampling_failed(self, what: str) -> None:
        scale = self._randomizer.size_scales.get("block", 1.0)
        raise ValueError(
            f"PushTEnv.reset: no {what} found in {self.max_sampling_tries} random draws (block size scale {scale:.3g}, "
            f"randomization.object_size_scale {list(self.randomization.object_size_scale)}, scene {self.scene}); "
            "use a smaller object_size_scale or a larger table"
        )

    def distance_to_block(self, point, block_pose) -> float:
        """Distance from `point` (x, y) to the block T's boundary minus the pusher radius (< 0: overlapping)."""
        bx, by, yaw = block_pose
        c, s = math.cos(yaw), math.sin(yaw)
        px, py = point[0] - bx, point[1] - by
        lx, ly = c * px + s * py, -s * px + c * py
        best = math.inf
        for cx, cy, hx, hy in self.block_rects():
            ox, oy = max(abs(lx - cx) - hx, 0.0), max(abs(ly - cy) - hy, 0.0)
            best = min(best, math.hypot(ox, oy))
        return best - self.scene.pusher_radius

    # ------------------------------------------------------------------ observations, reward, success
    def agent_pos(self) -> np.ndarray:
        return self.data.qpos[self._px : self._px + 2]

    def environment_state(self) -> np.ndarray:
        q, out = self.data.qpos, self._env_state
        out[0] = q[self._bx]
        out[1] = q[self._by]
        out[2] = (q[self._byaw] + math.pi) % _TWO_PI - math.pi
        return out

    def _overlap_at(self, x: float, y: float, yaw: float) -> float:
        wx, wy = x - self.goal_pose[0], y - self.goal_pose[1]
        c, s = self._goal_cos, self._goal_sin
        return self.overlap(c * wx + s * wy, -s * wx + c * wy, yaw - self.goal_pose[2])

    def coverage(self) -> float:
        """area(block T & goal T) / area(goal T) of the current state; recomputed only when the block moved."""
        q = self.data.qpos
        key = (q[self._bx], q[self._by], q[self._byaw])
        if key != self._cov_key:
            self._cov_key = key
            self._coverage = self._overlap_at(float(key[0]), float(key[1]), float(key[2]))
        return self._coverage

    def is_success(self) -> bool:
        return self.coverage() >= self.success_coverage

    def compute_reward(self) -> float:
        if self.reward_type == "sparse":
            return 1.0 if self.coverage() >= self.success_coverage else 0.0
        return min(self.coverage() / self.success_coverage, 1.0)
