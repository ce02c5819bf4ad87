"""Scripted experts that solve each task from observations alone; `make_expert(env)` picks the one for a task."""

from __future__ import annotations

import gymnasium as gym

from envs.experts.pick_cube import PickCubeExpert
from envs.experts.push_t import PushTExpert
from envs.experts.reach import ReachExpert
from envs.experts.transfer_cube import TransferCubeExpert

# Task class name -> expert class; each expert is built from an env instance and then acts on observations.
_EXPERTS = {
    "ReachEnv": ReachExpert,
    "PickCubeEnv": PickCubeExpert,
    "TransferCubeEnv": TransferCubeExpert,
    "PushTEnv": PushTExpert,
}


def make_expert(env: gym.Env):
    """Return the scripted expert for `env` (an instance of one of our tasks, wrapped or not)."""
    task = env.unwrapped
    name = type(task).__name__
    expert_cls = _EXPERTS.get(name)
    if expert_cls is None:
        raise ValueError(f"no scripted expert for {name}; experts exist for {sorted(_EXPERTS)}")
    return expert_cls(task)
