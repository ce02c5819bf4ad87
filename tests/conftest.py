"""Session-wide fixtures: the Reach demonstrations several test files train on are recorded once per session.

The datasets are read-only for the tests: a test that changes a dataset records or copies its own.
"""

from __future__ import annotations

from pathlib import Path

import pytest


def record_reach(root: Path, episodes: int, steps: int) -> Path:
    """Reach expert episodes (state only), recorded with the project's collector."""
    from apps.recording import CollectConfig, collect  # envs, mujoco: only for sessions that need a dataset

    collect(CollectConfig(env_id="cerebellum/Reach-v0", env_kwargs={"max_episode_steps": steps}, n_episodes=episodes,
                          output_dir=str(root), progress=False))
    return root


@pytest.fixture(scope="session")
def reach_data(tmp_path_factory) -> Path:
    """Four 30-step Reach expert episodes (state)."""
    return record_reach(tmp_path_factory.mktemp("data") / "reach", episodes=4, steps=30)


@pytest.fixture(scope="session")
def small_reach_data(tmp_path_factory) -> Path:
    """Two 20-step Reach expert episodes (state): for tests that need any dataset at all."""
    return record_reach(tmp_path_factory.mktemp("data") / "reach_small", episodes=2, steps=20)
