"""The checkpoint being exported: its kind, policy type, torch policy, training config and env config."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import gymnasium as gym
import numpy as np
from torch import nn

from envs.config import EnvConfig
from fileio.digest import sha256_file
from policies.sb3.actor import DeterministicActor
from training.checkpoints import META_FILE, read_checkpoint
from training.datasets.observations import STATE_KEYS
from training.imitation.checkpoint import DATASET_STATS, read_imitation_checkpoint
from training.rl.checkpoint import RLCheckpoint, load_policy, read_rl_checkpoint
from training.rl.policy import SB3VectorPolicy

SB3_TYPE = "sb3"


@dataclass
class ExportSource:
    """A validated checkpoint, loaded on the CPU in eval mode."""

    path: Path  # the checkpoint directory (a run dir resolves to its latest checkpoint)
    kind: str  # "imitation" | "rl"
    policy_type: str  # the policy family (policies.registry) that describes the export: "act", "sb3", ...
    step: int
    config: dict[str, Any]  # the resolved training config (config.yaml)
    env: EnvConfig  # the env the policy was trained on
    policy: nn.Module  # imitation: a policies.interface.Policy; rl: a policies.sb3.actor.DeterministicActor
    metadata: dict[str, Any] = field(default_factory=dict)  # algorithm, checkpoint.json hash, ...
    rl: Any = None  # training.rl.checkpoint.RLCheckpoint for RL checkpoints
    stats_path: Path | None = None  # imitation: the dataset statistics the policy was built with
    dataset_root: str | None = None  # imitation: where the training dataset was (it may be gone)
    # rl: SB3's own predict() on the checkpoint, the parity reference instead of the exported module itself
    reference: Callable[..., np.ndarray] | None = None
    sim: gym.Env | None = None  # one instance of the env, when load_source was asked for it (the caller closes it)


def load_source(path: str | Path, sim: Callable[[EnvConfig], gym.Env] | None = None) -> ExportSource:
    """Read any exportable checkpoint (file hashes verified) and build its torch policy.

    With `sim` (an env constructor), the source also holds one instance of the checkpoint's env in `.sim`, which the
    RL policy is rebuilt on as well: the caller closes it."""
    if Path(path).exists() and not Path(path).is_dir():
        raise ValueError(f"checkpoint {path} is a file; pass a checkpoint directory or a run directory (its latest "
                         "checkpoint is exported)")
    # The kind-specific reader below hashes every file; reading the kind needs only checkpoint.json.
    ckpt = read_checkpoint(path, verify_files=False)
    meta = {"checkpoint_json_sha256": sha256_file(ckpt.path / META_FILE), "checkpoint_type": ckpt.type}
    if ckpt.kind == "imitation":
        ic = read_imitation_checkpoint(ckpt.path)
        policy = ic.load_policy("cpu").eval()
        root = ic.config.dataset.root
        env = ic.config.env
        return ExportSource(path=ckpt.path, kind="imitation", policy_type=ic.policy_type, step=ic.step,
                            config=dict(ckpt.config), env=env, policy=policy, metadata=meta,
                            stats_path=ic.checkpoint.file(DATASET_STATS), dataset_root=str(root) if root else None,
                            sim=sim(env) if sim is not None and env is not None else None)
    if ckpt.kind == "rl":
        rl = read_rl_checkpoint(ckpt.path)
        env = sim(rl.config.env) if sim is not None else None
        try:
            actor, reference = sb3_actor(rl, env=env)
        except BaseException:
            if env is not None:
                env.close()
            raise
        meta["algorithm"] = rl.config.algo.name
        return ExportSource(path=ckpt.path, kind="rl", policy_type=SB3_TYPE, step=rl.checkpoint.step,
                            config=dict(ckpt.config), env=rl.config.env, policy=actor, metadata=meta, rl=rl,
                            reference=reference, sim=env)
    raise ValueError(f"{ckpt.path} is a {ckpt.kind!r} checkpoint; the exporter reads 'imitation' and 'rl' "
                     "checkpoints")


def sb3_actor(rl: RLCheckpoint, device: str = "cpu",
              env: gym.Env | None = None) -> tuple[DeterministicActor, Callable[..., np.ndarray]]:
    """The exportable actor of an RL checkpoint (eval mode) and SB3's own predict() on the same loaded policy, as a
    reference on bundle inputs (observation key -> (1, size) array) -> (1, A)."""
    bounds = rl.state.get("action_space")
    if bounds is None:
        raise ValueError(f"{rl.checkpoint.path}: the {rl.config.algo.name} policy has a discrete action space; only "
                         "continuous (Box) actions can be exported to a robot bundle")
    layout = rl.layout
    unknown = [k for k in layout.keys if k not in STATE_KEYS]
    if unknown:
        raise ValueError(f"{rl.checkpoint.path}: observation entries {unknown} have no dataset key; exportable "
                         f"entries are {sorted(STATE_KEYS)}")
    keys = [STATE_KEYS[k] for k in layout.keys]
    policy = load_policy(rl, device, env=env)  # built once: the actor and the reference share it
    actor = DeterministicActor(policy, rl.normalization, np.asarray(bounds["low"]), np.asarray(bounds["high"]),
                               layout, keys, rl.config.algo.name).to(device).eval()
    sb3 = SB3VectorPolicy(policy, layout, rl.normalizer)
    env_keys = {v: k for k, v in STATE_KEYS.items()}

    def reference(inputs, noise=None) -> np.ndarray:
        obs = {env_keys[k]: np.asarray(inputs[k], np.float32) for k in keys}
        return np.asarray(sb3(obs), np.float32).reshape(1, -1)

    return actor, reference
