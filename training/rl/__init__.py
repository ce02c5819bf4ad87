"""Reinforcement learning with Stable-Baselines3 on the task suite: configs, envs, training loop, checkpoints."""
