"""SB3 actor export (PPO/SAC/TD3/TQC): deterministic action with VecNormalize and action rescaling folded in."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from training.datasets.observations import STATE_KEYS

from .env_info import EnvInfo
from .graphs import Graph
from .plan import ACTION_OUTPUT, MAIN_FILE, ExportPlan, control_spec, example_inputs, observation_features


class ActorGraph(nn.Module):
    """Raw observations (1, size) per dataset key -> (1, 1, A): a one-action chunk in the env's units.

    The inputs are concatenated in the checkpoint's observation layout (the order SB3 was trained on), then
    training.rl.actor.DeterministicActor normalizes (VecNormalize statistics, clip), runs the actor and rescales.
    """

    def __init__(self, actor: nn.Module):
        super().__init__()
        self.actor = actor

    def forward(self, *observations: torch.Tensor) -> torch.Tensor:
        flat = torch.cat([x.reshape(x.shape[0], -1) for x in observations], dim=1)
        return self.actor(flat).unsqueeze(1)


def plan(source, info: EnvInfo, options) -> ExportPlan:
    from training.rl.checkpoint import load_policy
    from training.rl.policy import SB3VectorPolicy

    rl = source.rl
    layout = rl.layout
    unknown = [k for k in layout.keys if k not in STATE_KEYS]
    if unknown:
        raise ValueError(f"{source.path}: observation entries {unknown} have no dataset key; exportable entries are "
                         f"{sorted(STATE_KEYS)}")
    keys = [STATE_KEYS[k] for k in layout.keys]
    features = observation_features(info, keys)
    for f, size in zip(features, layout.sizes):
        if int(np.prod(f.shape)) != size:
            raise ValueError(f"{f.key!r} has {int(np.prod(f.shape))} values in env {info.env_id}, the policy was "
                             f"trained on {size}")
    graph = Graph(MAIN_FILE, ActorGraph(source.policy), keys, example_inputs(features, 1), ACTION_OUTPUT)
    # The reference is SB3's own predict() on the pickle-free checkpoint (as scripts/eval.py runs it), not the
    # actor module being exported, so parity covers the folding of normalization and action scaling too.
    sb3 = SB3VectorPolicy(load_policy(rl, "cpu"), layout, rl.normalizer)
    env_keys = {v: k for k, v in STATE_KEYS.items()}

    def reference(inputs, noise=None) -> np.ndarray:
        obs = {env_keys[k]: np.asarray(inputs[k], np.float32) for k in keys}
        return np.asarray(sb3(obs), np.float32).reshape(1, -1)

    control = control_spec(info, chunk_size=1, n_action_steps=1, n_obs_steps=1)
    notes = {"algorithm": rl.config.algo.name, "observation_layout": layout.to_dict(),
             "vecnormalize": {"norm_obs": bool(rl.normalization["norm_obs"]),
                              "clip_obs": float(rl.normalization["clip_obs"])},
             "action": "deterministic (PPO: Gaussian mean clipped to bounds; SAC/TD3/TQC: tanh rescaled to bounds)"}
    return ExportPlan("sb3", [graph], features, {k: k for k in keys}, control, reference, notes=notes)
