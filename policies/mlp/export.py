"""MLP export: the observation window -> action chunk network with its normalization."""

from __future__ import annotations

from policies.export import ExportDescription, ExportEnv, describe_chunk_policy
from policies.mlp.model import MLPPolicy
from policies.registry import register_export


@register_export("mlp")
def describe(policy: MLPPolicy, env: ExportEnv, options) -> ExportDescription:
    return describe_chunk_policy(policy, env)
