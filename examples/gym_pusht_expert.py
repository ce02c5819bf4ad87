"""A user's scripted expert for gym-pusht (gym_pusht/PushT-v0), the policy factory `scripts/collect.py` records with.

`make_expert(env)` returns a policy (one observation -> target position in pixels) with `reset()`. It reads the T's
pose from `environment_state` (keypoints), from a flat `state`, or, for obs_type=pixels_agent_pos, by fitting the T's
outline to the 96x96 image; it then tries candidate pushes in its own copy of the env's physics and makes the one that
brings the T closest to the goal, walking the pusher around the T to get there.
"""

from __future__ import annotations

import math

import numpy as np
import pymunk
import shapely.geometry as sg

# The T in its body frame (gym_pusht.envs.pusht.PushTEnv.add_tee, scale 30): a bar and a stem, as (x0, x1, y0, y1).
BAR = (-60.0, 60.0, 0.0, 30.0)
STEM = (-15.0, 15.0, 30.0, 120.0)
GOAL = np.array([256.0, 256.0, math.pi / 4])  # the env's goal_pose: x, y, angle
AGENT_RADIUS = 15.0
# Outward normals and contact points on the T's outline (body frame), every ~15 px along each reachable edge.
_EDGES = [((-60, 0), (60, 0), (0, -1)), ((60, 0), (60, 30), (1, 0)), ((-60, 30), (-60, 0), (-1, 0)),
          ((60, 30), (15, 30), (0, 1)), ((-15, 30), (-60, 30), (0, 1)), ((15, 30), (15, 120), (1, 0)),
          ((-15, 120), (-15, 30), (-1, 0)), ((15, 120), (-15, 120), (0, 1))]


def _contacts() -> tuple[np.ndarray, np.ndarray]:
    points, normals = [], []
    for start, end, normal in _EDGES:
        start, end = np.array(start, float), np.array(end, float)
        n = max(1, int(round(np.linalg.norm(end - start) / 15.0)))
        for t in (np.arange(n) + 0.5) / n:
            points.append(start + t * (end - start))
            normals.append(normal)
    return np.array(points), np.array(normals, float)


def _rot(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s], [s, c]])


def wrap(angle: float) -> float:
    return (angle + math.pi) % (2 * math.pi) - math.pi


def pose_cost(pose: np.ndarray) -> float:
    """Distance to the goal in px, the angle weighted by the T's size."""
    return float(np.hypot(*(pose[:2] - GOAL[:2])) + 60.0 * abs(wrap(pose[2] - GOAL[2])))


def t_polygon(pose: np.ndarray, grow: float = 0.0):
    rot, shapes = _rot(pose[2]), []
    for x0, x1, y0, y1 in (BAR, STEM):
        corners = np.array([(x0, y0), (x1, y0), (x1, y1), (x0, y1)]) @ rot.T + pose[:2]
        shapes.append(sg.Polygon(corners))
    union = shapes[0].union(shapes[1])
    return union.buffer(grow) if grow else union


