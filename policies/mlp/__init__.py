"""MLP behaviour-cloning baseline: config and model."""
