"""SB3 actor export (PPO/SAC/TD3/TQC): deterministic action with VecNormalize and action rescaling folded in."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from policies.export import ACTION_OUTPUT, MAIN_FILE, ExportDescription, ExportEnv, Graph, example_inputs
from policies.registry import register_export
from policies.sb3.actor import DeterministicActor


class ActorGraph(nn.Module):
    """Raw observations (1, size) per dataset key -> (1, 1, A): a one-action chunk in the env's units.

    The inputs are concatenated in the checkpoint's observation layout (the order SB3 was trained on), then the
    DeterministicActor normalizes (VecNormalize statistics, clip), runs the actor and rescales.
    """

    def __init__(self, actor: nn.Module):
        super().__init__()
        self.actor = actor

    def forward(self, *observations: torch.Tensor) -> torch.Tensor:
        flat = torch.cat([x.reshape(x.shape[0], -1) for x in observations], dim=1)
        return self.actor(flat).unsqueeze(1)


@register_export("sb3")
def describe(actor: DeterministicActor, env: ExportEnv, options) -> ExportDescription:
    """The reference is the actor module itself; deploy.export replaces it with SB3's own predict() on the
    checkpoint (which only the training side can load), so parity also covers the folded normalization and scaling."""
    keys = actor.input_keys
    for key, size in zip(keys, actor.layout.sizes):
        shape, _ = env.feature(key)
        if int(np.prod(shape)) != size:
            raise ValueError(f"{key!r} has {int(np.prod(shape))} values in env {env.env_id}, the policy was trained "
                             f"on {size}")
    graph = Graph(MAIN_FILE, ActorGraph(actor), keys, example_inputs(env, keys, 1), ACTION_OUTPUT)

    def reference(inputs, noise=None) -> np.ndarray:
        with torch.no_grad():
            return graph.module(*(torch.from_numpy(np.asarray(inputs[k], np.float32)) for k in keys))[0].numpy()

    notes = {"algorithm": actor.algorithm, "observation_layout": actor.layout.to_dict(),
             "vecnormalize": {"norm_obs": actor.norm_obs, "clip_obs": actor.clip_obs},
             "action": "deterministic (PPO: Gaussian mean clipped to bounds; SAC/TD3/TQC: tanh rescaled to bounds)"}
    return ExportDescription([graph], keys, {k: k for k in keys}, chunk_size=1, n_action_steps=1, n_obs_steps=1,
                             reference=reference, notes=notes)
