"""Imitation checkpoints (kind "imitation"): what the trainer writes into a training.checkpoints directory, how a run
is resumed from one, and the evaluation loader for scripts/eval.py.

Files of a checkpoint (type = policy type), none of them pickled:
    policy/config.json, policy/model.safetensors   policies.factory.save_policy: the policy config with its feature
                                 specs, and the full state dict (normalization buffers and EMA weights included)
    dataset_stats.json           the dataset's meta/stats.json the policy was built with
    trainer_state.json           step, data position, accumulated train time, optimizer param groups and scalars,
                                 lr-scheduler and grad-scaler state, numpy/python RNG states, dataset fingerprint,
                                 wandb run id
    trainer_state.safetensors    optimizer tensors (AdamW moments and step counts) and torch's CPU/CUDA RNG states
    config.yaml, checkpoint.json written by training.checkpoints (resolved training config; metadata and hashes)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors.torch import load_file, save_file

from policies.chunking import ChunkExecutor
from policies.factory import import_recorded_family, load_policy, save_policy
from policies.interface import Policy
from training.checkpoints import Checkpoint, checkpoint_to_resume, read_checkpoint, save_checkpoint
from training.datasets.observations import ObservationMapping
from training.evaluation import LoadedPolicy
from training.imitation.checks import check_env_fits_policy, probe_env
from training.imitation.config import ImitationTrainConfig, config_from_dict, to_dict
from training.imitation.hardware import choose_device
from training.imitation.state import join_optimizer_state

KIND = "imitation"
POLICY_DIR = "policy"
DATASET_STATS = "dataset_stats.json"
TRAINER_STATE = "trainer_state.json"
TRAINER_TENSORS = "trainer_state.safetensors"


def save_imitation_checkpoint(
    run_dir: str | Path,
    cfg: ImitationTrainConfig,
    policy: Policy,
    step: int,
    state: Mapping[str, Any],
    tensors: Mapping[str, torch.Tensor],
    dataset_stats_json: str,
) -> Path:
    """Write one checkpoint atomically (training.checkpoints) and return its directory."""

    def write(tmp: Path) -> None:
        save_policy(policy, tmp / POLICY_DIR)
        (tmp / DATASET_STATS).write_text(dataset_stats_json)
        (tmp / TRAINER_STATE).write_text(json.dumps({**state, "step": int(step)}, indent=1))
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp / TRAINER_TENSORS))

    return save_checkpoint(
        run_dir,
        step=step,
        kind=KIND,
        type=policy.name,
        config=to_dict(cfg),
        write_files=write,
        extra={"env_id": cfg.env.id if cfg.env is not None else None, "dataset_root": str(cfg.dataset.root)},
        keep_last=cfg.checkpoint.keep_last,
    )


@dataclass
class ImitationCheckpoint:
    """A validated imitation checkpoint with its typed config and trainer state."""

    checkpoint: Checkpoint
    config: ImitationTrainConfig
    state: dict[str, Any]

    @property
    def path(self) -> Path:
        return self.checkpoint.path

    @property
    def step(self) -> int:
        return self.checkpoint.step

    @property
    def policy_type(self) -> str:
        return self.checkpoint.type

    def load_policy(self, device: str | torch.device = "cpu") -> Policy:
        return load_policy(self.path / POLICY_DIR, expected_type=self.policy_type, device=device)

    def tensors(self) -> dict[str, torch.Tensor]:
        return load_file(str(self.checkpoint.file(TRAINER_TENSORS)))

    def dataset_stats(self) -> dict[str, Any]:
        return json.loads(self.checkpoint.file(DATASET_STATS).read_text())

    def restore_optimization(self, optimizer: torch.optim.Optimizer, scheduler, scaler=None) -> None:
        """Optimizer, lr scheduler and (when used) grad scaler exactly as they were at the checkpoint."""
        optimizer.load_state_dict(join_optimizer_state(self.tensors(), self.state["optimizer"]))
        scheduler.load_state_dict(self.state["scheduler"])
        if scaler is not None and self.state.get("grad_scaler") is not None:
            scaler.load_state_dict(self.state["grad_scaler"])


def read_imitation_checkpoint(path: str | Path) -> ImitationCheckpoint:
    """Read a checkpoint dir (or a run dir's latest); refuses other kinds and inconsistent files clearly."""
    ckpt = read_checkpoint(path, kind=KIND)
    for name in (f"{POLICY_DIR}/config.json", f"{POLICY_DIR}/model.safetensors", TRAINER_STATE, TRAINER_TENSORS):
        ckpt.file(name)  # listed (and hashed) or FileNotFoundError naming it
    # A policy family from another package registers when the module its saved config records is imported.
    import_recorded_family(json.loads(ckpt.file(f"{POLICY_DIR}/config.json").read_text()))
    cfg = config_from_dict(ckpt.config)
    if cfg.policy.type != ckpt.type:
        raise ValueError(f"{ckpt.path}: checkpoint.json says policy type {ckpt.type!r}, config.yaml says "
                         f"{cfg.policy.type!r}")
    state = json.loads(ckpt.file(TRAINER_STATE).read_text())
    if state.get("step") != ckpt.step:
        raise ValueError(f"{ckpt.path}: {TRAINER_STATE} says step {state.get('step')}, checkpoint.json says {ckpt.step}")
    return ImitationCheckpoint(ckpt, cfg, state)


def latest_of_run(run_dir: str | Path) -> ImitationCheckpoint:
    """The latest checkpoint of a run directory, with a clear error when there is none."""
    return read_imitation_checkpoint(checkpoint_to_resume(run_dir))


def load_for_evaluation(path: Path, device: str = "cpu"):
    """apps.evaluation's loader for kind "imitation": the trained env config and a batched policy runner."""
    ic = read_imitation_checkpoint(path)
    if ic.config.env is None:
        raise ValueError(f"{ic.path} was trained without an env (env=null, from a dataset alone): there is no "
                         "simulator to evaluate it in")
    policy = ic.load_policy(choose_device(device))
    features, _ = probe_env(ic.config.env)
    check_env_fits_policy(policy, ic.config.env, features)
    meta = {"kind": KIND, "type": ic.policy_type, "step": ic.step, "checkpoint_dir": str(ic.path),
            "dataset_root": str(ic.config.dataset.root)}
    mapping = ObservationMapping.from_env_config(ic.config.env)
    return LoadedPolicy(env=ic.config.env, make_policy=lambda n_envs: ChunkExecutor(policy, n_envs,
                                                                                     observation_map=mapping),
                        metadata=meta)
