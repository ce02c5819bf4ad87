"""Turning predicted action chunks into one action per control step: a chunk queue or ACT's temporal ensembling."""

from __future__ import annotations

import math

import torch
from torch import Tensor


class ActionQueue:
    """Executes the first `n_action_steps` actions of each chunk, then asks for a new chunk."""

    def __init__(self, n_action_steps: int):
        if n_action_steps < 1:
            raise ValueError(f"n_action_steps must be >= 1, got {n_action_steps}")
        self.n_action_steps = n_action_steps
        self.reset()

    def reset(self) -> None:
        self._chunk: Tensor | None = None
        self._index = 0

    def needs_chunk(self) -> bool:
        return self._chunk is None or self._index >= self._chunk.shape[1]

    def add_chunk(self, chunk: Tensor) -> None:
        if chunk.ndim != 3:
            raise ValueError(f"action chunk must be (B, T, A), got shape {tuple(chunk.shape)}")
        if chunk.shape[1] < self.n_action_steps:
            raise ValueError(
                f"action chunk has {chunk.shape[1]} steps, fewer than n_action_steps={self.n_action_steps}"
            )
        self._chunk = chunk[:, : self.n_action_steps]
        self._index = 0

    def pop(self) -> Tensor:
        if self.needs_chunk():
            raise RuntimeError("action queue is empty: add a chunk first")
        action = self._chunk[:, self._index]
        self._index += 1
        return action


class TemporalEnsembler:
    """Averages, for the current step, every past chunk's prediction of it with weights w_i = exp(-coeff * i).

    i = 0 is the oldest prediction of that step (Zhao et al. 2023, sec. 3.3), so coeff > 0 favours older
    predictions and coeff = 0 is a plain average. A chunk must be added at every step, before `pop`.
    Kept as running weighted sums per future step rather than a list of past chunks: O(chunk) work per step.
    """

    def __init__(self, coeff: float, chunk_length: int):
        if chunk_length < 1:
            raise ValueError(f"chunk_length must be >= 1, got {chunk_length}")
        if not math.isfinite(coeff):
            raise ValueError(f"temporal ensembling coefficient must be finite, got {coeff}")
        self.coeff = float(coeff)
        self.chunk_length = chunk_length
        self.weights = torch.exp(-self.coeff * torch.arange(chunk_length, dtype=torch.float64))
        self.reset()

    def reset(self) -> None:
        self._sums: Tensor | None = None  # (B, L, A) weighted sum of predictions for steps t .. t+L-1
        self._weight_sums: Tensor | None = None  # (L,)
        self._counts: Tensor | None = None  # (L,) predictions received per future step
        self._pending = False

    def needs_chunk(self) -> bool:
        return True

    def add_chunk(self, chunk: Tensor) -> None:
        if chunk.ndim != 3 or chunk.shape[1] != self.chunk_length:
            raise ValueError(f"action chunk must be (B, {self.chunk_length}, A), got shape {tuple(chunk.shape)}")
        if self._pending:
            raise RuntimeError("temporal ensembler got two chunks for one step: call pop() between add_chunk() calls")
        if self._sums is None:
            self._sums = torch.zeros(chunk.shape, dtype=torch.float64, device=chunk.device)
            self._weight_sums = torch.zeros(self.chunk_length, dtype=torch.float64, device=chunk.device)
            self._counts = torch.zeros(self.chunk_length, dtype=torch.long, device=chunk.device)
        elif self._sums.shape != chunk.shape:
            raise ValueError(f"action chunk shape changed from {tuple(self._sums.shape)} to {tuple(chunk.shape)}")
        w = self.weights.to(chunk.device)[self._counts]  # the k-th prediction of a step gets exp(-coeff * k)
        self._sums += w[None, :, None] * chunk.to(torch.float64)
        self._weight_sums += w
        self._counts += 1
        self._dtype = chunk.dtype
        self._pending = True

    def pop(self) -> Tensor:
        if not self._pending:
            raise RuntimeError("temporal ensembler needs this step's chunk: call add_chunk() before pop()")
        action = (self._sums[:, 0] / self._weight_sums[0]).to(self._dtype)
        # Step t is done: shift the window so index 0 is step t+1; the new last step has no prediction yet.
        self._sums = torch.roll(self._sums, -1, dims=1)
        self._sums[:, -1] = 0
        self._weight_sums = torch.roll(self._weight_sums, -1)
        self._weight_sums[-1] = 0
        self._counts = torch.roll(self._counts, -1)
        self._counts[-1] = 0
        self._pending = False
        return action


def make_executor(n_action_steps: int, chunk_length: int, temporal_ensemble_coeff: float | None):
    if temporal_ensemble_coeff is None:
        return ActionQueue(n_action_steps)
    return TemporalEnsembler(temporal_ensemble_coeff, chunk_length)
