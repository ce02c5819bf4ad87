"""Where chunk inference runs: inline (sync), a background thread (async, and sync with a deadline), or inline
with simulated latency."""

from __future__ import annotations

import math
import queue
import threading
from dataclasses import dataclass
from typing import Callable

import numpy as np

Clock = Callable[[], float]


@dataclass
class InferenceResult:
    origin_tick: int  # the tick whose observation the chunk was computed from
    generation: int  # runner episode counter when submitted: results from before a reset() are dropped
    chunk: np.ndarray | None
    error: str | None
    latency_s: float  # wall-clock inference time measured with the runner's clock
    delay_ticks: int | None = None  # simulated delivery delay (SimulatedLatencyExecutor only)


def _run(origin_tick: int, generation: int, fn: Callable[[], np.ndarray], clock: Clock) -> InferenceResult:
    start = clock()
    try:
        chunk, error = fn(), None
    except Exception as e:  # any inference failure becomes a recorded fault, never an exception in tick()
        chunk, error = None, f"{type(e).__name__}: {e}"
    return InferenceResult(origin_tick, generation, chunk, error, clock() - start)


class InlineExecutor:
    """Sync mode: inference runs in the caller's thread when submitted; the chunk is usable in the same tick."""

    def __init__(self, clock: Clock):
        self._clock = clock
        self._result: InferenceResult | None = None

    @property
    def busy(self) -> bool:
        return self._result is not None

    def submit(self, origin_tick: int, generation: int, fn: Callable[[], np.ndarray]) -> None:
        self._result = _run(origin_tick, generation, fn, self._clock)

    def poll(self, tick: int) -> InferenceResult | None:
        result, self._result = self._result, None
        return result

    def cancel(self) -> None:
        self._result = None

    def close(self) -> None:
        pass


class ThreadExecutor:
    """Async mode: one background thread runs one inference at a time while the control loop keeps ticking.

    Sync mode with a deadline uses it too: the control thread submits, then wait()s at most the deadline.
    """

    def __init__(self, clock: Clock):
        self._clock = clock
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._results: queue.SimpleQueue = queue.SimpleQueue()
        self._ready: InferenceResult | None = None  # taken from the queue by wait(), handed out by poll()
        self._busy = False  # written by the control thread only: set on submit, cleared when the result is taken
        self._thread = threading.Thread(target=self._work, name="chunk-runner-inference", daemon=True)
        self._thread.start()

    @property
    def busy(self) -> bool:
        return self._busy

    def submit(self, origin_tick: int, generation: int, fn: Callable[[], np.ndarray]) -> None:
        if self._busy:
            raise RuntimeError("ThreadExecutor.submit while an inference is in flight")
        self._busy = True
        self._jobs.put((origin_tick, generation, fn))

    def wait(self, timeout_s: float) -> bool:
        """Block until the inference in flight has a result or `timeout_s` passed; True if the result is ready."""
        if self._ready is None and self._busy:
            try:
                self._ready = self._results.get(timeout=timeout_s)
            except queue.Empty:
                return False
        return self._ready is not None

    def poll(self, tick: int) -> InferenceResult | None:
        result, self._ready = self._ready, None
        if result is None:
            try:
                result = self._results.get_nowait()
            except queue.Empty:
                return None
        self._busy = False
        return result

    def cancel(self) -> None:
        """A running inference cannot be interrupted; the runner drops its result by generation."""

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            self._results.put(_run(*job, self._clock))

    def close(self, timeout: float = 5.0) -> None:
        if self._thread.is_alive():
            self._jobs.put(None)
            self._thread.join(timeout)


@dataclass(frozen=True)
class SimulatedLatency:
    """Inference latency injected in simulation: latency_s plus uniform jitter in [-jitter_s, +jitter_s], seeded.

    A chunk computed from the observation of tick s is delivered at tick s + ceil(latency * control_hz), i.e. at
    the first control tick at or after it would have arrived on a real controller.
    """

    latency_s: float
    jitter_s: float = 0.0
    seed: int = 0

    def __post_init__(self):
        if not (math.isfinite(self.latency_s) and self.latency_s >= 0):
            raise ValueError(f"SimulatedLatency.latency_s must be a finite number >= 0, got {self.latency_s!r}")
        if not (math.isfinite(self.jitter_s) and self.jitter_s >= 0):
            raise ValueError(f"SimulatedLatency.jitter_s must be a finite number >= 0, got {self.jitter_s!r}")

    def delay_ticks(self, rng: np.random.Generator, control_hz: float) -> int:
        latency = self.latency_s
        if self.jitter_s > 0:
            latency = max(0.0, latency + rng.uniform(-self.jitter_s, self.jitter_s))
        # The tolerance keeps an exact multiple of the period (0.1 s at 50 Hz) from rounding up a tick.
        return max(0, math.ceil(latency * control_hz - 1e-9))


class SimulatedLatencyExecutor:
    """Deterministic async: inference runs inline when submitted, the chunk is released `delay` ticks later."""

    def __init__(self, latency: SimulatedLatency, control_hz: float, clock: Clock):
        self._latency, self._hz, self._clock = latency, control_hz, clock
        self._rng = np.random.default_rng(latency.seed)
        self._pending: InferenceResult | None = None
        self._release_tick = 0

    def reseed(self, seed: int) -> None:
        self._rng = np.random.default_rng(seed)

    @property
    def busy(self) -> bool:
        return self._pending is not None

    def submit(self, origin_tick: int, generation: int, fn: Callable[[], np.ndarray]) -> None:
        if self._pending is not None:
            raise RuntimeError("SimulatedLatencyExecutor.submit while an inference is in flight")
        delay = self._latency.delay_ticks(self._rng, self._hz)
        self._pending = _run(origin_tick, generation, fn, self._clock)
        self._pending.delay_ticks = delay
        self._release_tick = origin_tick + delay

    def poll(self, tick: int) -> InferenceResult | None:
        if self._pending is None or tick < self._release_tick:
            return None
        result, self._pending = self._pending, None
        return result

    def cancel(self) -> None:
        self._pending = None

    def close(self) -> None:
        self._pending = None
