"""One action per control step from predicted chunks (queue or temporal ensembling), for n environments at once."""

from __future__ import annotations

import inspect
import math
from collections import deque
from typing import Any, Callable, Mapping

import numpy as np
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


def _device_of(module: torch.nn.Module) -> torch.device:
    for p in module.parameters():
        return p.device
    return torch.device("cpu")


class ChunkExecutor:
    """One action per step for each of `n_envs` environments from a policy's chunks: the torch mirror of
    deploy.runtime.ChunkRunner's schedule (observation history, n_action_steps, temporal ensembling).

    The environments start episodes at different times, so each keeps its own observation history and action queue
    (or ensembler); the policy is asked for chunks only for those that need one, in one batch. Sampling noise
    (Diffusion) comes from a generator per environment seeded from (seed, env index, episode count), so a run never
    touches torch's global RNG and two runs with the same settings agree.
    `observation_map`: turns what __call__ receives into {policy input key: (n_envs, *shape) array}, e.g. a vector
    env's observations into dataset keys; identity when None.
    """

    def __init__(self, policy, n_envs: int = 1, seed: int = 0,
                 observation_map: Callable[[Any], Mapping[str, Any]] | None = None):
        if n_envs < 1:
            raise ValueError(f"n_envs must be >= 1, got {n_envs}")
        self.policy = policy.eval()
        self.n_envs = n_envs
        self.seed = int(seed)
        self.observation_map = observation_map
        self.device = _device_of(policy)
        self.keys = list(policy.input_specs)
        self.n_obs_steps = policy.config.n_obs_steps
        # Diffusion takes its initial noise (B, horizon, A) as an argument; other policies are deterministic.
        self._noise_horizon = (
            getattr(policy.config, "horizon", None)
            if "noise" in inspect.signature(policy.predict_chunk).parameters
            else None
        )
        self._episodes = [0] * n_envs
        self._history: list[deque] = [deque(maxlen=self.n_obs_steps) for _ in range(n_envs)]
        self._executors = [self._new_executor() for _ in range(n_envs)]
        self._generators = [torch.Generator() for _ in range(n_envs)]
        for i in range(n_envs):
            self.reset(i)

    def _new_executor(self):
        c = self.policy.config
        return make_executor(c.n_action_steps, self.policy.chunk_length, c.temporal_ensemble_coeff)

    def reset(self, env_index: int) -> None:
        """Start a new episode in environment `env_index`."""
        i = int(env_index)
        self._history[i].clear()
        self._executors[i] = self._new_executor()
        seed = np.random.SeedSequence([self.seed, i, self._episodes[i]]).generate_state(1)[0]
        self._generators[i].manual_seed(int(seed))
        self._episodes[i] += 1

    def _inputs(self, observations: Any) -> dict[str, Tensor]:
        data = observations if self.observation_map is None else self.observation_map(observations)
        missing = [k for k in self.keys if k not in data]
        if missing:
            raise ValueError(f"the {self.policy.name} policy reads {missing}, which the environment does not observe "
                             f"(it yields {sorted(data)}); build the env with the observation mode and cameras the "
                             "policy was trained with")
        out = {}
        for k in self.keys:
            x = data[k]
            x = x if isinstance(x, Tensor) else torch.from_numpy(np.ascontiguousarray(x))
            if x.shape[0] != self.n_envs:
                raise ValueError(f"{k!r} has {x.shape[0]} rows (shape {tuple(x.shape)}), one per environment "
                                 f"expected ({self.n_envs})")
            out[k] = x.to(self.device)
        return out

    @torch.inference_mode()
    def __call__(self, observations: Any) -> np.ndarray:
        """This step's observations of every environment -> their actions, float32 (n_envs, A) on the CPU."""
        batch = self._inputs(observations)
        for i in range(self.n_envs):
            step = {k: v[i] for k, v in batch.items()}
            history = self._history[i]
            while len(history) < self.n_obs_steps - 1:
                history.append(step)  # first step of an episode: pad the window with it, as the dataset does
            history.append(step)
        need = [i for i in range(self.n_envs) if self._executors[i].needs_chunk()]
        if need:
            window = {k: torch.stack([torch.stack([h[k] for h in self._history[i]]) for i in need]) for k in self.keys}
            kwargs = {}
            if self._noise_horizon is not None:
                shape = (self._noise_horizon, self.policy.action_dim)
                noise = torch.stack([torch.randn(shape, generator=self._generators[i]) for i in need])
                kwargs["noise"] = noise.to(self.device)
            chunks = self.policy.predict_chunk(window, **kwargs)
            for j, i in enumerate(need):
                self._executors[i].add_chunk(chunks[j : j + 1])
        actions = torch.cat([self._executors[i].pop() for i in range(self.n_envs)])
        return actions.to(device="cpu", dtype=torch.float32).numpy()
