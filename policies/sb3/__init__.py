"""SB3 (PPO/SAC/TD3/TQC) actors of RL checkpoints as torch modules, and their export description."""
