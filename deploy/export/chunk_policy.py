"""Shared export of policies whose predict_chunk is one deterministic pass (ACT, MLP): raw obs -> raw chunk."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from policies.interface import Policy

from .env_info import EnvInfo
from .graphs import Graph
from .plan import ACTION_OUTPUT, MAIN_FILE, ExportPlan, control_spec, example_inputs, observation_features, to_torch


class ChunkGraph(nn.Module):
    """Observations in physical units / uint8 pixels, (1, [n_obs,] *shape) each in `keys` order -> (1, chunk, A).

    Normalization, uint8 -> [0, 1] image scaling and unnormalization all happen inside predict_chunk, so they are
    folded into the graph.
    """

    def __init__(self, policy: Policy, keys: list[str]):
        super().__init__()
        self.policy = policy
        self.keys = list(keys)
        self.stacked = policy.config.n_obs_steps > 1

    def forward(self, *observations: torch.Tensor) -> torch.Tensor:
        obs = {k: x if self.stacked else x.unsqueeze(1) for k, x in zip(self.keys, observations)}
        return self.policy.predict_chunk(obs)


def check_policy_fits_env(policy: Policy, info: EnvInfo) -> list[str]:
    keys = list(policy.input_specs)
    for key, spec in policy.input_specs.items():
        feature = info.feature(key)
        if tuple(feature.shape) != tuple(spec.shape):
            raise ValueError(f"{key!r} has shape {tuple(spec.shape)} for the policy but {tuple(feature.shape)} in env "
                             f"{info.env_id}")
    if policy.action_dim != info.action_dim:
        raise ValueError(f"the policy outputs {policy.action_dim} actions, env {info.env_id} takes {info.action_dim}")
    return keys


def chunk_policy_plan(policy: Policy, info: EnvInfo, notes: dict | None = None) -> ExportPlan:
    keys = check_policy_fits_env(policy, info)
    c = policy.config
    features = observation_features(info, keys)
    graph = Graph(MAIN_FILE, ChunkGraph(policy, keys), keys, example_inputs(features, c.n_obs_steps), ACTION_OUTPUT)
    stacked = c.n_obs_steps > 1

    def reference(inputs, noise=None) -> np.ndarray:
        with torch.no_grad():
            return policy.predict_chunk(to_torch(inputs, keys, stacked))[0].numpy()

    control = control_spec(info, chunk_size=policy.chunk_length, n_action_steps=c.n_action_steps,
                           n_obs_steps=c.n_obs_steps, temporal_ensemble_coeff=c.temporal_ensemble_coeff)
    return ExportPlan(policy_type=policy.name, graphs=[graph], features=features, model_inputs={k: k for k in keys},
                      control=control, reference=reference, notes=dict(notes or {}))
