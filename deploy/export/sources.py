"""The checkpoint being exported: its kind, policy type, torch policy, training config and env config."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from envs.config import EnvConfig
from fileio.digest import sha256_file
from training.checkpoints import META_FILE, read_checkpoint

IMITATION_TYPES = ("act", "diffusion", "mlp")
SB3_TYPE = "sb3"


@dataclass
class ExportSource:
    """A validated checkpoint, loaded on the CPU in eval mode."""

    path: Path  # the checkpoint directory (a run dir resolves to its latest checkpoint)
    kind: str  # "imitation" | "rl"
    policy_type: str  # bundle policy type: "act" | "diffusion" | "mlp" | "sb3"
    step: int
    config: dict[str, Any]  # the resolved training config (config.yaml)
    env: EnvConfig  # the env the policy was trained on
    policy: nn.Module  # imitation: a policies.interface.Policy; rl: training.rl.actor.DeterministicActor
    metadata: dict[str, Any] = field(default_factory=dict)  # algorithm, checkpoint.json hash, ...
    rl: Any = None  # training.rl.checkpoint.RLCheckpoint for RL checkpoints
    stats_path: Path | None = None  # imitation: the dataset statistics the policy was built with
    dataset_root: str | None = None  # imitation: where the training dataset was (it may be gone)


def load_source(path: str | Path) -> ExportSource:
    """Read any exportable checkpoint (file hashes verified) and build its torch policy."""
    if Path(path).exists() and not Path(path).is_dir():
        raise ValueError(f"checkpoint {path} is a file; pass a checkpoint directory or a run directory (its latest "
                         "checkpoint is exported)")
    # The kind-specific reader below hashes every file; reading the kind needs only checkpoint.json.
    ckpt = read_checkpoint(path, verify_files=False)
    meta = {"checkpoint_json_sha256": sha256_file(ckpt.path / META_FILE), "checkpoint_type": ckpt.type}
    if ckpt.kind == "imitation":
        from training.imitation.checkpoint import DATASET_STATS, read_imitation_checkpoint

        ic = read_imitation_checkpoint(ckpt.path)
        if ic.policy_type not in IMITATION_TYPES:
            raise ValueError(f"{ckpt.path}: cannot export imitation policy type {ic.policy_type!r}; "
                             f"exportable: {list(IMITATION_TYPES)}")
        policy = ic.load_policy("cpu").eval()
        return ExportSource(path=ckpt.path, kind="imitation", policy_type=ic.policy_type, step=ic.step,
                            config=dict(ckpt.config), env=ic.config.env, policy=policy, metadata=meta,
                            stats_path=ic.checkpoint.file(DATASET_STATS), dataset_root=str(ic.config.dataset.root) if ic.config.dataset.root else None)
    if ckpt.kind == "rl":
        from training.rl.actor import build_actor
        from training.rl.checkpoint import read_rl_checkpoint

        rl = read_rl_checkpoint(ckpt.path)
        if rl.state.get("action_space") is None:
            raise ValueError(f"{ckpt.path}: the {rl.config.algo.name} policy has a discrete action space; only "
                             "continuous (Box) actions can be exported to a robot bundle")
        actor = build_actor(rl, "cpu")
        meta["algorithm"] = rl.config.algo.name
        return ExportSource(path=ckpt.path, kind="rl", policy_type=SB3_TYPE, step=rl.checkpoint.step,
                            config=dict(ckpt.config), env=rl.config.env, policy=actor, metadata=meta, rl=rl)
    raise ValueError(f"{ckpt.path} is a {ckpt.kind!r} checkpoint; the exporter reads 'imitation' and 'rl' "
                     "checkpoints")
