"""ChunkRunner: turns a policy bundle into one safe action per control tick (scheduling, latency, safety, stats)."""

from __future__ import annotations

import math
import os
import time
import weakref
from collections import deque
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .bundle_policy import BundlePolicy
from .ensembler import TemporalEnsembler
from .executors import InlineExecutor, SimulatedLatency, SimulatedLatencyExecutor, ThreadExecutor
from .manifest import DdimSampler, Manifest
from .safety import ActionLimiter, FrameAgeChecker, ObservationChecker
from .stats import Fault, RunnerStatistics


class _Default:
    def __init__(self, name: str):
        self._name = name

    def __repr__(self) -> str:
        return self._name


FROM_MANIFEST: Any = _Default("FROM_MANIFEST")  # default of the overrides whose None already means "off"
ONE_PERIOD: Any = _Default("ONE_PERIOD")  # default sync deadline: one control period

# Default seam crossfade in async mode: long enough to hide the step between two independently predicted chunks,
# short enough that the fresher plan takes over within a few control periods.
DEFAULT_ASYNC_BLEND_S = 0.05


def _numbers(value: Any) -> np.ndarray | None:
    """`value` as float64 if it is a number or a list of numbers; None for strings, booleans and anything else
    (numpy would read "1.5" or True as a number, which hides a configuration mistake)."""
    try:
        array = np.asarray(value)
    except (TypeError, ValueError):
        return None
    return array.astype(np.float64) if array.dtype.kind in "iuf" else None


