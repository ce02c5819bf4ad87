"""ACT export: the transformer with its zero (prior-mean) style latent and normalization; no CVAE encoder."""

from __future__ import annotations

from policies.act.model import ACTPolicy
from policies.export import ExportDescription, ExportEnv, describe_chunk_policy
from policies.registry import register_export


@register_export("act")
def describe(policy: ACTPolicy, env: ExportEnv, options) -> ExportDescription:
    # The CVAE encoder only serves training: at inference the latent is its prior mean (zero), already inside
    # predict_chunk, so the graph holds the observation encoder and decoder alone.
    return describe_chunk_policy(policy, env, {"latent": "zero (CVAE prior mean)"})
