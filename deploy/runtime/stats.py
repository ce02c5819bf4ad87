"""Controller statistics: fault kinds and counts, held ticks, late chunks and inference latency percentiles."""

from __future__ import annotations

from collections import Counter, deque
from typing import Any

import numpy as np


class Fault:
    """Fault kinds recorded by ChunkRunner (the keys of RunnerStatistics.faults)."""

    BAD_OBSERVATION = "bad_observation"  # not a mapping
    MISSING_KEY = "missing_key"
    BAD_SHAPE = "bad_shape"
    BAD_DTYPE = "bad_dtype"
    NON_FINITE_OBSERVATION = "non_finite_observation"
    OUT_OF_RANGE_OBSERVATION = "out_of_range_observation"  # finite, outside low/high (or the widened limits)
    # Camera frames with a manifest max_age_s: captured longer ago than it; no capture time given for the frame; a
    # capture time that is not a finite number or lies in the future of the runner's clock.
    STALE_FRAME = "stale_frame"
    MISSING_FRAME_TIME = "missing_frame_time"
    BAD_FRAME_TIME = "bad_frame_time"
    NO_FRESH_CHUNK = "no_fresh_chunk"  # the executing chunk ran out before the next one arrived
    LATE_CHUNK = "late_chunk"  # sync mode: the inference missed its deadline; the tick went on without it
    STALE_CHUNK = "stale_chunk"  # a chunk arrived after all of its actions were due: discarded
    INFERENCE_ERROR = "inference_error"
    NON_FINITE_ACTION = "non_finite_action"  # the model produced NaN/inf
    INTERNAL_ERROR = "internal_error"  # a bug in the runner; tick() still returns a held action

    OBSERVATION_KINDS = (BAD_OBSERVATION, MISSING_KEY, BAD_SHAPE, BAD_DTYPE, NON_FINITE_OBSERVATION,
                         OUT_OF_RANGE_OBSERVATION, STALE_FRAME, MISSING_FRAME_TIME, BAD_FRAME_TIME)


class RunnerStatistics:
    """Counters updated by the control thread; summary() turns them into a JSON-ready dict."""

    def __init__(self, history: int = 100_000, recent_faults: int = 200):
        self._history, self._recent = history, recent_faults
        self.reset()

    def reset(self) -> None:
        self.ticks = 0
        self.startup_ticks = 0  # before the first model action of an episode, once a pose was measured (no fault)
        self.held_ticks = 0  # ticks that output the held (last) command because of a fault
        self.no_command_ticks = 0  # ticks that returned None: nothing commanded yet this episode (startup included)
        self.requests = 0
        self.chunks_received = 0
        # Chunks that arrived late: async, after the previous one had run out (holds happened); sync, after the
        # deadline (the ticks in between went on with the previous plan or held).
        self.late_chunks = 0
        self.stale_chunks = 0
        self.skipped_actions = 0  # actions of received chunks whose tick had already passed
        self.faults: Counter[str] = Counter()
        self.recent_faults: deque[tuple[int, str, str]] = deque(maxlen=self._recent)
        self.inference_latency_s: deque[float] = deque(maxlen=self._history)
        self.delivery_ticks: deque[int] = deque(maxlen=self._history)  # ticks from observation to chunk use

    def fault(self, tick: int, kind: str, detail: str) -> None:
        self.faults[kind] += 1
        self.recent_faults.append((tick, kind, detail))

    def summary(self) -> dict[str, Any]:
        return {
            "ticks": self.ticks, "startup_ticks": self.startup_ticks, "held_ticks": self.held_ticks,
            "no_command_ticks": self.no_command_ticks,
            "requests": self.requests, "chunks_received": self.chunks_received, "late_chunks": self.late_chunks,
            "stale_chunks": self.stale_chunks, "skipped_actions": self.skipped_actions,
            "faults": dict(self.faults),
            "inference_latency_ms": _percentiles(np.asarray(self.inference_latency_s) * 1e3),
            "delivery_ticks": _percentiles(np.asarray(self.delivery_ticks, dtype=np.float64)),
        }


def _percentiles(values: np.ndarray) -> dict[str, float | int | None]:
    if values.size == 0:
        return {"count": 0, "p50": None, "p90": None, "p99": None, "max": None, "mean": None}
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return {"count": int(values.size), "p50": float(p50), "p90": float(p90), "p99": float(p99),
            "max": float(values.max()), "mean": float(values.mean())}