class PoseFromPixels:
    """The T's pose (x, y, angle of its body frame) from the 96x96 RGB image gym-pusht renders.

    The T is drawn light slate (blue > red by ~40) with a 2 px outline; the background, goal and walls are grey or
    green (blue == red). Each image pixel samples the 512x512 drawing at one point, so the pose is the one whose
    outline, grown by the outline width, best explains the per-pixel 'T-ness' (pixels near the pusher left out).
    """

    def __init__(self, size: int) -> None:
        centres = (np.arange(size) + 0.5) * 512.0 / size - 0.5
        self.x, self.y = np.meshgrid(centres, centres)  # image rows are y, columns x
        self.size = size

    def _model(self, pose: np.ndarray, x: np.ndarray, y: np.ndarray, ramp: float) -> np.ndarray:
        c, s = math.cos(pose[2]), math.sin(pose[2])
        dx, dy = x - pose[0], y - pose[1]
        lx, ly = c * dx + s * dy, -s * dx + c * dy
        dist = None
        for x0, x1, y0, y1 in (BAR, STEM):
            d = np.maximum(np.abs(lx - (x0 + x1) / 2) - (x1 - x0) / 2, np.abs(ly - (y0 + y1) / 2) - (y1 - y0) / 2)
            dist = d if dist is None else np.minimum(dist, d)
        return np.clip(0.5 - (dist - 2.0) / ramp, 0.0, 1.0)

    def __call__(self, pixels: np.ndarray, agent_pos: np.ndarray, guess: np.ndarray | None) -> np.ndarray:
        img = pixels.astype(np.float32)
        tness = np.clip((img[..., 2] - img[..., 0]) / 38.0, 0.0, 1.0)
        usable = (img[..., 2] - img[..., 0] < 60.0) & (np.hypot(self.x - agent_pos[0], self.y - agent_pos[1]) > 21.0)
        if tness[usable].sum() < 3:
            return guess if guess is not None else GOAL.copy()
        ys, xs = np.nonzero((tness > 0.5) & usable)
        centre = np.array([self.x[0, xs].mean(), self.y[ys, 0].mean()])
        box = usable & (np.abs(self.x - centre[0]) < 140) & (np.abs(self.y - centre[1]) < 140)
        x, y, target = self.x[box], self.y[box], tness[box]

        def loss(pose: np.ndarray, ramp: float) -> float:
            return float(np.square(self._model(pose, x, y, ramp) - target).sum())

        starts = [] if guess is None else [np.asarray(guess, float)]
        if guess is None or loss(starts[0], 4.0) > 6.0:  # lost track (or first frame): search every angle
            mass_centre = np.array([0.0, (3600 * 15 + 2700 * 75) / 6300])
            best = min((loss(np.r_[centre - _rot(a) @ mass_centre, a], 8.0), a) for a in np.linspace(0, 2 * math.pi, 72,
                                                                                                   endpoint=False))
            a = best[1]
            starts.append(np.r_[centre - _rot(a) @ mass_centre, a])
        pose = min(starts, key=lambda p: loss(p, 4.0))
        for ramp, step in ((8.0, np.array([4.0, 4.0, 0.06])), (4.0, np.array([1.5, 1.5, 0.02])),
                           (1.5, np.array([0.5, 0.5, 0.008]))):
            pose = _pattern_search(lambda p: loss(p, ramp), pose, step, iters=60)
        return np.r_[pose[:2], wrap(pose[2])]


def _pattern_search(f, x: np.ndarray, step: np.ndarray, iters: int) -> np.ndarray:
    """Coordinate pattern search: try +-step on each coordinate, halve the steps when nothing improves."""
    x, fx = np.array(x, float), f(x)
    for _ in range(iters):
        improved = False
        for i in range(len(x)):
            for sign in (1.0, -1.0):
                trial = x.copy()
                trial[i] += sign * step[i]
                ft = f(trial)
                if ft < fx:
                    x, fx, improved = trial, ft, True
                    break
        if not improved:
            step = step / 2
            if step[0] < 0.1:
                break
    return x


