"""Gymnasium base class for MuJoCo tasks: physics stepping, observations, cameras, safety checks, randomization."""

from __future__ import annotations

import collections
import inspect
import math
import sys
from typing import Any, Mapping, Sequence

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium import spaces

from envs.randomization import DomainRandomizationConfig, ModelRandomizer
from envs.validation import (
    check_camera_names,
    check_choice,
    check_image_size,
    check_int,
    check_real,
    did_you_mean,
    is_real,
    short_repr as _short,
)

OBS_MODES = ("state", "pixels", "state_pixels")
# Below this a task's settling and every control step cost too many physics steps; MuJoCo's own examples use >= 1e-4.
MIN_TIMESTEP = 1e-5
# The most physics steps one control step may take (~0.1-1 s of CPU): beyond it env.step would look like a hang.
MAX_SUBSTEPS = 10_000
_FLOAT32, _FLOAT64 = np.dtype(np.float32), np.dtype(np.float64)  # builtin dtypes are singletons: `is` tests them
_KIND_NAMES = {"b": "bool: truth values are not joint targets", "c": "complex", "U": "text", "S": "bytes",
               "M": "a date", "m": "a duration", "V": "a structured record"}
_BADQPOS = int(mujoco.mjtWarning.mjWARN_BADQPOS)
_BADQVEL = int(mujoco.mjtWarning.mjWARN_BADQVEL)
_BADQACC = int(mujoco.mjtWarning.mjWARN_BADQACC)
if (_BADQPOS, _BADQVEL) != (_BADQACC - 2, _BADQACC - 1):  # step() reads the three counters as one slice
    raise ImportError(f"this MuJoCo reordered mjtWarning (BADQPOS {_BADQPOS}, BADQVEL {_BADQVEL}, BADQACC {_BADQACC})")


