"""Scripted experts that solve each task from observations alone; `make_expert(env)` picks the one for a task."""

from __future__ import annotations

import importlib

import gymnasium as gym

# Task class name -> "module:ExpertClass"; each expert is built from an env instance and then acts on observations.
_EXPERTS = {
    "ReachEnv": "envs.experts.reach:ReachExpert",
    "PickCubeEnv": "envs.experts.pick_cube:PickCubeExpert",
    "TransferCubeEnv": "envs.experts.transfer_cube:TransferCubeExpert",
    "PushTEnv": "envs.experts.push_t:PushTExpert",
}


def make_expert(env: gym.Env):
    """Return the scripted expert for `env` (an instance of one of our tasks, wrapped or not)."""
    task = env.unwrapped
    name = type(task).__name__
    target = _EXPERTS.get(name)
    if target is None:
        raise ValueError(f"no scripted expert for {name}; experts exist for {sorted(_EXPERTS)}")
    module_name, class_name = target.split(":")
    expert_cls = getattr(importlib.import_module(module_name), class_name)
    return expert_cls(task)
