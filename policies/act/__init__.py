"""ACT policy: config and model."""
