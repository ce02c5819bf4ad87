"""Imitation policies behind one interface, one folder per family (config, model, export; ACT, Diffusion Policy, MLP
built in, more register themselves: policies.registry); normalization lives inside each policy."""

from policies.factory import (
    available_policies,
    load_policy,
    make_policy,
    make_policy_config,
    policy_config_classes,
    save_policy,
)
from policies.interface import Policy

__all__ = [
    "Policy",
    "available_policies",
    "load_policy",
    "make_policy",
    "make_policy_config",
    "policy_config_classes",
    "save_policy",
]
