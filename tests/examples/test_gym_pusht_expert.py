"""examples/gym_pusht_expert.py, the user-side expert of the README's "Your own environment": it solves gym-pusht
from state and from the 96x96 image (skipped with a reason when gym-pusht is not installed)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow  # full 300-step rollouts with a planner in the loop

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "gym_pusht_expert.py"


def _example():
    spec = importlib.util.spec_from_file_location("gym_pusht_expert", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rollout(obs_type: str, seed: int):
    import gymnasium as gym

    env = gym.make("gym_pusht/PushT-v0", obs_type=obs_type)
    try:
        expert = _example().make_expert(env)
        obs, _ = env.reset(seed=seed)
        expert.reset()
        for step in range(300):
            obs, _, terminated, truncated, info = env.step(expert(obs))
            if terminated or truncated:
                break
        return info
    finally:
        env.close()


@pytest.mark.parametrize("obs_type, seed", [("environment_state_agent_pos", 3), ("pixels_agent_pos", 1000)])
def test_expert_pushes_the_t_onto_the_goal(obs_type, seed):
    pytest.importorskip("gym_pusht", reason="gym-pusht is not installed (pip install cerebellum[gym-pusht])")
    info = _rollout(obs_type, seed)
    assert info["is_success"] and info["coverage"] > 0.95


def test_pose_from_pixels_matches_the_simulator():
    pytest.importorskip("gym_pusht", reason="gym-pusht is not installed (pip install cerebellum[gym-pusht])")
    import gymnasium as gym

    example = _example()
    env = gym.make("gym_pusht/PushT-v0", obs_type="pixels_agent_pos")
    try:
        fit = example.PoseFromPixels(96)
        for seed in range(3):
            obs, _ = env.reset(seed=seed)
            block = env.unwrapped.block
            pose = fit(obs["pixels"], obs["agent_pos"], None)
            assert np.hypot(*(pose[:2] - np.array(block.position))) < 2.0
            assert abs(example.wrap(pose[2] - block.angle)) < 0.03
    finally:
        env.close()
