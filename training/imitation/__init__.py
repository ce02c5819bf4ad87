"""Imitation learning: train ACT / Diffusion / MLP policies on recorded datasets, checkpoint them, evaluate them in sim."""