class ChunkRunner:
    """Runs an exported policy bundle at the manifest's control frequency, one `tick()` per control period.

    What tick() returns
      * None: "no command" -- the runner has nothing safe to command; the caller keeps the robot driver's own hold.
        That is every tick of an episode before the first model action: before the first valid observation (no
        measured pose yet) and while the first chunk is computed (startup). The runner never invents a pose: every
        command derives from the model and starts at a measured pose.
      * otherwise a float32 array (action_dim,) in action units: the model's action for this tick, bounded as below,
        or, after a fault, the last command again ("hold").
    Scheduling
      * chunk mode: a chunk is requested every `n_action_steps` ticks, from that tick's observation; action i of
        the chunk (counted from the manifest's chunk_offset) is the action for tick origin + i.
      * temporal ensembling (coeff not None): a chunk is requested every tick (async: whenever the inference
        thread is free) and each tick's action is the ACT weighted mean exp(-k*i) of all predictions for it,
        i = 0 for the oldest.
      * n_obs_steps > 1: the last n_obs_steps observations are stacked (the first one repeated at the start of an
        episode; a rejected observation is replaced by the last accepted one so the history keeps one entry per tick).
    Modes
      * "sync": inference runs inside tick(); the chunk is used in the tick that requested it. With a deadline
        (`sync_deadline_s`, default one control period) the inference runs on a worker thread and tick() waits for
        it at most that long: past it, the tick records a `late_chunk` fault and goes on without the chunk (the
        previous plan's action if it has one for this tick, else a hold, or None before the first command); the
        chunk is used when it lands, exactly like an async arrival (below). `sync_deadline_s=None` waits however
        long inference takes, inline (deterministic: for simulation, not for a robot).
      * "async": inference runs in a background thread; until a chunk arrives the current one keeps executing.
        A chunk computed from tick s that arrives at tick t while the previous one executes starts at its action
        t - s (the actions whose time passed during inference are skipped) and is crossfaded with the previous
        chunk's remaining planned actions over `blend_ticks` ticks. Ticks the robot spent holding still with no
        plan are not skipped: the first chunk of an episode starts at its action 0 (the robot still holds the pose
        it was observed in), and a chunk that lands after the previous one ran out at tick r starts at its action
        r - s. The next request is due n_action_steps ticks after the chunk's (shifted) start.
        With `latency=SimulatedLatency(...)` the same happens deterministically: inference runs inline and its
        chunk is delivered ceil(latency * hz) ticks later (for closed-loop evaluation in simulation).
        Pick sync when inference takes well under a control period (simplest timing), async when it takes longer.
    Observing the schedule
      * `on_chunk(observed_tick, start_tick)`, if given, is called inside the tick that accepts a chunk (not for a
        stale, failed or dropped one): action k of the chunk (counted from chunk_offset) is scheduled for tick
        start_tick + k, so those before the accepting tick were skipped. sync: start_tick = observed_tick; async
        (and a late sync chunk): observed_tick, or later for a chunk that ends a hold (see above). An exception from
        it is recorded as an internal_error fault and the tick goes on.
    Camera frames
      * uint8 arrays exactly as the manifest declares them: (H, W, 3) for layout "HWC" (what camera drivers
        deliver; the bundle's graph transposes, scales and normalizes), (3, H, W) for "CHW" (format-1 bundles). A
        frame of another shape or dtype is a bad_shape / bad_dtype fault: never resized, transposed or converted.
      * `max_frame_age_s`: FROM_MANIFEST (each camera's max_age_s), None (ages unchecked, e.g. in simulation) or
        one limit in seconds for every camera.
    Safety (tick() never raises)
      * the measured pose is the manifest's action.initial_from slice of the observation; a bundle without one
        needs `initial_action` (the robot's pose in action units, per episode via reset(initial_action=...));
      * the first command of an episode is rate-limited from the measured pose of its tick (clamped to the limits);
        every later command moves at most max_velocity / hz from the previous one, and every command is within
        the action limits. A velocity limit is required (manifest or `max_velocity=`): running without one takes
        `allow_unlimited_velocity=True`;
      * with max_tracking_error (manifest or override), every command is also within the tick's measured pose +-
        that bound when the observation is valid (the limits and the rate limit win where they conflict);
      * a bad observation (not a mapping, missing key, wrong shape/dtype, NaN/inf, outside the manifest's
        low/high; without those, measured joints outside the action limits widened by their range; a camera frame
        older than its max_age_s or without a capture time, see tick()), a model output
        with NaN/inf, a failed inference, a missed sync deadline, or no action for this
        tick (the chunk ran out before the next arrived) outputs the last command again ("hold"; None if nothing
        was commanded yet) and records the fault.
    """

    def __init__(
        self,
        bundle_dir: str | os.PathLike,
        *,
        mode: str = "sync",
        latency: SimulatedLatency | None = None,
        intra_op_threads: int = 1,
        n_action_steps: int | None = None,
        temporal_ensemble_coeff: float | None = FROM_MANIFEST,
        blend_ticks: int | None = None,
        max_velocity: float | Sequence[float] | None = FROM_MANIFEST,
        allow_unlimited_velocity: bool = False,
        max_tracking_error: float | Sequence[float] | None = FROM_MANIFEST,
        sync_deadline_s: float | None = ONE_PERIOD,
        initial_action: Sequence[float] | None = None,
        seed: int | None = None,
        clock: Callable[[], float] = time.perf_counter,
        providers: Sequence[str] | None = None,
        verify_hash: bool = True,
        on_chunk: Callable[[int, int], None] | None = None,
        max_frame_age_s: float | None = FROM_MANIFEST,
    ):
        # Every cheap argument is checked before the bundle is loaded.
        if not isinstance(bundle_dir, (str, os.PathLike)):
            raise ValueError(f"bundle_dir must be a path (str or os.PathLike), got {type(bundle_dir).__name__}")
        if mode not in ("sync", "async"):
            raise ValueError(f"mode must be 'sync' or 'async', got {mode!r}")
        if latency is not None and not isinstance(latency, SimulatedLatency):
            raise ValueError(f"latency must be a SimulatedLatency(latency_s, jitter_s, seed) or None, got {latency!r}")
        if latency is not None and mode != "async":
            raise ValueError("simulated latency models asynchronous inference: use mode='async' with latency=...")
        for name, flag in (("allow_unlimited_velocity", allow_unlimited_velocity), ("verify_hash", verify_hash)):
            if not isinstance(flag, bool):
                raise ValueError(f"{name} must be True or False, got {flag!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
            raise ValueError(f"seed must be an integer >= 0 or None, got {seed!r}")
        if not callable(clock):
            raise ValueError(f"clock must be a callable returning seconds (like time.perf_counter), got {clock!r}")
        if max_frame_age_s is not FROM_MANIFEST and max_frame_age_s is not None and (
                isinstance(max_frame_age_s, bool) or not isinstance(max_frame_age_s, (int, float))
                or not (math.isfinite(max_frame_age_s) and max_frame_age_s > 0)):
            raise ValueError(f"max_frame_age_s must be a positive number of seconds, None (frame ages unchecked) or "
                             f"left at the manifest's, got {max_frame_age_s!r}")
        if on_chunk is not None and not callable(on_chunk):
            raise ValueError(f"on_chunk must be a callable (observed_tick, start_tick) or None, got {on_chunk!r}")
        self.policy = BundlePolicy(bundle_dir, intra_op_threads=intra_op_threads, providers=providers,
                                   verify_hash=verify_hash)
        m: Manifest = self.policy.manifest
        self.manifest, self.mode = m, mode
        self._on_chunk = on_chunk
        self.control_hz = m.control.frequency_hz
        self.action_dim = m.action.dim
        self._offset = m.control.chunk_offset
        self._chunk_len = m.control.chunk_size - m.control.chunk_offset  # actions usable from each chunk

        coeff = temporal_ensemble_coeff
        if coeff is FROM_MANIFEST:
            coeff = m.control.temporal_ensemble_coeff
        if coeff is not None and (isinstance(coeff, bool) or not isinstance(coeff, (int, float))
                                  or not math.isfinite(coeff)):
            raise ValueError(f"temporal_ensemble_coeff must be a finite number or None, got {coeff!r}")
        if coeff is not None and n_action_steps not in (None, 1):
            raise ValueError(f"temporal ensembling predicts every tick: n_action_steps must be 1 or None, "
                             f"got {n_action_steps}")
        n_steps = m.control.n_action_steps if n_action_steps is None else n_action_steps
        if coeff is not None:
            n_steps = 1
        if isinstance(n_steps, bool) or not isinstance(n_steps, int) or not 1 <= n_steps <= self._chunk_len:
            raise ValueError(f"n_action_steps must be an integer in [1, {self._chunk_len}] "
                             f"(chunk_size - chunk_offset), got {n_steps!r}")
        self.n_action_steps, self.temporal_ensemble_coeff = n_steps, coeff

        if blend_ticks is None:
            blend_ticks = 0 if mode == "sync" else math.ceil(DEFAULT_ASYNC_BLEND_S * self.control_hz)
        if isinstance(blend_ticks, bool) or not isinstance(blend_ticks, int) or blend_ticks < 0:
            raise ValueError(f"blend_ticks must be an integer >= 0, got {blend_ticks!r}")
        self.blend_ticks = blend_ticks

        velocity = m.action.max_velocity if max_velocity is FROM_MANIFEST else max_velocity
        if velocity is None and not allow_unlimited_velocity:
            said = "max_velocity=None was passed" if max_velocity is None else "the manifest sets no max_velocity"
            raise ValueError(f"{said}: the runner would move the robot as fast as the model says. Pass "
                             f"max_velocity=<one value or {self.action_dim} values, action units per second>, or "
                             "allow_unlimited_velocity=True if the robot limits its speed itself")
        self.max_velocity = None if velocity is None else self._per_joint("max_velocity", velocity,
                                                                           "action units per second")
        init = m.action.initial_from
        tracking = m.action.max_tracking_error if max_tracking_error is FROM_MANIFEST else max_tracking_error
        if tracking is not None:
            if init is None:
                raise ValueError("max_tracking_error bounds commands around the measured pose, but this bundle's "
                                 "manifest has no action.initial_from saying where the observation measures it")
            tracking = self._per_joint("max_tracking_error", tracking, "action units")
        self.max_tracking_error = tracking
        self._limiter = ActionLimiter(m.action.lower, m.action.upper, self.max_velocity, self.control_hz, tracking)

        self._init_key = init.key if init is not None else None
        self._init_indices = np.asarray(init.indices, np.intp) if init is not None else None
        if init is not None and initial_action is not None:
            raise ValueError(f"this bundle measures the robot's pose itself ({init.key}{list(init.indices)}, "
                             "action.initial_from): initial_action is only for bundles without one")
        if init is None and initial_action is None:
            raise ValueError("this bundle's manifest has no action.initial_from, so the runner cannot measure where "
                             f"the robot is: pass initial_action=<the robot's pose, {self.action_dim} values in "
                             "action units> (and reset(initial_action=...) for each new episode)")
        self._initial_action = None if initial_action is None else self._checked_initial_action(initial_action)

        if sync_deadline_s is ONE_PERIOD:
            sync_deadline_s = 1.0 / self.control_hz if mode == "sync" else None
        elif sync_deadline_s is not None:
            if mode != "sync":
                raise ValueError("sync_deadline_s applies to mode='sync'; async inference never blocks tick()")
            if isinstance(sync_deadline_s, bool) or not isinstance(sync_deadline_s, (int, float)) or not (
                    math.isfinite(sync_deadline_s) and sync_deadline_s > 0):
                raise ValueError(f"sync_deadline_s must be a positive number of seconds or None, got "
                                 f"{sync_deadline_s!r}")
        self.sync_deadline_s = sync_deadline_s

        if seed is None:
            seed = m.sampler.seed if isinstance(m.sampler, DdimSampler) else 0
        self._noise_rng = np.random.default_rng(seed)
        if mode == "sync" and sync_deadline_s is None:
            self._executor = InlineExecutor(clock)
        elif latency is not None:
            self._executor = SimulatedLatencyExecutor(latency, self.control_hz, clock)
        else:
            self._executor = ThreadExecutor(clock)
        weakref.finalize(self, self._executor.close)  # stop the inference thread even without close()
        self._checker = ObservationChecker(m.observation, m.action)
        self.clock = clock
        self._frame_ages = FrameAgeChecker(m.observation, max_frame_age_s,
                                           use_override=max_frame_age_s is not FROM_MANIFEST)
        self._n_obs = m.control.n_obs_steps
        self._ensembler = TemporalEnsembler(coeff, self._chunk_len, self.action_dim) if coeff is not None else None
        self.statistics = RunnerStatistics()
        self._generation = 0
        self._reset_episode()

    def _per_joint(self, name: str, value: Any, units: str) -> np.ndarray:
        array = _numbers(value)
        if array is not None and array.ndim <= 1 and array.size in (1, self.action_dim):
            array = np.broadcast_to(array, (self.action_dim,)).copy()
            if np.isfinite(array).all() and (array > 0).all():
                return array
        raise ValueError(f"{name} must be one positive finite number or {self.action_dim} of them ({units}), "
                         f"got {value!r}")

    def _checked_initial_action(self, value: Any) -> np.ndarray:
        initial = _numbers(value)
        if initial is None or initial.shape != (self.action_dim,) or not np.isfinite(initial).all():
            raise ValueError(f"initial_action must be {self.action_dim} finite numbers (the robot's pose in action "
                             f"units), got {value!r}")
        return self._limiter.clamp(initial.astype(np.float32))

    # ------------------------------------------------------------------------------------------------ public API

    def tick(self, observation: Mapping[str, np.ndarray],
             frame_times: Mapping[str, float] | None = None) -> np.ndarray | None:
        """Return this control tick's command (float32, shape (action_dim,), action units), or None for "no
        command: keep the driver's own hold" (see the class docstring). Never raises.

        `frame_times`: camera key -> capture time of the frame in `observation`, in seconds of the runner's clock
        (`clock`, default time.perf_counter; `runner.clock()` reads it). Required for the cameras whose manifest
        feature declares max_age_s (unless max_frame_age_s=None): a frame older than that is a stale_frame fault,
        one without a time a missing_frame_time fault, and the runner holds."""
        t = self._tick
        self._tick += 1
        self.statistics.ticks += 1
        try:
            action = self._step(t, observation, frame_times)
        except Exception as e:  # a runner bug must not take the robot down: hold and report
            self.statistics.fault(t, Fault.INTERNAL_ERROR, f"{type(e).__name__}: {e}")
            action = self._hold(fault=True)
        finally:
            if self._ensembler is not None:
                self._ensembler.retire(t)
        return None if action is None else action.copy()

    def reset(self, seed: int | None = None, initial_action: Sequence[float] | None = None) -> None:
        """Start a new episode: forget chunks, history and the last command (the next ones return None until the
        first model action).

        A result still in flight is dropped when it lands (a background inference cannot be interrupted, so the
        new episode's first request waits for it). `seed` reseeds the diffusion noise and the simulated latency.
        `initial_action`: the robot's pose at the start of this episode, for a bundle without action.initial_from.
        """
        if initial_action is not None:
            if self._init_key is not None:
                raise ValueError(f"this bundle measures the robot's pose itself ({self._init_key}, "
                                 "action.initial_from): initial_action is only for bundles without one")
            self._initial_action = self._checked_initial_action(initial_action)
        self._generation += 1
        self._executor.cancel()
        if seed is not None:
            self._noise_rng = np.random.default_rng(seed)
            if isinstance(self._executor, SimulatedLatencyExecutor):
                self._executor.reseed(seed)
        self._reset_episode()

    @property
    def faults(self) -> dict[str, int]:
        return dict(self.statistics.faults)

    def summary(self) -> dict[str, Any]:
        return self.statistics.summary()

    def close(self) -> None:
        self._executor.close()

    def __enter__(self) -> "ChunkRunner":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------------ internals

    def _reset_episode(self) -> None:
        self._tick = 0
        self._history: deque[dict[str, np.ndarray]] = deque(maxlen=self._n_obs)
        self._last_output: np.ndarray | None = None  # the last command of this episode; None: nothing commanded yet
        self._active: tuple[int, np.ndarray] | None = None  # (origin tick, actions from chunk_offset on)
        self._previous: tuple[int, np.ndarray] | None = None  # the chunk being crossfaded out
        self._blend_start = 0
        self._last_request: int | None = None
        self._retry = False  # request again at the next good observation (after an error or a stale chunk)
        self._starved = False  # a chunk ran out while the next one was in flight
        self._received_any = False
        # The tick since which the robot has had no planned action (it holds still): the episode start, or the tick
        # a chunk ran out; None while a plan is executing. Latency compensation does not count these ticks.
        self._idle_since: int | None = 0
        if self._ensembler is not None:
            self._ensembler.reset()

    def _step(self, t: int, observation: Any, frame_times: Any = None) -> np.ndarray | None:
        arrays, kind, detail = self._checker.check(observation)
        if kind is None and self._frame_ages.limits:
            kind, detail = self._frame_ages.check(frame_times, self.clock())
            if kind is not None:
                arrays = None
        measured = None  # this tick's measured pose in command space, read only where a bound needs it
        if kind is not None:
            self.statistics.fault(t, kind, detail)
            if self._history:
                self._history.append(self._history[-1])
        else:
            self._remember(arrays)
            if self._init_key is not None and (self._last_output is None or self.max_tracking_error is not None):
                measured = arrays[self._init_key][self._init_indices].astype(np.float32, copy=False)

        self._collect(t)
        missed = False
        if arrays is not None and self._should_request(t):
            self._submit(t)
            if self.sync_deadline_s is not None and not self._executor.wait(self.sync_deadline_s):
                missed = True
                self._starved = True  # counted in late_chunks when it lands
                self.statistics.fault(t, Fault.LATE_CHUNK, f"inference from tick {t} not done within the sync "
                                                           f"deadline ({self.sync_deadline_s * 1e3:.1f} ms)")
            self._collect(t)
        target = self._planned(t)
        if target is None and self._received_any and self._idle_since is None:
            self._idle_since = t  # the plan ran out: the robot holds still from this tick on
        if arrays is None:
            return self._hold(fault=True)
        if target is None:
            if not self._received_any and not missed:
                self.statistics.startup_ticks += 1
                return self._hold()
            if not missed:
                self.statistics.fault(t, Fault.NO_FRESH_CHUNK, "no action for this tick: the chunk ran out before "
                                                               "the next one arrived")
            if self._executor.busy:
                self._starved = True
            return self._hold(fault=True, measured=measured)
        if not np.isfinite(target).all():
            self.statistics.fault(t, Fault.NON_FINITE_ACTION, "the model produced NaN/inf")
            return self._hold(fault=True, measured=measured)
        previous = self._last_output
        if previous is None:  # the episode's first command starts where the robot is
            previous = self._limiter.clamp(measured) if measured is not None else self._initial_action
        self._last_output = self._limiter.apply(target, previous, measured)
        return self._last_output

    def _hold(self, fault: bool = False, measured: np.ndarray | None = None) -> np.ndarray | None:
        if self._last_output is None:
            self.statistics.no_command_ticks += 1
            return None
        if fault:
            self.statistics.held_ticks += 1
        if measured is not None and self.max_tracking_error is not None:
            # A pushed or blocked robot: the held command follows it back into the tracking band, rate-limited.
            self._last_output = self._limiter.apply(self._last_output, self._last_output, measured)
        return self._last_output

    def _remember(self, arrays: dict[str, np.ndarray]) -> None:
        if self._n_obs == 1:
            self._history.append(arrays)  # copied at submit, the only place it is read
            return
        # Copies: the caller may reuse its buffers between ticks.
        entry = {k: np.array(v, copy=True) for k, v in arrays.items()}
        if not self._history:
            self._history.extend([entry] * self._n_obs)
        else:
            self._history.append(entry)

    def _should_request(self, t: int) -> bool:
        if self._executor.busy:
            return False
        if self._retry or self._ensembler is not None or self._last_request is None:
            return True
        return t - self._last_request >= self.n_action_steps

    def _submit(self, t: int) -> None:
        if self._n_obs == 1:
            inputs = {k: np.array(v, copy=True)[None] for k, v in self._history[-1].items()}
        else:
            inputs = {k: np.stack([h[k] for h in self._history])[None] for k in self._history[-1]}
        policy, rng = self.policy, self._noise_rng
        self._executor.submit(t, self._generation, lambda: policy.predict_chunk(inputs, rng=rng))
        self._last_request, self._retry = t, False
        self.statistics.requests += 1

    def _collect(self, t: int) -> None:
        result = self._executor.poll(t)
        if result is None or result.generation != self._generation:
            return
        stats = self.statistics
        stats.inference_latency_s.append(result.latency_s)
        if result.error is not None:
            stats.fault(t, Fault.INFERENCE_ERROR, result.error)
            self._retry = True
            return
        age = t - result.origin_tick
        # Also for an episode's first chunk, which skips nothing: an observation older than the whole plan is stale.
        if age >= self._chunk_len:
            stats.stale_chunks += 1
            stats.fault(t, Fault.STALE_CHUNK, f"chunk from tick {result.origin_tick} arrived at tick {t}, after all "
                                              f"its {self._chunk_len} actions were due")
            self._retry = True
            return
        actions = result.chunk[self._offset:]
        skip = self._skipped_actions(t, result.origin_tick)
        origin = t - skip  # the tick the chunk's first action belongs to, once the skipped ones are dropped
        self._idle_since = None
        self._last_request = origin  # the next chunk is due n_action_steps ticks into this one
        stats.chunks_received += 1
        stats.skipped_actions += skip
        stats.delivery_ticks.append(age)
        if self._starved:
            stats.late_chunks += 1
            self._starved = False
        self._received_any = True
        if self._ensembler is not None:
            self._ensembler.add(t, actions[skip:])  # action skip + i for tick t + i: the same origin + k schedule
        else:
            if self.blend_ticks > 0 and self._active is not None:
                self._previous, self._blend_start = self._active, t
            self._active = (origin, actions)
        if self._on_chunk is not None:
            try:
                self._on_chunk(result.origin_tick, origin)
            except Exception as e:  # an observer's bug must not change what the robot does
                stats.fault(t, Fault.INTERNAL_ERROR, f"on_chunk callback failed: {type(e).__name__}: {e}")

    def _skipped_actions(self, t: int, observed: int) -> int:
        """How many leading actions of a chunk computed from tick `observed`'s observation are past when it lands at t.

        Latency compensation skips the actions whose time passed while the robot kept executing its previous plan.
        Ticks it spent holding still with no plan are not among them: the pose the chunk must continue from is the
        one the robot stopped in. So the first chunk of an episode starts at its action 0 (the robot held the very
        pose it was observed in), and a chunk landing after the previous one ran out at tick r starts at its action
        r - observed, the tick the robot stopped.
        """
        if self._idle_since is None:
            return t - observed
        return max(0, min(self._idle_since, t) - observed)

    def _planned(self, t: int) -> np.ndarray | None:
        if self._ensembler is not None:
            return self._ensembler.action(t)
        if self._active is None:
            return None
        origin, actions = self._active
        if t - origin >= len(actions):
            return None
        action = actions[t - origin]
        if self._previous is not None:
            k = t - self._blend_start
            prev_origin, prev_actions = self._previous
            if k < self.blend_ticks and t - prev_origin < len(prev_actions):
                w = np.float32((k + 1) / (self.blend_ticks + 1))
                action = (1 - w) * prev_actions[t - prev_origin] + w * action
            else:
                self._previous = None
        return action
