"""ACT export: the transformer with its zero (prior-mean) style latent and normalization; no CVAE encoder."""

from __future__ import annotations

from .chunk_policy import chunk_policy_plan
from .env_info import EnvInfo
from .plan import ExportPlan


def plan(source, info: EnvInfo, options) -> ExportPlan:
    policy = source.policy
    if policy.name != "act":
        raise ValueError(f"act exporter got a {policy.name!r} policy")
    # The CVAE encoder only serves training: at inference the latent is its prior mean (zero), already inside
    # predict_chunk, so the graph holds the observation encoder and decoder alone.
    return chunk_policy_plan(policy, info, {"latent": "zero (CVAE prior mean)"})
