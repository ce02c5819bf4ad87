"""Registers the task suite with Gymnasium (idempotent, so re-imports and subprocess workers are safe)."""

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
            # No max_episode_steps here: truncation lives inside the env so its length is a plain env kwarg.
            gym.register(id=env_id, entry_point=entry_point)
