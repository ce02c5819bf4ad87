"""Registers the task suite with Gymnasium (idempotent, so re-imports and subprocess workers are safe)."""

import importlib

import gymnasium as gym

TASKS = {
    "cerebellum/Reach-v0": "envs.tasks.reach:ReachEnv",
    "cerebellum/PickCube-v0": "envs.tasks.pick_cube:PickCubeEnv",
    "cerebellum/TransferCube-v0": "envs.tasks.transfer_cube:TransferCubeEnv",
    "cerebellum/PushT-v0": "envs.tasks.push_t:PushTEnv",
}


def register_all() -> None:
    for env_id, entry_point in TASKS.items():
        if env_id not in gym.registry:
            module_name, class_name = entry_point.split(":")
            task_cls = getattr(importlib.import_module(module_name), class_name)
            # The registered length makes gymnasium.make add its TimeLimit wrapper, as for Gymnasium's own MuJoCo
            # tasks; make(..., max_episode_steps=N) overrides it. The passive checker wrapper is left out: the envs
            # validate their own actions, the test suite runs the full env checker, and every wrapper layer costs
            # time on each step (make(..., disable_env_checker=False) brings it back).
            gym.register(
                id=env_id,
                entry_point=entry_point,
                max_episode_steps=task_cls.default_max_episode_steps,
                disable_env_checker=True,
            )
