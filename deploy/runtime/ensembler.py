"""ACT temporal ensembling over chunks that start at arbitrary control ticks (ring buffer, O(chunk) per chunk)."""

from __future__ import annotations

import numpy as np


class TemporalEnsembler:
    """Weighted mean, per control tick, of every chunk's prediction for that tick.

    The i-th prediction to arrive for a tick (i = 0 for the oldest) has weight exp(-coeff * i), as in ACT:
    with coeff > 0 older predictions weigh more. Sums are accumulated as chunks arrive, so reading a tick's
    action costs one division whatever the number of overlapping chunks.
    """

    def __init__(self, coeff: float, horizon: int, action_dim: int):
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {horizon}")
        self.coeff, self.horizon = float(coeff), horizon
        # Slot tick % horizon holds tick's sums; a chunk added at tick t only covers [t, t + horizon).
        self._weighted = np.zeros((horizon, action_dim), np.float64)
        self._weights = np.zeros(horizon, np.float64)
        self._counts = np.zeros(horizon, np.int64)
        # A tick gets at most `horizon` predictions (one per chunk started in the last `horizon` ticks).
        self._weight_of_count = np.exp(-self.coeff * np.arange(horizon + 1))

    def reset(self) -> None:
        self._weighted.fill(0.0)
        self._weights.fill(0.0)
        self._counts.fill(0)

    def add(self, start_tick: int, actions: np.ndarray) -> None:
        """Add predictions for ticks start_tick, start_tick + 1, ... (at most `horizon` of them)."""
        n = len(actions)
        if n > self.horizon:
            raise ValueError(f"a chunk of {n} actions does not fit the ensembling horizon {self.horizon}")
        first = start_tick % self.horizon
        head = min(n, self.horizon - first)
        # Two contiguous slot ranges (before and after the ring wraps) instead of fancy indexing: cheaper per tick.
        for slots, part in ((slice(first, first + head), actions[:head]), (slice(0, n - head), actions[head:])):
            if len(part) == 0:
                continue
            w = self._weight_of_count[self._counts[slots]]
            self._weighted[slots] += w[:, None] * part
            self._weights[slots] += w
            self._counts[slots] += 1

    def action(self, tick: int) -> np.ndarray | None:
        slot = tick % self.horizon
        if self._counts[slot] == 0:
            return None
        return (self._weighted[slot] / self._weights[slot]).astype(np.float32)

    def predictions_for(self, tick: int) -> int:
        return int(self._counts[tick % self.horizon])

    def retire(self, tick: int) -> None:
        """Forget `tick` once it is executed, freeing its slot for tick + horizon."""
        slot = tick % self.horizon
        self._weighted[slot] = 0.0
        self._weights[slot] = 0.0
        self._counts[slot] = 0
