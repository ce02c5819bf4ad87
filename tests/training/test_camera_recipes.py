"""The camera recipes (configs/experiment/*_pixels.yaml): they compose through scripts/train.py's config, read the
joints and their cameras only (never the object pose), record what they read, and build a policy of that shape."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from training.imitation.config import finalize, register_configs

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
RECIPES = {
    "act_pick_cube_pixels": ("cerebellum/PickCube-v0", "front", "act"),
    "act_transfer_cube_pixels": ("cerebellum/TransferCube-v0", "top", "act"),
    "diffusion_push_t_pixels": ("cerebellum/PushT-v0", "top", "diffusion"),
}


def compose_recipe(name: str, *overrides: str):
    register_configs()
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return finalize(OmegaConf.to_object(compose("train", overrides=[f"+experiment={name}", *overrides])))


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_camera_recipe_reads_joints_and_its_camera_only(name):
    env_id, camera, policy_type = RECIPES[name]
    cfg = compose_recipe(name)
    assert cfg.env.id == env_id and cfg.env.cameras == [camera] and cfg.env.obs_mode == "state_pixels"
    assert cfg.policy.type == policy_type
    inputs = cfg.policy.input_features
    assert set(inputs) == {"observation.state", f"observation.images.{camera}"}
    assert inputs[f"observation.images.{camera}"] == [3, *cfg.env.image_size]
    assert cfg.policy.vision_backbone == "cnn_small"


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_camera_recipe_state_size_matches_its_env(name):
    import gymnasium as gym

    import envs  # noqa: F401

    cfg = compose_recipe(name)
    env = gym.make(cfg.env.id)
    try:
        assert [env.observation_space["agent_pos"].shape[0]] == cfg.policy.input_features["observation.state"]
    finally:
        env.close()


def test_pick_cube_recipe_trains_on_visually_randomized_scenes_and_others_can():
    from envs.randomization import DomainRandomizationConfig

    assert compose_recipe("act_pick_cube_pixels").env.randomization == DomainRandomizationConfig.visual_only()
    cfg = compose_recipe("act_transfer_cube_pixels", "+env/randomization=visual")
    assert cfg.env.randomization == DomainRandomizationConfig.visual_only()
    assert not compose_recipe("act_transfer_cube_pixels").env.randomization.enabled
