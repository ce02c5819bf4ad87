"""RL checkpoints: what an SB3 run writes into a training.checkpoints directory and how it is read back.

Files of an RL checkpoint (kind "rl", type = algorithm name):
    model.zip                 SB3's own archive (weights + optimizer states), so `PPO.load("model.zip")` works for
                              users who trust the file. We read only its torch tensor files, through SB3's
                              load_from_zip_file(load_data=False), i.e. torch.load(weights_only=True); its "data"
                              entry (cloudpickled spaces and schedules) is never read by this code.
    policy.safetensors        the policy's state dict (actor + critic), pickle-free; used for evaluation and export.
    normalization.json        VecNormalize statistics and settings (training.rl.normalization), pickle-free.
    trainer_state.json        counters and layout: {"num_timesteps", "n_updates", "episode_num", "seed",
                              "observation_layout": {"keys", "sizes"}, "action_space": {"low", "high"} | null,
                              "wandb_run_id"}.
    replay_buffer.safetensors + replay_buffer.json   off-policy runs with checkpoint.save_replay_buffer: the filled
                              part of the buffer as plain arrays, and {"pos", "full", "buffer_size", "n_envs"}.
    config.yaml, checkpoint.json   written by training.checkpoints.
Pickle-free: every file we read. The one pickle-bearing entry (model.zip's "data") exists for SB3 interop only.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.wrappers import FlattenObservation
from safetensors.numpy import load_file as load_numpy, save_file as save_numpy
from safetensors.torch import load_file as load_torch, save_file as save_torch
from stable_baselines3.common.vec_env import DummyVecEnv

from training.checkpoints import Checkpoint, read_checkpoint, save_checkpoint
from training.evaluation import LoadedPolicy
from training.rl.algorithms import build_model
from training.rl.config import RLTrainConfig, config_from_dict, to_dict
from training.rl.environments import ObservationLayout, make_flat_env
from training.rl.normalization import ObservationNormalizer, load_state, restore_vecnormalize, save_state, \
    vecnormalize_state
from training.rl.policy import SB3VectorPolicy

KIND = "rl"
MODEL_ZIP = "model.zip"
POLICY_WEIGHTS = "policy.safetensors"
NORMALIZATION = "normalization.json"
TRAINER_STATE = "trainer_state.json"
REPLAY_ARRAYS = "replay_buffer.safetensors"
REPLAY_META = "replay_buffer.json"
_REPLAY_FIELDS = ("observations", "next_observations", "actions", "rewards", "dones", "timeouts")


def save_rl_checkpoint(run_dir: Path, model, venv, cfg: RLTrainConfig, layout: ObservationLayout,
                       wandb_run_id: str | None = None) -> Path:
    """Write the current model, normalization and counters as a checkpoint of `run_dir` (atomic)."""
    from gymnasium import spaces

    action_space = model.action_space
    state = {
        "num_timesteps": int(model.num_timesteps),
        "n_updates": int(getattr(model, "_n_updates", 0)),
        "episode_num": int(getattr(model, "_episode_num", 0)),
        "seed": int(cfg.seed),
        "observation_layout": layout.to_dict(),
        "action_space": ({"low": action_space.low.tolist(), "high": action_space.high.tolist()}
                         if isinstance(action_space, spaces.Box) else None),
        "wandb_run_id": wandb_run_id,
    }
    with_buffer = cfg.checkpoint.save_replay_buffer and getattr(model, "replay_buffer", None) is not None

    def write(tmp: Path) -> None:
        model.save(tmp / MODEL_ZIP)
        weights = {k: v.detach().cpu().contiguous() for k, v in model.policy.state_dict().items()}
        save_torch(weights, str(tmp / POLICY_WEIGHTS))
        save_state(vecnormalize_state(venv), tmp / NORMALIZATION)
        (tmp / TRAINER_STATE).write_text(json.dumps(state, indent=2))
        if with_buffer:
            _save_replay_buffer(model.replay_buffer, tmp)

    return save_checkpoint(
        run_dir,
        step=model.num_timesteps,
        kind=KIND,
        type=cfg.algo.name,
        config=to_dict(cfg),
        write_files=write,
        extra={"env_id": cfg.env.id, "policy_class": type(model.policy).__name__,
               "observation_layout": layout.to_dict(), "replay_buffer": bool(with_buffer)},
        keep_last=cfg.checkpoint.keep_last,
    )


def _save_replay_buffer(buffer, out: Path) -> None:
    filled = buffer.buffer_size if buffer.full else buffer.pos
    arrays = {}
    for name in _REPLAY_FIELDS:
        value = getattr(buffer, name, None)
        if value is not None:
            arrays[name] = np.ascontiguousarray(value[:filled])
    save_numpy(arrays, str(out / REPLAY_ARRAYS))
    meta = {"pos": int(buffer.pos), "full": bool(buffer.full), "buffer_size": int(buffer.buffer_size),
            "n_envs": int(buffer.n_envs)}
    (out / REPLAY_META).write_text(json.dumps(meta))


def _load_replay_buffer(buffer, ckpt: Checkpoint) -> None:
    meta = json.loads(ckpt.file(REPLAY_META).read_text())
    if (meta["buffer_size"], meta["n_envs"]) != (buffer.buffer_size, buffer.n_envs):
        raise ValueError(f"{ckpt.path}: replay buffer was saved with buffer_size={meta['buffer_size']}, "
                         f"n_envs={meta['n_envs']}; the model has {buffer.buffer_size}, {buffer.n_envs}")
    arrays = load_numpy(str(ckpt.file(REPLAY_ARRAYS)))
    filled = meta["buffer_size"] if meta["full"] else meta["pos"]
    for name, value in arrays.items():
        target = getattr(buffer, name, None)
        if target is None or value.shape != (filled, *target.shape[1:]):
            raise ValueError(f"{ckpt.path}: replay buffer field {name!r} has shape {value.shape}, expected "
                             f"({filled}, {', '.join(map(str, target.shape[1:])) if target is not None else '?'})")
        target[:filled] = value
    buffer.pos, buffer.full = int(meta["pos"]), bool(meta["full"])


@dataclass
class RLCheckpoint:
    """A validated RL checkpoint with its typed config and trainer state."""

    checkpoint: Checkpoint
    config: RLTrainConfig
    state: dict[str, Any]
    normalization: dict[str, Any]

    @property
    def layout(self) -> ObservationLayout:
        return ObservationLayout.from_dict(self.state["observation_layout"])

    @property
    def normalizer(self) -> ObservationNormalizer:
        return ObservationNormalizer.from_state(self.normalization)


def read_rl_checkpoint(path: str | Path) -> RLCheckpoint:
    ckpt = read_checkpoint(path, kind=KIND)
    cfg = config_from_dict(ckpt.config)
    state = json.loads(ckpt.file(TRAINER_STATE).read_text())
    normalization = load_state(ckpt.file(NORMALIZATION))
    if state.get("num_timesteps") != ckpt.step:
        raise ValueError(f"{ckpt.path}: trainer_state.json says step {state.get('num_timesteps')}, "
                         f"checkpoint.json says {ckpt.step}")
    return RLCheckpoint(ckpt, cfg, state, normalization)


def restore_training_state(rl: RLCheckpoint, model, venv) -> None:
    """Load weights, optimizer states, counters, VecNormalize statistics and (if saved) the replay buffer."""
    from stable_baselines3.common.save_util import load_from_zip_file, recursive_setattr

    ckpt = rl.checkpoint
    restore_vecnormalize(venv, rl.normalization, str(ckpt.file(NORMALIZATION)))
    # load_data=False: only the torch tensor files are read, with torch.load(weights_only=True).
    _, params, variables = load_from_zip_file(ckpt.file(MODEL_ZIP), load_data=False, device=model.device)
    model.set_parameters(params, exact_match=True, device=model.device)
    for name, value in (variables or {}).items():
        recursive_setattr(model, f"{name}.data", value.data)
    model.num_timesteps = int(rl.state["num_timesteps"])
    model._n_updates = int(rl.state["n_updates"])
    model._episode_num = int(rl.state["episode_num"])
    if ckpt.has(REPLAY_ARRAYS) and getattr(model, "replay_buffer", None) is not None:
        _load_replay_buffer(model.replay_buffer, ckpt)


def load_policy(rl: RLCheckpoint, device: str = "cpu", env: gym.Env | None = None):
    """The SB3 policy module of a checkpoint with its weights (pickle-free), on `device`, in eval mode.

    The model is rebuilt from the saved config on one env (which also checks that the env still produces the
    observation layout the policy was trained on): `env`, an instance of the checkpoint's env that the caller keeps
    using and closes, or else one built and closed here.
    """
    cfg = rl.config
    venv = DummyVecEnv([lambda: make_flat_env(cfg.env) if env is None else FlattenObservation(env)])
    try:
        layout = ObservationLayout.from_space(venv.envs[0].env.observation_space)  # the Dict space, unflattened
        if layout != rl.layout:
            raise ValueError(f"{rl.checkpoint.path}: the policy was trained on observations {rl.layout.to_dict()}, "
                             f"but {cfg.env.id} now produces {layout.to_dict()}")
        algo = dataclasses.replace(cfg.algo, device=device)
        model = build_model(algo, venv, seed=cfg.seed, inference_only=True)
    finally:
        if env is None:
            venv.close()
    weights = load_torch(str(rl.checkpoint.file(POLICY_WEIGHTS)), device=str(model.device))
    model.policy.load_state_dict(weights, strict=True)
    model.policy.set_training_mode(False)
    return model.policy


def load_for_evaluation(path: Path, device: str = "cpu"):
    """apps.evaluation's loader for kind "rl"."""
    rl = read_rl_checkpoint(path)
    policy = load_policy(rl, device)
    vector_policy = SB3VectorPolicy(policy, rl.layout, rl.normalizer)
    meta = {"kind": KIND, "type": rl.config.algo.name, "step": rl.checkpoint.step,
            "checkpoint_dir": str(rl.checkpoint.path)}
    return LoadedPolicy(env=rl.config.env, make_policy=lambda n_envs: vector_policy, metadata=meta)
