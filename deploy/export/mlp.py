"""MLP export: the observation window -> action chunk network with its normalization."""

from __future__ import annotations

from .chunk_policy import chunk_policy_plan
from .env_info import EnvInfo
from .plan import ExportPlan


def plan(source, info: EnvInfo, options) -> ExportPlan:
    policy = source.policy
    if policy.name != "mlp":
        raise ValueError(f"mlp exporter got a {policy.name!r} policy")
    return chunk_policy_plan(policy, info)
