"""Synthetic datasets, stats and batches in the dataset sample format, shared by the policy tests."""

from __future__ import annotations

import numpy as np
import torch

STATE_DIM, ENV_DIM, ACTION_DIM = 4, 3, 2

TINY = {
    "act": dict(
        dim_model=32, n_heads=4, dim_feedforward=64, n_encoder_layers=1, n_decoder_layers=1,
        n_vae_encoder_layers=1, latent_dim=8, chunk_size=8, n_action_steps=4, dropout=0.0,
    ),
    "diffusion": dict(down_dims=[16, 32], horizon=8, n_action_steps=4, diffusion_step_embed_dim=16, kernel_size=3),
    "mlp": dict(hidden_dims=[64, 64], chunk_size=8, n_action_steps=4),
}


def feature_stats(x: np.ndarray, axis=0) -> dict[str, list]:
    return {
        "mean": x.mean(axis).tolist(), "std": x.std(axis).tolist(), "min": x.min(axis).tolist(),
        "max": x.max(axis).tolist(), "count": [int(x.shape[0])],
    }


def image_stats() -> dict[str, list]:
    c = np.ones((3, 1, 1))
    return {"mean": (0.5 * c).tolist(), "std": (0.25 * c).tolist(), "min": (0 * c).tolist(), "max": c.tolist()}


class ChunkTask:
    """Actions are a smooth, state-dependent trajectory: a[t] = M0 s + t/T * M1 s + 0.3 * e (in physical units).

    Scales/offsets differ per dimension so that normalization matters.
    """

    def __init__(self, seed: int = 0, n: int = 512):
        rng = np.random.default_rng(seed)
        self.m0 = rng.normal(size=(ACTION_DIM, STATE_DIM))
        self.m1 = rng.normal(size=(ACTION_DIM, STATE_DIM))
        self.me = rng.normal(size=(ACTION_DIM, ENV_DIM))
        self.state = (rng.normal(size=(n, STATE_DIM)) * [0.5, 2.0, 1.0, 0.1] + [0.0, 1.0, -2.0, 0.3]).astype(np.float32)
        self.env = rng.normal(size=(n, ENV_DIM)).astype(np.float32)

    def actions(self, state: np.ndarray, env: np.ndarray, offsets: list[int]) -> np.ndarray:
        t = np.asarray(offsets, dtype=np.float32)[None, :, None] / max(len(offsets), 1)
        base = (state @ self.m0.T)[:, None] + t * (state @ self.m1.T)[:, None] + 0.3 * (env @ self.me.T)[:, None]
        return (base * [1.0, 0.2] + [0.5, -1.0]).astype(np.float32)

    def stats(self) -> dict[str, dict]:
        actions = self.actions(self.state, self.env, list(range(16))).reshape(-1, ACTION_DIM)
        return {
            "observation.state": feature_stats(self.state),
            "observation.environment_state": feature_stats(self.env),
            "action": feature_stats(actions),
            "observation.images.top": image_stats(),
        }

    def batch(self, policy, batch_size: int, generator: np.random.Generator) -> dict[str, torch.Tensor]:
        """A collated batch for `policy`'s delta indices; the observation window repeats the current frame."""
        idx = generator.integers(0, len(self.state), batch_size)
        s, e = self.state[idx], self.env[idx]
        deltas = policy.delta_indices()
        n_obs = len(policy.observation_delta_indices)
        act_offsets = deltas["action"]
        out = {
            "action": torch.from_numpy(self.actions(s, e, act_offsets)),
            "action_is_pad": torch.zeros(batch_size, len(act_offsets), dtype=torch.bool),
        }
        if "observation.state" in policy.input_specs:
            out["observation.state"] = torch.from_numpy(np.repeat(s[:, None], n_obs, axis=1))
            out["observation.state_is_pad"] = torch.zeros(batch_size, n_obs, dtype=torch.bool)
        if "observation.environment_state" in policy.input_specs:
            out["observation.environment_state"] = torch.from_numpy(np.repeat(e[:, None], n_obs, axis=1))
            out["observation.environment_state_is_pad"] = torch.zeros(batch_size, n_obs, dtype=torch.bool)
        out["episode_index"] = torch.zeros(batch_size, dtype=torch.long)
        return out


STATE_FEATURES = {
    "observation.state": [STATE_DIM],
    "observation.environment_state": [ENV_DIM],
    "action": [ACTION_DIM],
    "timestamp": [1],
    "index": [1],
}


def image_features(h: int = 64, w: int = 64) -> dict:
    # LeRobot info.json style entry for a video feature: (H, W, C) with names.
    return {
        **STATE_FEATURES,
        "observation.images.top": {"dtype": "video", "shape": [h, w, 3], "names": ["height", "width", "channels"]},
    }


def random_observation_window(policy, batch_size: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    n_obs = policy.config.n_obs_steps
    out = {}
    for key, spec in policy.input_specs.items():
        if spec.kind.value == "image":
            out[key] = torch.randint(0, 256, (batch_size, n_obs, *spec.shape), generator=g, dtype=torch.uint8)
        else:
            out[key] = torch.randn(batch_size, n_obs, *spec.shape, generator=g)
    return out


def train_losses(policy, task: ChunkTask, steps: int, lr: float, batch_size: int = 32, seed: int = 0) -> list[float]:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    optimizer = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    policy.train()
    losses = []
    for _ in range(steps):
        loss, _ = policy.compute_loss(task.batch(policy, batch_size, rng))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        policy.after_optimizer_step()
        losses.append(float(loss.detach()))
    return losses
