"""The deterministic actor of an SB3 policy as one torch module (raw flattened observation -> physical action).

Observation normalization (VecNormalize statistics) and the action scaling SB3 applies in `predict` are folded in as
buffers, so the module is what an exporter (ONNX, TorchScript) needs: it takes the robot's raw readings, flattened in
the checkpoint's observation layout, and returns joint targets in the env's units. Critics are left out.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.policies import ActorCriticPolicy
from torch import nn


class DeterministicActor(nn.Module):
    """(B, D) float32 raw observations -> (B, A) actions, identical to SB3's predict(deterministic=True) after
    VecNormalize on the same checkpoint.

    `layout`: the checkpoint's observation layout (keys, sizes, to_dict()); `input_keys`: the dataset key of each of
    its entries, in order; `algorithm`: the SB3 algorithm's name, for the export notes.
    """

    def __init__(self, policy, normalization: dict, action_low: np.ndarray, action_high: np.ndarray,
                 layout: Any, input_keys: list[str], algorithm: str) -> None:
        super().__init__()
        if len(input_keys) != len(layout.keys):
            raise ValueError(f"{len(input_keys)} input keys for the {len(layout.keys)} entries of the observation "
                             f"layout {list(layout.keys)}")
        self.layout = layout
        self.input_keys = list(input_keys)
        self.algorithm = algorithm
        self.norm_obs = bool(normalization["norm_obs"])
        self.clip_obs = float(normalization["clip_obs"])
        self.kind = "gaussian" if isinstance(policy, ActorCriticPolicy) else "squashed"
        if self.kind == "gaussian":
            if policy.squash_output:
                raise ValueError("PPO policies with squash_output (gSDE) are not supported by the exported actor")
            self.features = policy.pi_features_extractor
            self.latent = policy.mlp_extractor.policy_net
            self.head = policy.action_net
        else:
            if not hasattr(policy, "actor"):
                raise ValueError(f"{type(policy).__name__} has no actor network to export")
            self.actor = policy.actor
        norm_obs = self.norm_obs
        size = layout.size
        mean = np.asarray(normalization["obs"]["mean"]) if norm_obs else np.zeros(size)
        var = np.asarray(normalization["obs"]["var"]) if norm_obs else np.ones(size)
        std = np.sqrt(var + float(normalization["epsilon"])) if norm_obs else np.ones(size)
        clip = float(normalization["clip_obs"]) if norm_obs else float("inf")
        self.register_buffer("obs_mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("obs_std", torch.as_tensor(std, dtype=torch.float32))
        self.register_buffer("obs_clip", torch.tensor(clip, dtype=torch.float32))
        self.register_buffer("action_low", torch.as_tensor(action_low, dtype=torch.float32))
        self.register_buffer("action_high", torch.as_tensor(action_high, dtype=torch.float32))

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        x = (observation - self.obs_mean) / self.obs_std
        x = torch.maximum(torch.minimum(x, self.obs_clip), -self.obs_clip)
        if self.kind == "gaussian":
            # PPO: the Gaussian's mean, clipped to the action bounds (what predict(deterministic=True) returns).
            action = self.head(self.latent(self.features(x)))
            return torch.maximum(torch.minimum(action, self.action_high), self.action_low)
        # SAC/TQC/TD3: a tanh-squashed action in [-1, 1], rescaled to the bounds.
        squashed = self.actor(x, deterministic=True) if _takes_deterministic(self.actor) else self.actor(x)
        return self.action_low + 0.5 * (squashed + 1.0) * (self.action_high - self.action_low)


def _takes_deterministic(actor) -> bool:
    return "deterministic" in inspect.signature(actor.forward).parameters
