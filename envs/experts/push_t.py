"""Scripted Push-T expert: picks pushes from a library of simulated push outcomes and walks the pusher around the T."""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass

import mujoco
import numpy as np
from mujoco import rollout

from envs.tasks.push_t import PushTEnv, wrap_angle

# Push libraries are simulated once per (scene, timestep) and shared by every expert in the process.
_LIBRARY_CACHE: dict[tuple, "PushLibrary"] = {}


@dataclass(frozen=True)
class PushProfile:
    """How a push is commanded: a quick move to just short of the block, then a constant-speed advance."""

    speed: float  # m/s while pushing
    max_length: float  # m of pusher travel past the pre-push point
    gap: float = 0.008  # m between pusher surface and block at the pre-push point
    jump_short: float = 0.003  # the first command moves the pusher to this distance before contact

    def targets(self, control_dt: float, length: float) -> np.ndarray:
        """Pusher travel targets (m from the pre-push point), one per control step, ending at `length`."""
        first = max(self.gap - self.jump_short, 0.0)
        if length <= first:
            return np.array([length])
        n = int(math.ceil((length - first) / (self.speed * control_dt)))
        return np.minimum(first + self.speed * control_dt * np.arange(n + 1), length)


FAST = PushProfile(speed=0.10, max_length=0.11)
SLOW = PushProfile(speed=0.025, max_length=0.028)


