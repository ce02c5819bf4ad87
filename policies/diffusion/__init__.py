"""Diffusion Policy: config, UNet denoiser and model."""