class PushTExpert:
    """Plan a push in a private copy of the physics, walk around the T to its start, push, repeat."""

    LENGTHS = (6.0, 12.0, 24.0, 40.0, 60.0, 80.0)  # push targets, px from the start point, one a step
    NUDGES = (3.0, 6.0, 12.0, 24.0)  # px, pushes from the pusher's own position
    TURNS = (-0.3, 0.0, 0.3)  # push direction relative to the inward normal, rad

    def __init__(self, env) -> None:
        task = env.unwrapped
        # our own copy of the scene, built with the env's own builders: the recorded env is never touched
        cls = type(task)
        self.space = pymunk.Space()
        self.space.gravity = 0, 0
        self.space.add(*[cls.add_segment(self.space, a, b, 2) for a, b in
                         (((5, 506), (5, 5)), ((5, 5), (506, 5)), ((506, 5), (506, 506)), ((5, 506), (506, 506)))])
        self.pusher = cls.add_circle(self.space, (256, 400), AGENT_RADIUS)
        self.block, shapes = cls.add_tee(self.space, (256, 300), 0)
        self.k_p, self.k_v, self.dt = task.k_p, task.k_v, task.dt
        self.substeps = int(round(1 / (task.dt * task.control_hz)))
        self.points, self.normals = _contacts()
        # the keypoints of environment_state, in the order the env lists them, in the T's body frame
        self.keypoints = np.array([tuple(v) for shape in shapes for v in shape.get_vertices()])
        self.pixels_pose = None
        self.reset()

    def reset(self) -> None:
        self.pose = None
        self.plan: list[tuple[np.ndarray, str]] = []
        self.last_agent = None

    # --------------------------------------------------------------------------------------------- perception
    def _observe(self, obs) -> tuple[np.ndarray, np.ndarray]:
        if isinstance(obs, dict) and "environment_state" in obs:
            kp = np.asarray(obs["environment_state"], float).reshape(8, 2)
            local = self.keypoints
            angle = math.atan2(kp[1, 1] - kp[0, 1], kp[1, 0] - kp[0, 0]) - math.atan2(
                local[1, 1] - local[0, 1], local[1, 0] - local[0, 0])
            centre = kp.mean(0) - _rot(angle) @ local.mean(0)
            return np.asarray(obs["agent_pos"], float), np.r_[centre, wrap(angle)]
        if isinstance(obs, dict) and "pixels" in obs:
            pixels = np.asarray(obs["pixels"])
            if self.pixels_pose is None:
                self.pixels_pose = PoseFromPixels(pixels.shape[0])
            agent = np.asarray(obs["agent_pos"], float)
            return agent, self.pixels_pose(pixels, agent, self.pose)
        state = np.asarray(obs, float)  # obs_type=state: agent x, y, block x, y, angle
        return state[:2], state[2:5].copy()

    # --------------------------------------------------------------------------------------------- planning
    def _simulate(self, agent: np.ndarray, pose: np.ndarray, targets: list[np.ndarray]) -> list[np.ndarray]:
        """Block poses after each target, the pusher starting at rest at `agent` (the env's PD control and physics)."""
        pusher, block = self.pusher, self.block
        pusher.position, pusher.velocity = (float(agent[0]), float(agent[1])), (0.0, 0.0)
        block.angle = float(pose[2])  # the angle first: pymunk turns a body about its centre of gravity
        block.position = (float(pose[0]), float(pose[1]))
        block.velocity, block.angular_velocity = (0.0, 0.0), 0.0
        poses, k_p, k_v, dt = [], self.k_p, self.k_v, self.dt
        for tx, ty in targets:
            for _ in range(self.substeps):
                (px, py), (vx, vy) = pusher.position, pusher.velocity
                pusher.velocity = (vx + (k_p * (tx - px) - k_v * vx) * dt, vy + (k_p * (ty - py) - k_v * vy) * dt)
                self.space.step(dt)
            (bx, by), angle = block.position, block.angle
            poses.append(np.array([bx, by, angle]))
        return poses

    def _route(self, agent: np.ndarray, start: np.ndarray, pose: np.ndarray, keep_out) -> list[np.ndarray] | None:
        """Waypoints from the pusher to `start` that keep clear of the T (around its bounding circle if needed)."""
        if not keep_out.intersects(sg.LineString([agent, start])):
            return [start]
        centre = pose[:2] + _rot(pose[2]) @ np.array([0.0, 45.0])  # every corner of the T is within 75.1 px of it
        radius = 75.1 + AGENT_RADIUS + 8.0
        a0 = math.atan2(agent[1] - centre[1], agent[0] - centre[0])
        a1 = math.atan2(start[1] - centre[1], start[0] - centre[0])
        turn = wrap(a1 - a0)
        n = max(1, int(abs(turn) / 0.35))
        ring = [centre + radius * np.array([math.cos(a0 + turn * k / n), math.sin(a0 + turn * k / n)])
                for k in range(n + 1)]
        if keep_out.intersects(sg.LineString([ring[-1], start])):
            return None
        return [np.clip(p, 20.0, 492.0) for p in ring] + [start]

    def _replan(self, agent: np.ndarray, pose: np.ndarray) -> list[tuple[np.ndarray, str]]:
        """The push (contact point, direction, length) that reduces the pose error fastest per control step."""
        rot = _rot(pose[2])
        keep_out = t_polygon(pose, AGENT_RADIUS + 1.0)
        current = pose_cost(pose)
        best, best_rate = None, 0.0
        for point, normal in zip(self.points, self.normals):
            n_world = rot @ normal
            start = pose[:2] + rot @ point + n_world * (AGENT_RADIUS + 4.0)
            if not (20.0 <= start[0] <= 492.0 and 20.0 <= start[1] <= 492.0):
                continue
            route = None
            for turn in self.TURNS:
                direction = _rot(turn) @ -n_world
                targets = [start + direction * length for length in self.LENGTHS]
                poses = self._simulate(start, pose, targets + [targets[-1]])
                for k in range(len(targets)):
                    # the pose one step after the target stops advancing (the pusher catches up)
                    gain = current - pose_cost(poses[k + 1] if k + 1 < len(targets) else poses[-1])
                    if gain <= 0.05:
                        continue
                    if route is None:
                        route = self._route(agent, start, pose, keep_out) or []
                    if not route:
                        break
                    travel = sum(np.linalg.norm(b - a) for a, b in zip([agent] + route[:-1], route))
                    rate = gain / (travel / 15.0 + k + 4.0)
                    if rate > best_rate:
                        best_rate = rate
                        best = ([(p, "via") for p in route[:-1]] + [(route[-1], "start")]
                                + [(t, "push") for t in targets[:k + 1] + [targets[k]]])
        # small pushes from where the pusher is, simulated from its real position: the fine corrections at the end
        for angle in np.linspace(0, 2 * math.pi, 16, endpoint=False):
            direction = np.array([math.cos(angle), math.sin(angle)])
            targets = [agent + direction * length for length in self.NUDGES]
            poses = self._simulate(agent, pose, targets + [targets[-1]])
            for k in range(len(targets)):
                gain = current - pose_cost(poses[k + 1])
                rate = gain / (k + 2.0)
                if gain > 0.05 and rate > best_rate:
                    best_rate, best = rate, [(t, "push") for t in targets[:k + 1] + [targets[k]]]
        return best or []

    # --------------------------------------------------------------------------------------------- acting
    def __call__(self, obs) -> np.ndarray:
        agent, self.pose = self._observe(obs)
        moved = np.inf if self.last_agent is None else float(np.linalg.norm(agent - self.last_agent))
        self.last_agent = agent
        # waypoints are passed through, a push starts from rest at its start point, push targets advance every step
        while self.plan and self.plan[0][1] != "push" and np.linalg.norm(agent - self.plan[0][0]) < (
                25.0 if self.plan[0][1] == "via" else 2.0) and (self.plan[0][1] == "via" or moved < 1.0):
            self.plan.pop(0)
        if not self.plan:
            self.plan = self._replan(agent, self.pose)
            if not self.plan:  # nothing predicted to help: back off a little and look again
                away = agent - (self.pose[:2] + _rot(self.pose[2]) @ np.array([0.0, 45.0]))
                self.plan = [(np.clip(agent + 20.0 * away / (np.linalg.norm(away) + 1e-6), 20.0, 492.0), "push")]
        target, kind = self.plan[0]
        if kind == "push":
            self.plan.pop(0)
        return np.asarray(target, np.float32)


def make_expert(env) -> PushTExpert:
    """policy_factory for scripts/collect.py: `policy_factory=gym_pusht_expert:make_expert`."""
    return PushTExpert(env)