class PushLibrary:
    """Outcomes of pushes on a block at the origin, simulated with the task's own (nominal) MuJoCo model.

    Physics on the table is invariant to where the block is and how it is turned (isotropic friction, identical
    x/y servos), so a push defined in the block's frame has the same effect anywhere. For every primitive (contact
    point on the T's outline, push direction, profile) the library stores, every 10 ms of a long constant-speed
    push, the pusher's travel and the block's displacement in its initial frame. Stopping the push when the pusher
    has travelled s leaves the block (nearly: quasi-static pushing) at the displacement recorded at s.
    """

    def __init__(self, env: PushTEnv, profiles: tuple[PushProfile, ...] = (FAST, SLOW)) -> None:
        model = mujoco.MjModel.from_xml_string(env.build_mjcf())
        model.opt.timestep = env.model.opt.timestep
        self.model = model
        self.control_dt = 1.0 / env.control_hz
        self.n_substeps = env.n_substeps
        self.radius = env.scene.pusher_radius
        self.rects = env.scene.shape.rects()
        points, normals = self._contact_points()
        angles = np.array([-0.4, -0.2, 0.0, 0.2, 0.4])
        self.tables = [self._simulate(profile, points, normals, angles) for profile in profiles]

    def _contact_points(self, spacing: float = 0.011) -> tuple[np.ndarray, np.ndarray]:
        """Points on the T's outline (block frame) that the pusher can reach, with outward normals."""
        (_, bcy, bhx, bhy), (_, scy, shx, shy) = self.rects
        top, join, bottom = bcy + bhy, bcy - bhy, scy - shy
        edges = [  # (start, end, outward normal)
            ((bhx, top), (-bhx, top), (0.0, 1.0)),
            ((-bhx, top), (-bhx, join), (-1.0, 0.0)),
            ((-bhx, join), (-shx, join), (0.0, -1.0)),
            ((-shx, join), (-shx, bottom), (-1.0, 0.0)),
            ((-shx, bottom), (shx, bottom), (0.0, -1.0)),
            ((shx, bottom), (shx, join), (1.0, 0.0)),
            ((shx, join), (bhx, join), (0.0, -1.0)),
            ((bhx, join), (bhx, top), (1.0, 0.0)),
        ]
        points, normals = [], []
        for start, end, normal in edges:
            start, end, normal = np.array(start), np.array(end), np.array(normal)
            length = np.linalg.norm(end - start)
            n = max(int(round(length / spacing)), 1)
            for f in (np.arange(n) + 0.5) / n:
                p = start + f * (end - start)
                # The pusher centre in front of the point must clear the rest of the T (concave corners).
                centre = p + normal * (self.radius + 0.002)
                if _distance_to_t(centre, self.rects) >= self.radius:
                    points.append(p)
                    normals.append(normal)
        return np.array(points), np.array(normals)

    def _simulate(self, profile: PushProfile, points, normals, angles) -> dict[str, np.ndarray]:
        """Simulate every (contact point, push angle) of one profile; the T's mirror symmetry halves the work."""
        n_pts, n_ang = len(points), len(angles)
        normal_angle = np.arctan2(-normals[:, 1], -normals[:, 0])
        push_angle = (normal_angle[:, None] + angles[None, :]).reshape(-1)
        direction = np.stack([np.cos(push_angle), np.sin(push_angle)], axis=1)
        start = np.repeat(points + normals * (self.radius + profile.gap), n_ang, axis=0)
        # A push at a point with x > 0 is the mirror image (x -> -x) of the push at the mirrored point with the
        # opposite angle: simulate only x <= 0 and mirror the rest.
        mirror_point = [int(np.argmin(np.linalg.norm(points - p * (-1.0, 1.0), axis=1))) for p in points]
        source = np.empty(n_pts * n_ang, dtype=int)
        flipped = np.zeros(n_pts * n_ang, dtype=bool)
        simulated = [i * n_ang + a for i in range(n_pts) if points[i, 0] <= 1e-9 for a in range(n_ang)]
        row = {b: k for k, b in enumerate(simulated)}
        for i in range(n_pts):
            for a in range(n_ang):
                b = i * n_ang + a
                if b in row:
                    source[b] = row[b]
                else:
                    source[b] = row[mirror_point[i] * n_ang + (n_ang - 1 - a)]
                    flipped[b] = True
        travel, block = self._rollouts(profile, start[simulated], direction[simulated])
        travel, block = travel[source], block[source].copy()
        block[flipped, :, 0] *= -1.0
        block[flipped, :, 2] *= -1.0
        return {
            "profile": profile,
            "start": start,  # (B, 2) pre-push pusher centre, block frame
            "normal": np.repeat(normals, n_ang, axis=0),  # (B, 2) outward normal at the contact point
            "offset": np.repeat(np.einsum("pk,pk->p", points, normals), n_ang),  # (B,) edge distance from centre
            "direction": direction,  # (B, 2)
            "travel": travel,  # (B, T) pusher travel past the start
            "block": block,  # (B, T, 3) block x, y, yaw relative to its initial pose
        }

    def _rollouts(self, profile: PushProfile, start: np.ndarray, direction: np.ndarray):
        m = self.model
        d = mujoco.MjData(m)
        ids = {n: int(m.jnt_qposadr[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, n)])
               for n in ("block_x", "block_y", "block_z", "block_yaw", "pusher_x")}
        # Rest height of the block: settle once with the pusher far away.
        mujoco.mj_resetData(m, d)
        d.qpos[ids["pusher_x"] : ids["pusher_x"] + 2] = d.ctrl[:] = 0.25
        mujoco.mj_step(m, d, nstep=250)
        rest_z = float(d.qpos[ids["block_z"]])

        targets = profile.targets(self.control_dt, profile.max_length)
        targets = np.append(targets, targets[-1])  # one more step for the block to settle
        control = start[:, None, :] + direction[:, None, :] * targets[None, :, None]
        control = np.repeat(control, self.n_substeps, axis=1)

        spec = mujoco.mjtState.mjSTATE_FULLPHYSICS
        mujoco.mj_resetData(m, d)
        d.qpos[ids["block_z"]] = rest_z
        template = np.zeros(mujoco.mj_stateSize(m, spec))
        mujoco.mj_getState(m, d, template, spec)
        state0 = np.tile(template, (len(start), 1))
        qpos0 = 1  # FULLPHYSICS state = [time, qpos, qvel, ...]
        px = qpos0 + ids["pusher_x"]
        state0[:, px : px + 2] = start
        states, _ = rollout.rollout(m, d, state0, control)
        every = max(int(round(0.01 / m.opt.timestep)), 1)  # keep a sample every 10 ms
        states = states[:, every - 1 :: every]
        travel = np.einsum("btk,bk->bt", states[:, :, px : px + 2] - start[:, None, :], direction)
        block = states[:, :, [qpos0 + ids["block_x"], qpos0 + ids["block_y"], qpos0 + ids["block_yaw"]]]
        return travel, block


