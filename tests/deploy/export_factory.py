"""Tiny checkpoints for the export tests: policies built via policies.factory with random stats and saved the way
the imitation trainer saves them; SB3 actors trained for a few hundred steps by the RL trainer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from policies.factory import make_policy

REACH = {"id": "cerebellum/Reach-v0", "max_episode_steps": 40}
REACH_PIXELS = {**REACH, "obs_mode": "state_pixels", "cameras": ["top"], "image_size": [32, 32]}
TINY = {
    "act": dict(dim_model=32, n_heads=4, dim_feedforward=64, n_encoder_layers=1, n_decoder_layers=1,
                n_vae_encoder_layers=1, latent_dim=8, chunk_size=8, n_action_steps=4, dropout=0.0),
    "diffusion": dict(down_dims=[16, 32], horizon=8, n_action_steps=4, diffusion_step_embed_dim=16, kernel_size=3,
                      num_inference_steps=4, n_obs_steps=2),
    "mlp": dict(hidden_dims=[32, 32], chunk_size=6, n_action_steps=3, n_obs_steps=2),
}


def _random_walk_episodes(env_kwargs: dict, episodes: int, seed: int) -> list[dict[str, np.ndarray]]:
    """Reach episodes under random targets around the arm's pose: what the stats of a small dataset would see."""
    import gymnasium as gym

    import envs  # noqa: F401  (registration)

    env = gym.make(env_kwargs["id"], max_episode_steps=env_kwargs["max_episode_steps"])
    rng = np.random.default_rng(seed)
    out = []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        rows: dict[str, list] = {"observation.state": [], "observation.environment_state": [], "action": []}
        done = False
        while not done:
            action = np.clip(obs["agent_pos"] + rng.normal(0, 0.3, 6), env.action_space.low,
                             env.action_space.high).astype(np.float32)
            rows["observation.state"].append(obs["agent_pos"])
            rows["observation.environment_state"].append(obs["environment_state"])
            rows["action"].append(action)
            obs, _, terminated, truncated, _ = env.step(action)
            done = terminated or truncated
        out.append({k: np.stack(v) for k, v in rows.items()})
    env.close()
    return out


def dataset_stats(features: dict[str, list[int]], seed: int = 0, speeds: bool = True) -> dict:
    """Dataset statistics as the recorder computes them (training.datasets.stats) from a few random-walk Reach
    episodes; images: per channel (3, 1, 1) in [0, 1], as LeRobot. speeds=False: without max_abs_delta, like a
    dataset recorded before it existed."""
    from training.datasets.stats import MAX_ABS_DELTA, StatsAccumulator, stats_to_json

    vectors = {k: ("vector", shape[0]) for k, shape in features.items() if not k.startswith("observation.images.")}
    acc = StatsAccumulator(vectors)
    for episode in _random_walk_episodes(REACH, 4, seed):
        acc.update(episode)
    stats = stats_to_json(acc.result())
    if not speeds:
        for entry in stats.values():
            entry.pop(MAX_ABS_DELTA)
    for key, shape in features.items():
        if key.startswith("observation.images."):
            c = np.ones((shape[0], 1, 1))
            stats[key] = {"mean": (0.4 * c).tolist(), "std": (0.2 * c).tolist(), "min": (0 * c).tolist(),
                          "max": c.tolist(), "count": [1000]}
    return stats


def reach_features(pixels: bool = False, image_size: int = 32) -> dict[str, list[int]]:
    features = {"observation.state": [6], "observation.environment_state": [6], "action": [6]}
    if pixels:
        features["observation.images.top"] = [3, image_size, image_size]
    return features


def imitation_checkpoint(run_dir: Path, policy_type: str, *, pixels: bool = False, seed: int = 0,
                         stats: dict | None = None, dataset_root: Path | None = None, no_env: bool = False,
                         image_size: int = 32, **overrides) -> Path:
    """A checkpoint of an untrained tiny policy for Reach, written with the imitation trainer's checkpoint code
    (pixels: with the top camera, image_size x image_size).
    stats: the dataset statistics to build it with (default: dataset_stats(...)); dataset_root: the dataset path its
    config names (default: one that does not exist); no_env: the config says env=null (trained from a dataset alone)."""
    from training.imitation.checkpoint import save_imitation_checkpoint
    from training.imitation.config import config_from_dict

    torch.manual_seed(seed)
    features = reach_features(pixels, image_size)
    stats = dataset_stats(features, seed) if stats is None else stats
    policy_cfg = {"type": policy_type, **TINY[policy_type], **overrides}
    policy = make_policy(policy_cfg, features, stats).eval()
    if getattr(policy, "ema_network", None) is not None:
        # EMA weights that differ from the live ones, so an export that picked the wrong network would show.
        with torch.no_grad():
            for p in policy.ema_network.parameters():
                p.add_(0.01 * torch.randn_like(p))
    env = {**REACH_PIXELS, "image_size": [image_size, image_size]} if pixels else REACH
    cfg = config_from_dict({"env": None if no_env else dict(env), "policy": policy_cfg, "dataset": {"root": str(dataset_root or run_dir / "no_dataset")},
                            "steps": 1})
    return save_imitation_checkpoint(run_dir, cfg, policy, step=1, state={"note": "export test"},
                                     tensors={"unused": torch.zeros(1)}, dataset_stats_json=json.dumps(stats))


def rl_checkpoint(run_dir: Path, algo: str, timesteps: int = 300) -> Path:
    """A real RL checkpoint: the project's SB3 trainer run for a few hundred steps on Reach."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from training.rl.config import finalize, register_configs
    from training.rl.trainer import train

    register_configs()
    root = Path(__file__).resolve().parents[2] / "configs"
    overrides = [
        "env=reach", "env.max_episode_steps=40", f"algo={algo}", "algo.net_arch=[16,16]", "vec_env=dummy",
        "progress_bar=false", "logger.mode=disabled", "eval.final_episodes=0", "eval.every_steps=0",
        "eval.video_episodes=0", f"total_timesteps={timesteps}", "checkpoint.every_steps=0",
    ]
    if algo == "ppo":
        overrides += ["algo.n_envs=1", "algo.n_steps=128", "algo.batch_size=64", "algo.n_epochs=1"]
    else:
        overrides += ["algo.learning_starts=100", "algo.batch_size=32", "algo.buffer_size=1000", "algo.n_envs=1"]
    with initialize_config_dir(config_dir=str(root), version_base="1.3"):
        cfg = finalize(OmegaConf.to_object(compose("train_rl", overrides=overrides)))
    return train(cfg, run_dir).checkpoint
