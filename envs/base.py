"""Gymnasium base class for MuJoCo tasks: physics stepping, observations, cameras, safety checks, randomization."""

from __future__ import annotations

import collections
import math
import sys
from typing import Any, Sequence

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium import spaces

from envs.randomization import DomainRandomizationConfig, ModelRandomizer

OBS_MODES = ("state", "pixels", "state_pixels")
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

    Actions are absolute targets in physical units. Out-of-bound actions are clipped to the Box bounds (the joint
    limits); NaN/inf or a wrong shape raises ValueError. A physics blow-up (MuJoCo's instability auto-reset or a
    non-finite state) ends the episode as truncated with info["physics_error"] instead of returning NaN.
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
    ) -> None:
        super().__init__()
        if obs_mode not in OBS_MODES:
            raise ValueError(f"obs_mode must be one of {OBS_MODES}, got {obs_mode!r}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array' (headless), got {render_mode!r}")
        self.obs_mode = obs_mode
        self._state_obs = obs_mode != "pixels"
        self._pixel_obs = obs_mode != "state"
        self.render_mode = render_mode
        self.control_hz = float(control_hz if control_hz is not None else self.default_control_hz)
        timestep = float(timestep if timestep is not None else self.default_timestep)
        if not (self.control_hz > 0 and timestep > 0):
            raise ValueError(f"control_hz and timestep must be > 0, got {self.control_hz} and {timestep}")
        substeps = 1.0 / (self.control_hz * timestep)
        if substeps < 1 or abs(substeps - round(substeps)) > 1e-6:
            raise ValueError(
                f"control period 1/control_hz = {1 / self.control_hz:.6g} s must be a whole multiple of the "
                f"physics timestep {timestep:.6g} s"
            )
        self.n_substeps = int(round(substeps))
        if max_episode_steps is not None and int(max_episode_steps) < 1:
            raise ValueError(f"max_episode_steps must be >= 1, got {max_episode_steps}")
        # gymnasium.make applies its TimeLimit wrapper (registered default, or make's max_episode_steps) and never
        # passes the length on; the env truncates by itself only when constructed directly with a length.
        self._truncate_at = int(max_episode_steps) if max_episode_steps is not None else sys.maxsize
        self.max_episode_steps = int(max_episode_steps or self.default_max_episode_steps)
        self.metadata = {**self.metadata, "render_fps": self.control_hz}

        self.model = mujoco.MjModel.from_xml_string(self.build_mjcf())
        self.model.opt.timestep = timestep
        self.data = mujoco.MjData(self.model)
        # Live view of MuJoCo's warning counters; mj_resetData zeroes them, so any count after a step is an error.
        self._warning_counts = self.data.warning.number
        # BADQPOS, BADQVEL, BADQACC are consecutive in mjtWarning: one view, one cheap list conversion per step.
        self._unstable_counts = self._warning_counts[_BADQPOS : _BADQACC + 1]
        self.setup()

        self.cameras: tuple[str, ...] = ()
        self.image_size: tuple[int, int] = tuple(int(v) for v in (image_size or self.default_image_size))  # type: ignore
        if obs_mode != "state":
            self.cameras = tuple(cameras if cameras is not None else self.default_cameras)
            if not self.cameras:
                raise ValueError(f"obs_mode={obs_mode!r} needs at least one camera")
            if len(self.image_size) != 2 or min(self.image_size) < 1:
                raise ValueError(f"image_size must be (height, width) > 0, got {image_size!r}")
            for cam in self.cameras:
                self._camera_id(cam)
        self._renderers: dict[tuple[int, int], mujoco.Renderer] = {}

        self.randomization = DomainRandomizationConfig.from_any(randomization)
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

    # ------------------------------------------------------------------ task hooks
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
        # _check_action's common case inlined (a float array of the right shape, MuJoCo clamping): this env's cheapest
        # physics step costs ~45 us, so each call saved here shows in the throughput.
        if (type(action) is not np.ndarray or action.shape != self._action_shape or self._clip_in_python
                or not math.isfinite(sum(action.tolist()))):
            action = self._check_action(action)
        if self._action_delay:
            self._pending_actions.append(action)
            action = self._pending_actions.popleft()
        self.apply_action(action)
        d = self.data
        mujoco.mj_step(self.model, d, nstep=self.n_substeps)
        self._step_count += 1
        # MuJoCo checks qpos/qvel/qacc for NaN, inf and huge values inside every substep, auto-resets the state and
        # counts a warning; a step that passed those checks integrates finite values, so no extra scan is needed.
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
        # Hot path: a correctly shaped array costs one reduction (NaN/inf make the sum non-finite) and one clip.
        if type(action) is not np.ndarray or action.shape != self._action_shape:
            action = self._coerce_action(action)
        # Summing the Python floats is ~4x cheaper than ndarray.sum() for a handful of joints.
        if not math.isfinite(sum(action.tolist())):
            self._raise_if_not_finite(action)
        if not self._clip_in_python:
            return action
        clipped = np.minimum(action, self._action_high)
        return np.maximum(clipped, self._action_low, out=clipped)

    def _coerce_action(self, action) -> np.ndarray:
        try:
            a = np.asarray(action, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{type(self).__name__}.step: action is not numeric: {action!r}") from exc
        if a.shape != self._action_shape:
            raise ValueError(
                f"{type(self).__name__}.step: action has shape {a.shape}, expected {self._action_shape} "
                f"({', '.join(self.action_names)})"
            )
        return a

    def _raise_if_not_finite(self, action: np.ndarray) -> None:
        # The sum can also overflow for huge finite values; those are merely clipped.
        bad = np.flatnonzero(~np.isfinite(action))
        if len(bad):
            names = [self.action_names[i] for i in bad]
            raise ValueError(f"{type(self).__name__}.step: action has NaN/inf in {names}: {action.tolist()}")

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
            raise ValueError(f"{type(self).__name__} has no camera {name!r}; available cameras: {names}")
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