def _distance_to_t(point, rects) -> float:
    """Distance from a point to the T (block frame); 0 inside."""
    best = math.inf
    for cx, cy, hx, hy in rects:
        ox, oy = max(abs(point[0] - cx) - hx, 0.0), max(abs(point[1] - cy) - hy, 0.0)
        best = min(best, math.hypot(ox, oy))
    return best


def _segment_hits_box(a, b, lo, hi) -> bool:
    """Slab test: does the segment a-b intersect the axis-aligned box [lo, hi]?"""
    t0, t1 = 0.0, 1.0
    for k in range(2):
        delta = b[k] - a[k]
        if abs(delta) < 1e-12:
            if a[k] < lo[k] or a[k] > hi[k]:
                return False
            continue
        u0, u1 = (lo[k] - a[k]) / delta, (hi[k] - a[k]) / delta
        if u0 > u1:
            u0, u1 = u1, u0
        t0, t1 = max(t0, u0), min(t1, u1)
        if t0 > t1:
            return False
    return True


class PushTExpert:
    """Observation-only Push-T expert.

    Each cycle: (1) from the averaged block observations, score every library push (composed with the block's
    pose, at every stopping point) by the pose cost |p - p_goal|^2 + (w * yaw error)^2, mildly penalising pushes
    that start far from the pusher, and keep the best one inside the workspace; (2) walk the pusher to its
    pre-push point on a collision-free path around the T (Dijkstra over a ring of waypoints); (3) push at the
    library profile's speed up to the chosen stopping point; (4) back off and re-plan. Far from the goal it uses
    fast long pushes, within 2 cm (pose error) slow precise ones, re-planned on arrival with the observations
    gathered on the way (observation noise). It estimates the block's size (domain randomization scales it) from
    how far each push moved the block, and re-plans when the block is bumped while walking.
    """

    yaw_weight = 0.06  # m per rad: 1 degree of yaw costs about as much coverage as 1 mm of translation
    fine_error = 0.02  # below this pose error (m) use the slow, precise pushes
    travel_speed = 0.35  # m/s of the pusher target while walking around the T
    walk_scale = 0.15  # m: a push this far away must promise half the cost of one right here
    clearance = 0.006  # m kept between the pusher and the T while walking

    def __init__(self, env) -> None:
        task = env.unwrapped
        if not isinstance(task, PushTEnv):
            raise ValueError(f"PushTExpert needs a PushTEnv, got {type(task).__name__}")
        key = (task.build_mjcf(), float(task.model.opt.timestep), float(task.control_hz))
        if key not in _LIBRARY_CACHE:
            _LIBRARY_CACHE[key] = PushLibrary(task)
        self.library = _LIBRARY_CACHE[key]
        self.goal = np.array(task.goal_pose, dtype=float)
        self.dt = 1.0 / task.control_hz
        self.radius = task.scene.pusher_radius
        self.limit = task.scene.workspace_half
        self.rects = task.scene.shape.rects()
        self.circumradius = max(math.hypot(hx, abs(cy) + hy) for _, cy, hx, hy in self.rects)
        self.reset()

    # ------------------------------------------------------------------ episode state
    def reset(self) -> None:
        self._mode = "plan"
        self._scale = 1.0  # estimated block size / nominal size (domain randomization changes it)
        self._done_push = None
        self._samples: list[np.ndarray] = []
        self._push = None
        self._path: list[np.ndarray] = []
        self._target = None
        self._wait = 0

    # ------------------------------------------------------------------ helpers
    def _cost(self, x, y, yaw):
        gx, gy, gyaw = self.goal
        dyaw = (yaw - gyaw + np.pi) % (2 * np.pi) - np.pi
        return (x - gx) ** 2 + (y - gy) ** 2 + (self.yaw_weight * dyaw) ** 2

    def _block_estimate(self) -> np.ndarray:
        samples = np.array(self._samples)
        ref = samples[-1, 2]
        yaw = ref + np.mean([wrap_angle(a - ref) for a in samples[:, 2]])
        return np.array([samples[:, 0].mean(), samples[:, 1].mean(), wrap_angle(yaw)])

    def _starts(self, table) -> np.ndarray:
        """Pre-push points (block frame) for the estimated block size: edges move by (scale - 1) * offset."""
        return table["start"] + table["normal"] * ((self._scale - 1.0) * table["offset"])[:, None]

    def _choose_push(self, block: np.ndarray, pusher: np.ndarray):
        x, y, yaw = block
        current = float(self._cost(x, y, yaw))
        fine = math.sqrt(current) < self.fine_error
        c, s = math.cos(yaw), math.sin(yaw)
        rot = np.array([[c, -s], [s, c]])
        best = None
        for table in self.library.tables:
            if fine != (table["profile"] is SLOW):
                continue
            start = self._starts(table) @ rot.T + block[:2]
            direction = table["direction"] @ rot.T
            rel = table["block"]
            bx = x + c * rel[..., 0] - s * rel[..., 1]
            by = y + s * rel[..., 0] + c * rel[..., 1]
            cost = self._cost(bx, by, yaw + rel[..., 2])
            end = start[:, None, :] + direction[:, None, :] * table["travel"][..., None]
            lim = self.limit - 0.005
            ok = (np.abs(start) <= lim).all(axis=1)[:, None] & (np.abs(end) <= lim).all(axis=2)
            ok &= table["travel"] > 0.0
            # Among similar outcomes prefer pushes that start close by: walking costs time.
            walk = np.linalg.norm(start - pusher, axis=1)
            score = np.where(ok, cost * (1.0 + walk / self.walk_scale)[:, None], np.inf)
            i, j = np.unravel_index(int(np.argmin(score)), score.shape)
            if best is None or score[i, j] < best[0]:
                best = (float(score[i, j]), float(cost[i, j]), table, int(i), int(j), start[i], direction[i])
        if best is None or not np.isfinite(best[0]):
            return None
        _, value, table, i, j, start, direction = best
        length = float(table["travel"][i, j])
        targets = table["profile"].targets(self.dt, length)
        return {"start": start, "direction": direction, "targets": list(targets), "cost": value, "length": length,
                "current": current, "block": block.copy(), "profile": table["profile"], "table": table, "row": i}

    def _update_scale(self, push, block: np.ndarray) -> None:
        """Estimate the block's size from how far the last push moved it.

        A block larger by a factor k meets the pusher earlier, by (k - 1) * (edge distance from the centre): find
        the shift of the push length that best explains the observed pose, then the size that explains the shift.
        """
        table, i = push["table"], push["row"]
        offset = float(table["offset"][i])
        if offset < 0.02:
            return
        x, y, yaw = push["block"]
        c, s = math.cos(yaw), math.sin(yaw)
        shifts = np.arange(-0.008, 0.00801, 0.0005)
        j = np.clip(np.searchsorted(table["travel"][i], push["length"] + shifts), 0, table["travel"].shape[1] - 1)
        rel = table["block"][i, j]
        px = x + c * rel[:, 0] - s * rel[:, 1]
        py = y + s * rel[:, 0] + c * rel[:, 1]
        dyaw = (yaw + rel[:, 2] - block[2] + np.pi) % (2 * np.pi) - np.pi
        err = (px - block[0]) ** 2 + (py - block[1]) ** 2 + (self.yaw_weight * dyaw) ** 2
        # Shifts that fit about as well as the best are indistinguishable: take the one closest to no change.
        good = np.flatnonzero(err <= err.min() + 0.0015**2)
        shift = shifts[good[np.argmin(np.abs(shifts[good] - (self._scale - 1.0) * offset))]]
        if err.min() > 0.004**2:
            return  # the push did something the library cannot explain (bumped, slipped): learn nothing
        observed = float(np.clip(1.0 + shift / offset, 0.9, 1.1))
        self._scale = float(np.clip(self._scale + 0.5 * (observed - self._scale), 0.94, 1.06))

    def _blocked(self, a, b, block, margin: float) -> bool:
        """Does the pusher centre moving a -> b come closer than `margin` to the T at `block`?"""
        x, y, yaw = block
        c, s = math.cos(yaw), math.sin(yaw)

        def local(p):
            dx, dy = p[0] - x, p[1] - y
            return (c * dx + s * dy, -s * dx + c * dy)

        la, lb = local(a), local(b)
        m = margin
        for cx, cy, hx, hy in self.rects * self._scale:
            if _segment_hits_box(la, lb, (cx - hx - m, cy - hy - m), (cx + hx + m, cy + hy + m)):
                return True
        return False

    def _plan_path(self, pusher: np.ndarray, goal: np.ndarray, normal: np.ndarray, block: np.ndarray):
        """Waypoints from the pusher to the pre-push point that stay clear of the T (Dijkstra on a few nodes), or
        None if there is no such path."""
        lim = self.limit
        nodes = [np.asarray(pusher, float), np.asarray(goal, float)]
        standoff = np.clip(goal + normal * 0.03, -lim, lim)
        nodes.append(standoff)
        ring_r = self.circumradius + self.radius + 0.02
        for a in np.linspace(0, 2 * np.pi, 16, endpoint=False):
            nodes.append(np.clip(block[:2] + ring_r * np.array([math.cos(a), math.sin(a)]), -lim, lim))
        n = len(nodes)
        dist = [math.inf] * n
        prev = [-1] * n
        dist[0] = 0.0
        heap = [(0.0, 0)]
        done = [False] * n
        while heap:
            d, u = heapq.heappop(heap)
            if done[u]:
                continue
            done[u] = True
            if u == 1:
                break
            for v in range(n):
                if done[v] or v == u:
                    continue
                w = float(np.linalg.norm(nodes[v] - nodes[u]))
                # Near the pre-push point (possibly in the T's notch) only contact itself must be avoided.
                margin = self.radius + (0.001 if {u, v} & {1, 2} else self.clearance)
                if d + w >= dist[v] or self._blocked(nodes[u], nodes[v], block, margin):
                    continue
                dist[v], prev[v] = d + w, u
                heapq.heappush(heap, (d + w, v))
        if not done[1]:
            return None
        path, u = [], 1
        while u > 0:
            path.append(nodes[u])
            u = prev[u]
        return path[::-1]

    def _inside_band(self, point, block, margin: float) -> bool:
        x, y, yaw = block
        c, s = math.cos(yaw), math.sin(yaw)
        dx, dy = point[0] - x, point[1] - y
        lx, ly = c * dx + s * dy, -s * dx + c * dy
        rects = self.rects * self._scale
        return any(abs(lx - cx) < hx + margin and abs(ly - cy) < hy + margin for cx, cy, hx, hy in rects)

    def _escape(self, pusher: np.ndarray, block: np.ndarray) -> np.ndarray | None:
        """If the pusher is within the clearance band of the T, the nearest point outside it reachable without
        touching the T (e.g. straight out of the T's notch); None if it is already clear."""
        margin = self.radius + self.clearance
        if not self._inside_band(pusher, block, margin):
            return None
        away = pusher - block[:2]
        away_angle = math.atan2(away[1], away[0])
        for dist in np.arange(0.005, 0.0801, 0.005):
            # Directions ordered by how directly they lead away from the block's centre.
            for k in sorted(range(16), key=lambda k: abs(wrap_angle(k * np.pi / 8 - away_angle))):
                a = k * np.pi / 8
                p = np.clip(pusher + dist * np.array([math.cos(a), math.sin(a)]), -self.limit, self.limit)
                if not self._inside_band(p, block, margin + 0.001) and not self._blocked(
                    pusher, p, block, self.radius + 0.0005
                ):
                    return p
        return None

    def _step_towards(self, pusher: np.ndarray, waypoint: np.ndarray) -> np.ndarray:
        delta = waypoint - pusher
        dist = float(np.linalg.norm(delta))
        step = self.travel_speed * self.dt
        return waypoint if dist <= step else pusher + delta * (step / dist)

    # ------------------------------------------------------------------ control
    def __call__(self, observation) -> np.ndarray:
        pusher = np.asarray(observation["agent_pos"], dtype=float)
        block_obs = np.asarray(observation["environment_state"], dtype=float)[:3]
        if self._mode != "push":
            self._samples.append(block_obs)
        action = self._act(pusher)
        return np.clip(action, -self.limit, self.limit).astype(np.float32)

    def _start_cycle(self, pusher: np.ndarray) -> bool:
        """Choose a push from the averaged block observations and the path to it; False if none is possible."""
        block = self._block_estimate()
        if self._done_push is not None:
            self._update_scale(self._done_push, block)
            self._done_push = None
        push = self._choose_push(block, pusher)
        if push is None:
            return False
        push["n_samples"] = len(self._samples)
        self._push = push
        escape = self._escape(pusher, block)
        origin = escape if escape is not None else pusher
        path = self._plan_path(origin, push["start"], -push["direction"], block)
        if path is None:
            # Boxed in (e.g. by the workspace edge): back away from the block and plan again from there.
            away = origin - block[:2]
            away = away / (np.linalg.norm(away) + 1e-9)
            path = [np.clip(block[:2] + away * (self.circumradius + self.radius + 0.03), -self.limit, self.limit)]
            push["replan_after_travel"] = True
        self._path = ([escape] if escape is not None else []) + path
        self._target = pusher
        self._mode = "travel"
        return True

    def _act(self, pusher: np.ndarray) -> np.ndarray:
        if self._mode == "retreat":
            self._wait -= 1
            if self._wait > 0:
                return self._target
            self._mode = "plan"
        if self._mode == "plan":
            if not self._start_cycle(pusher):
                return pusher
        if self._mode == "travel":
            while self._path and np.linalg.norm(self._path[0] - pusher) < (0.004 if len(self._path) == 1 else 0.012):
                self._path.pop(0)
            push = self._push
            moved = np.abs(self._samples[-1] - push["block"]) if self._samples else np.zeros(3)
            # The block was bumped on the way (or the plan is stale): plan again from what is observed now.
            if push.get("replan_after_travel") and not self._path or moved[0] > 0.008 or moved[1] > 0.008 or \
                    abs(wrap_angle(moved[2])) > 0.06:
                self._samples = self._samples[-1:]
                if not self._start_cycle(pusher):
                    return pusher
                push = self._push
            if self._path:
                self._target = self._step_towards(self._target, self._path[0])
                return self._target
            # Precise pushes depend on the block estimate: with more (noisy) observations gathered on the way,
            # re-plan once on arrival; go straight on if the better-informed choice starts about here.
            if push["profile"] is SLOW and not push.get("replanned") and len(self._samples) > push["n_samples"]:
                if not self._start_cycle(pusher):
                    return pusher
                self._push["replanned"] = True
                if np.linalg.norm(self._push["start"] - pusher) > 0.006:
                    self._target = self._step_towards(pusher, self._path[0])
                    return self._target
                self._path = []
            self._mode = "push"
        if self._mode == "push":
            push = self._push
            if push["targets"]:
                s = push["targets"].pop(0)
                self._target = push["start"] + push["direction"] * s
                return self._target
            # Push finished: back off a little so the block is free, then re-plan from fresh observations.
            self._done_push = push
            self._target = self._target - push["direction"] * 0.01
            self._mode = "retreat"
            self._wait = 2
            self._samples = []
            return self._target
        return pusher
