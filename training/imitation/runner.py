"""Run one trained policy in a vector env: per-sub-env observation history and action executor, batched chunks."""

from __future__ import annotations

import inspect
from collections import deque
from typing import Any

import numpy as np
import torch

from policies.chunking import make_executor
from policies.interface import Policy
from training.datasets.observations import ObservationMapping


def _device_of(policy: Policy) -> torch.device:
    for p in policy.parameters():
        return p.device
    return torch.device("cpu")


class BatchedPolicyRunner:
    """A vector policy for training.evaluation.evaluate.

    Policy.select_action keeps one history and one action queue for its whole batch, but the sub-envs of a vector env
    start episodes at different times; so this keeps them per sub-env (the same executors the policy uses) and asks
    the policy for chunks only for the sub-envs that need one, in one batch. Sampling noise (Diffusion) comes from a
    generator per sub-env seeded from (seed, sub-env, episode count), so an evaluation never touches torch's global
    RNG and two evaluations with the same settings agree.
    """

    def __init__(self, policy: Policy, n_envs: int, seed: int = 0, mapping: ObservationMapping | None = None):
        """`mapping`: how the env's observations become the policy's dataset keys (its env config's pixels_camera /
        obs_key_map, ObservationMapping.from_env_config); the default mapping when None."""
        if n_envs < 1:
            raise ValueError(f"n_envs must be >= 1, got {n_envs}")
        self.policy = policy.eval()
        self.n_envs = n_envs
        self.seed = int(seed)
        self.mapping = mapping or ObservationMapping()
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
        """Start a new episode in sub-env `env_index`."""
        i = int(env_index)
        self._history[i].clear()
        self._executors[i] = self._new_executor()
        seed = np.random.SeedSequence([self.seed, i, self._episodes[i]]).generate_state(1)[0]
        self._generators[i].manual_seed(int(seed))
        self._episodes[i] += 1

    def _inputs(self, observations: Any) -> dict[str, torch.Tensor]:
        data = self.mapping(observations)
        missing = [k for k in self.keys if k not in data]
        if missing:
            raise ValueError(f"the {self.policy.name} policy reads {missing}, which the environment does not observe "
                             f"(it yields {sorted(data)}); build the env with the observation mode and cameras the "
                             "policy was trained with")
        return {k: torch.from_numpy(np.ascontiguousarray(data[k])).to(self.device) for k in self.keys}

    @torch.inference_mode()
    def __call__(self, observations: Any) -> np.ndarray:
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