class MujocoTaskEnv(gym.Env):
    """Base class that carries the physics plumbing; a task subclass only describes its scene and its goal.

    Subclasses implement:
      build_mjcf()            -> MJCF XML string of the whole scene (robot + objects + cameras)
      setup()                 look up ids after the model is built (called once)
      sample_initial_state(rng)  write the episode's initial qpos/qvel/mocap into self.data (after mj_resetData)
      agent_pos()             -> joint positions of the robot (physical units)
      environment_state()     -> object / task state (physical units)
      compute_reward()        -> float;  is_success() -> bool
    and may override `apply_action` (default: data.ctrl[:] = action) and the class attributes below.

    Episode length: `gymnasium.make` wraps the env in TimeLimit (the task's `default_max_episode_steps`, or make's
    `max_episode_steps=N`); a directly constructed env truncates itself when given `max_episode_steps`.

    Actions are absolute targets in physical units, an array (or list) of the action space's shape. Real numbers of
    any integer or float dtype are converted to float64; out-of-bound values, however large, are clipped to the Box
    bounds (the joint limits). A wrong shape, NaN/inf, or anything that is not real numbers raises ValueError: bool
    arrays (a mask or a comparison passed by mistake), complex, text, bytes, dates, records, None, mappings, ragged
    nesting, and object arrays holding anything but real numbers. The check costs float32/float64 arrays of the
    right shape one dtype test and one sum; the env never keeps a reference to the caller's array (with an action
    delay it queues a copy). A physics blow-up (MuJoCo's instability auto-reset or a non-finite state) ends the
    episode as truncated with info["physics_error"] instead of returning NaN.

    Constructor arguments are checked before the model is built; a bad one raises ValueError naming it (an unknown
    keyword raises TypeError, as Python does, naming the closest valid one). `cameras` takes one name or a list of
    distinct names (all must exist in the model, whatever the obs_mode); `image_size` takes (height, width) as two
    integers, or one integer n for n x n, at most 4096 per side (MAX_IMAGE_SIDE). `control_hz` and `timestep` give a
    whole number of physics steps per control step, at most MAX_SUBSTEPS.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 50}

    # --- task description (override in subclasses) ---
    default_control_hz: float = 50.0
    default_timestep: float = 0.002
    default_max_episode_steps: int = 400
    default_cameras: tuple[str, ...] = ("top",)
    default_image_size: tuple[int, int] = (96, 96)
    render_camera: str = "top"
    render_size: tuple[int, int] = (240, 320)
    # Bodies whose mass (and, if listed below, size) domain randomization may change.
    randomized_object_bodies: tuple[str, ...] = ()
    size_randomized_bodies: tuple[str, ...] = ()
    # Episode ends (terminated) when the task succeeds; off for tasks that must hold a goal state.
    terminate_on_success: bool = False
    # One name and one unit per element of environment_state() (exported into a bundle's manifest); empty: unnamed.
    environment_state_names: tuple[str, ...] = ()
    environment_state_units: tuple[str, ...] = ()

    def __init__(
        self,
        obs_mode: str = "state",
        cameras: Sequence[str] | None = None,
        image_size: Sequence[int] | None = None,
        control_hz: float | None = None,
        timestep: float | None = None,
        max_episode_steps: int | None = None,
        render_mode: str | None = None,
        randomization: DomainRandomizationConfig | dict | bool | None = None,
        **unknown: Any,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        if unknown:
            self._refuse_unknown_arguments(owner, unknown)
        # Every argument is checked before the model is built, so a typo costs nothing and names itself.
        self.obs_mode = check_choice(owner, "obs_mode", obs_mode, OBS_MODES)
        self.render_mode = check_choice(owner, "render_mode", render_mode, (None, "rgb_array"))
        self._state_obs = obs_mode != "pixels"
        self._pixel_obs = obs_mode != "state"
        self.control_hz = check_real(owner, "control_hz", self.default_control_hz if control_hz is None else control_hz,
                                     minimum=0.0)
        timestep = check_real(owner, "timestep", self.default_timestep if timestep is None else timestep,
                              minimum=MIN_TIMESTEP, strict=False,
                              reason=" s (smaller steps make one control step cost too many physics steps)")
        period = self.control_hz * timestep  # in physics steps^-1; a denormal product would divide by zero
        substeps = 1.0 / period if period > 0 else math.inf
        if substeps > MAX_SUBSTEPS + 0.5:
            raise ValueError(
                f"{owner}: control_hz={self.control_hz:g} with timestep={timestep:g} s needs {substeps:.3g} physics "
                f"steps per control step; at most {MAX_SUBSTEPS} are allowed (one env.step would take seconds)"
            )
        if substeps < 1 - 1e-9 or abs(substeps - round(substeps)) > 1e-6:
            raise ValueError(
                f"{owner}: control period 1/control_hz = {1 / self.control_hz:.6g} s must be a whole multiple of the "
                f"physics timestep {timestep:.6g} s (control_hz={control_hz!r}, timestep={timestep!r})"
            )
        self.n_substeps = int(round(substeps))
        if max_episode_steps is not None:
            max_episode_steps = check_int(owner, "max_episode_steps", max_episode_steps, minimum=1)
        # gymnasium.make applies its TimeLimit wrapper (registered default, or make's max_episode_steps) and never
        # passes the length on; the env truncates by itself only when constructed directly with a length.
        self._truncate_at = max_episode_steps if max_episode_steps is not None else sys.maxsize
        self.max_episode_steps = max_episode_steps or self.default_max_episode_steps
        self.metadata = {**self.metadata, "render_fps": self.control_hz}
        # Checked whatever the obs_mode, so a bad value never waits for the day pixels are switched on.
        self.image_size: tuple[int, int] = check_image_size(
            owner, self.default_image_size if image_size is None else image_size)
        requested_cameras = check_camera_names(owner, cameras) if cameras is not None else None
        self.randomization = DomainRandomizationConfig.from_any(randomization)

        self.model = mujoco.MjModel.from_xml_string(self.build_mjcf())
        self.model.opt.timestep = timestep
        self.data = mujoco.MjData(self.model)
        # Live view of MuJoCo's warning counters; mj_resetData zeroes them, so any count after a step is an error.
        self._warning_counts = self.data.warning.number
        # BADQPOS, BADQVEL, BADQACC are consecutive in mjtWarning: one view, one cheap list conversion per step.
        self._unstable_counts = self._warning_counts[_BADQPOS : _BADQACC + 1]
        self.setup()

        self.cameras: tuple[str, ...] = ()
        if requested_cameras is not None:
            for cam in requested_cameras:
                self._camera_id(cam)
        if obs_mode != "state":
            self.cameras = requested_cameras if requested_cameras is not None else tuple(self.default_cameras)
            if not self.cameras:
                raise ValueError(f"{owner}: obs_mode={obs_mode!r} needs at least one camera, got cameras={cameras!r}")
        self._check_size_randomization(owner)
        self._renderers: dict[tuple[int, int], mujoco.Renderer] = {}

        self._randomizer = ModelRandomizer(
            self.model,
            self.randomization,
            object_bodies=self.randomized_object_bodies,
            size_randomized_bodies=self.size_randomized_bodies,
            robot_dofs=self.robot_dofs(),
        )
        self._action_delay = 0
        self._pending_actions: collections.deque[np.ndarray] = collections.deque()
        self._dr_rng = np.random.default_rng()
        self._visual_rng = np.random.default_rng()
        self._agent_noise = 0.0
        self._env_noise = 0.0

        low, high = self.action_bounds()
        self.action_space = spaces.Box(low.astype(np.float32), high.astype(np.float32), dtype=np.float32)
        self._action_low = self.action_space.low.astype(np.float64)
        self._action_high = self.action_space.high.astype(np.float64)
        self._action_shape = self.action_space.shape
        # Out-of-bound actions are clipped: by MuJoCo inside mj_step where its ctrlrange is the action box, else here.
        self._clip_in_python = not self._mujoco_clamps_actions(self.action_space.low, self.action_space.high)
        self.observation_space = self._make_observation_space()
        self._step_count = 0

    def _refuse_unknown_arguments(self, owner: str, unknown: dict[str, Any]) -> None:
        # A TypeError, as Python raises for any unexpected keyword, but naming the closest valid argument.
        valid = sorted({
            name
            for cls in type(self).__mro__ if "__init__" in vars(cls) and issubclass(cls, MujocoTaskEnv)
            for name, p in inspect.signature(vars(cls)["__init__"]).parameters.items()
            if name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
        })
        hints = "".join(did_you_mean(name, valid) for name in unknown)
        raise TypeError(f"{owner}: unknown argument(s) {sorted(unknown)}{hints}; valid arguments: {valid}")

    def _check_size_randomization(self, owner: str) -> None:
        """Refuse, before any reset, object sizes the task could not place (a reset would fail or never return)."""
        limit = self.max_object_size_scale()
        if limit is None:
            return
        largest, reason = limit
        cfg = self.randomization
        if largest < 1.0:
            raise ValueError(f"{owner}: this configuration cannot place its object even at its nominal size: {reason}")
        high = cfg.object_size_scale[1]
        if cfg.enabled and self.size_randomized_bodies and high > largest:
            raise ValueError(
                f"{owner}: randomization.object_size_scale {list(cfg.object_size_scale)} reaches {high:g}, but this "
                f"task can place its object only up to a scale of {largest:.3g}: {reason}"
            )

    # ------------------------------------------------------------------ task hooks
    def max_object_size_scale(self) -> tuple[float, str] | None:
        """Largest object size scale the task's initial-state sampling can place, and why; None: no limit."""
        return None

    def build_mjcf(self) -> str:
        raise NotImplementedError

    def setup(self) -> None:
        """Look up ids; called once after the model is built."""

    def sample_initial_state(self, rng: np.random.Generator) -> None:
        raise NotImplementedError

    def agent_pos(self) -> np.ndarray:
        raise NotImplementedError

    def environment_state(self) -> np.ndarray:
        raise NotImplementedError

    def compute_reward(self) -> float:
        raise NotImplementedError

    def is_success(self) -> bool:
        raise NotImplementedError

    def reward_and_success(self) -> tuple[float, bool]:
        """Both per-step outcomes at once; a task overrides it when they share a costly quantity."""
        return float(self.compute_reward()), bool(self.is_success())

    def action_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Default: the actuators' control ranges (position servos: the joint limits)."""
        return self.model.actuator_ctrlrange[:, 0].copy(), self.model.actuator_ctrlrange[:, 1].copy()

    def apply_action(self, action: np.ndarray) -> None:
        self.data.ctrl[:] = action

    def ctrl_passthrough(self) -> np.ndarray | None:
        """Actuator ids whose ctrl receives the action unchanged (action[i] -> ctrl[ids[i]]); None if it is transformed.

        The default mapping is `apply_action`'s own; a task that overrides `apply_action` says again here.
        """
        if type(self).apply_action is MujocoTaskEnv.apply_action:
            return np.arange(self.model.nu)
        return None

    def _mujoco_clamps_actions(self, low: np.ndarray, high: np.ndarray) -> bool:
        """True when MuJoCo's own ctrl clamping enforces exactly the action bounds, so step() need not clip."""
        ids = self.ctrl_passthrough()
        m = self.model
        if ids is None or len(ids) != len(low) or m.opt.disableflags & mujoco.mjtDisableBit.mjDSBL_CLAMPCTRL:
            return False
        ranges = m.actuator_ctrlrange[ids].astype(np.float32)
        return bool(m.actuator_ctrllimited[ids].all() and np.array_equal(ranges[:, 0], low) and np.array_equal(ranges[:, 1], high))

    def initial_action(self) -> np.ndarray:
        """The action that holds the initial state; fills the latency queue at reset."""
        return np.clip(self.data.ctrl.copy(), self._action_low, self._action_high)

    def robot_dofs(self) -> np.ndarray | None:
        """Dof indices of the robot (damping/armature randomization); None means all dofs."""
        return None

    @property
    def action_names(self) -> list[str]:
        return [mujoco.mj_id2name(self.model, mujoco.mjtObj.mjOBJ_ACTUATOR, i) or f"a{i}" for i in range(self.model.nu)]

    # ------------------------------------------------------------------ spaces
    def _make_observation_space(self) -> spaces.Dict:
        entries: dict[str, spaces.Space] = {}
        if self.obs_mode in ("state", "state_pixels"):
            # Probe the sizes from a reset state so subclasses need not declare them.
            mujoco.mj_resetData(self.model, self.data)
            mujoco.mj_forward(self.model, self.data)
            n_agent = np.asarray(self.agent_pos()).shape[0]
            n_env = np.asarray(self.environment_state()).shape[0]
            entries["agent_pos"] = spaces.Box(-np.inf, np.inf, (n_agent,), np.float32)
            entries["environment_state"] = spaces.Box(-np.inf, np.inf, (n_env,), np.float32)
        if self.obs_mode in ("pixels", "state_pixels"):
            h, w = self.image_size
            entries["pixels"] = spaces.Dict(
                {cam: spaces.Box(0, 255, (h, w, 3), np.uint8) for cam in self.cameras}
            )
        return spaces.Dict(entries)

    # ------------------------------------------------------------------ gym API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if seed is not None:
            # A separate stream for randomization keeps the task's initial state identical with or without it.
            self._dr_rng = np.random.default_rng([int(seed), 0x5EED])
            self._visual_rng = np.random.default_rng([int(seed), 0x5EED, 1])
        m, d = self.model, self.data
        renders = self.obs_mode != "state" or self.render_mode is not None
        self._randomizer.apply(self._dr_rng, self._visual_rng if renders else None)
        cfg = self.randomization
        if cfg.enabled:
            self._action_delay = int(self._dr_rng.integers(cfg.action_delay_steps[0], cfg.action_delay_steps[1] + 1))
            self._agent_noise, self._env_noise = cfg.agent_pos_noise_std, cfg.environment_state_noise_std
        mujoco.mj_resetData(m, d)
        self.sample_initial_state(self.np_random)
        mujoco.mj_forward(m, d)
        self._step_count = 0
        hold = self.initial_action()
        self._pending_actions = collections.deque([hold] * self._action_delay)
        return self._observation(), {"is_success": bool(self.is_success())}

    def step(self, action):
        # _check_action's common case inlined (a float32/float64 array of the right shape, MuJoCo clamping): this
        # env's cheapest physics step costs ~45 us, so each call saved here shows in the throughput. The dtype test
        # keeps every other dtype (bool, complex, text, object, ...) on the checked path, where it gets a ValueError.
        if (type(action) is not np.ndarray or action.shape != self._action_shape or self._clip_in_python
                or ((dtype := action.dtype) is not _FLOAT32 and dtype is not _FLOAT64)
                or not math.isfinite(sum(action.tolist()))):
            action = self._check_action(action)
        if self._action_delay:
            # Queued for later steps: a copy, because a caller may refill the same buffer for its next action.
            self._pending_actions.append(np.array(action, dtype=np.float64))
            action = self._pending_actions.popleft()
        self.apply_action(action)
        d = self.data
        mujoco.mj_step(self.model, d, nstep=self.n_substeps)
        # MuJoCo checks qpos/qvel/qacc for NaN, inf and huge values (> 1e10) at the start of every substep, resets the
        # state and counts a warning. The last substep's integration is checked only by the next step, so qpos (which
        # the observation and the reward read) is checked here too: ~0.2 us, against 1e300 positions reaching the
        # caller as float32 inf. A bad qvel alone cannot reach this step's observation; the next step catches it.
        mujoco.mj_checkPos(self.model, d)
        self._step_count += 1
        if any(self._unstable_counts.tolist()):
            return self._physics_error()
        obs = self._observation()
        reward, success = self.reward_and_success()
        terminated = success and self.terminate_on_success
        truncated = self._step_count >= self._truncate_at
        return obs, reward, terminated, truncated, {"is_success": success}

    def _physics_error(self):
        warnings = {
            w.name: int(self.data.warning[int(w)].number)
            for w in (mujoco.mjtWarning.mjWARN_BADQACC, mujoco.mjtWarning.mjWARN_BADQVEL, mujoco.mjtWarning.mjWARN_BADQPOS)
        }
        message = f"physics became unstable at step {self._step_count} (MuJoCo warnings: {warnings})"
        obs = self._finite_observation()
        return obs, 0.0, False, True, {"is_success": False, "physics_error": message}

    def _finite_observation(self):
        obs = self._observation()
        for key in ("agent_pos", "environment_state"):
            if key in obs:
                obs[key] = np.nan_to_num(obs[key], nan=0.0, posinf=0.0, neginf=0.0)
        return obs

    def _check_action(self, action) -> np.ndarray:
        """The action as a float array inside the bounds, or a ValueError saying what is wrong with it."""
        if not (type(action) is np.ndarray and action.shape == self._action_shape
                and (action.dtype is _FLOAT32 or action.dtype is _FLOAT64)):
            action = self._coerce_action(action)
        # Summing the Python floats is ~4x cheaper than ndarray.sum() for a handful of joints.
        if not math.isfinite(sum(action.tolist())):
            self._raise_if_not_finite(action)
        if not self._clip_in_python:
            return action
        clipped = np.minimum(action, self._action_high)
        return np.maximum(clipped, self._action_low, out=clipped)

    def _coerce_action(self, action) -> np.ndarray:
        """Integers (and float16 or longdouble) are converted; bools, complex, text, dates, records, non-numeric
        objects, ragged nesting and wrong shapes are refused."""
        owner = f"{type(self).__name__}.step"
        expected = f"expected real numbers (float or int) of shape {self._action_shape}: {', '.join(self.action_names)}"
        if action is None or isinstance(action, (str, bytes, bytearray, memoryview, Mapping, set, frozenset)):
            raise ValueError(f"{owner}: action is {type(action).__name__} {_short(action)}; {expected}")
        # NumPy would turn these into numbers silently: True into 1.0 next to floats, a masked entry into its filler.
        if isinstance(action, (list, tuple)) and any(isinstance(v, (bool, np.bool_)) for v in action):
            raise ValueError(f"{owner}: action {_short(action)} holds a bool (not a joint target); {expected}")
        if isinstance(action, np.ma.MaskedArray) and np.ma.getmaskarray(action).any():
            raise ValueError(f"{owner}: action has masked (missing) entries: {_short(action)}; {expected}")
        try:
            a = np.asarray(action)
        except Exception as exc:  # ragged nesting (ValueError), objects that refuse conversion (TypeError, ...)
            raise ValueError(f"{owner}: action {_short(action)} is not an array of numbers ({exc}); {expected}") from exc
        kind = a.dtype.kind
        if kind == "O":
            a = self._object_action(a, owner, expected)
        elif kind not in "iuf":
            raise ValueError(
                f"{owner}: action has dtype {a.dtype} ({_KIND_NAMES.get(kind, 'not a real number')}), shape {a.shape}; "
                f"{expected}"
            )
        if a.shape != self._action_shape:
            raise ValueError(f"{owner}: action has shape {a.shape}, {expected}")
        with np.errstate(over="ignore"):  # a longdouble beyond float64 becomes inf and is refused below
            return a.astype(np.float64)

    def _object_action(self, a: np.ndarray, owner: str, expected: str) -> np.ndarray:
        values = a.ravel().tolist()
        for v in values:
            if not is_real(v):
                raise ValueError(f"{owner}: action holds {type(v).__name__} {_short(v)}; {expected}")
        try:
            return np.array([float(v) for v in values], dtype=np.float64).reshape(a.shape)
        except OverflowError as exc:  # a Python int beyond float64
            raise ValueError(f"{owner}: action holds a number beyond float64 ({exc}); {expected}") from exc

    def _raise_if_not_finite(self, action: np.ndarray) -> None:
        # The sum can also overflow for huge finite values; those are merely clipped.
        bad = np.flatnonzero(~np.isfinite(action))
        if len(bad):
            names = [self.action_names[i] for i in bad]
            raise ValueError(
                f"{type(self).__name__}.step: action has NaN/inf (or a value beyond float64) in {names}: "
                f"{action.tolist()}"
            )

    # ------------------------------------------------------------------ observations and rendering
    def _observation(self) -> dict[str, Any]:
        obs: dict[str, Any] = {}
        if self._state_obs:
            # astype always copies, so an observation never aliases MjData that the next step overwrites.
            agent = self.agent_pos().astype(np.float32)
            env_state = self.environment_state().astype(np.float32)
            if self._agent_noise or self._env_noise:
                self._add_observation_noise(agent, env_state)
            obs["agent_pos"] = agent
            obs["environment_state"] = env_state
        if self._pixel_obs:
            obs["pixels"] = {cam: self._render_camera(cam, self.image_size) for cam in self.cameras}
        return obs

    def _add_observation_noise(self, agent: np.ndarray, env_state: np.ndarray) -> None:
        if self._agent_noise:
            agent += self._dr_rng.normal(0.0, self._agent_noise, agent.shape).astype(np.float32)
        if self._env_noise:
            env_state += self._dr_rng.normal(0.0, self._env_noise, env_state.shape).astype(np.float32)

    def _camera_id(self, name: str) -> int:
        cam_id = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_CAMERA, name)
        if cam_id < 0:
            names = [mujoco.mj_id2name(self.model, mujoco.mjtObj.mjOBJ_CAMERA, i) for i in range(self.model.ncam)]
            raise ValueError(
                f"{type(self).__name__} has no camera {name!r}{did_you_mean(name, names)}; available cameras: {names}"
            )
        return cam_id

    def _render_camera(self, camera: str, size: tuple[int, int]) -> np.ndarray:
        renderer = self._renderers.get(size)
        if renderer is None:
            # The offscreen framebuffer must be at least as large as the image; grow it rather than fail.
            vis = self.model.vis.global_
            vis.offheight, vis.offwidth = max(vis.offheight, size[0]), max(vis.offwidth, size[1])
            renderer = mujoco.Renderer(self.model, height=size[0], width=size[1])
            self._renderers[size] = renderer
        renderer.update_scene(self.data, camera=camera)
        return renderer.render()

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        return self._render_camera(self.render_camera, self.render_size)

    def close(self) -> None:
        for renderer in self._renderers.values():
            renderer.close()
        self._renderers.clear()
        super().close()
