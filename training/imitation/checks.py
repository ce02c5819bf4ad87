"""Checks made before any training step: the dataset exists and fits the policy and the evaluation environment."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import gymnasium as gym

from envs.config import EnvConfig, make_env
from policies.interface import Policy
from training.datasets import DatasetMeta
from training.datasets.format import IMAGE_PREFIX, INFO_PATH, DatasetFormatError
from training.datasets.observations import ObservationMapping, ObservationMappingError, action_shape, control_rate


class ImitationSetupError(ValueError):
    """The run cannot start: bad dataset, dataset/policy/env mismatch, bad resume or init checkpoint."""


def open_dataset(root: str | Path) -> DatasetMeta:
    """DatasetMeta of a training dataset, with one clear message for a missing or unusable directory."""
    path = Path(root).expanduser()
    if not path.exists():
        raise ImitationSetupError(
            f"dataset.root={str(root)!r} does not exist; record one with scripts/collect.py (output_dir=...) or "
            "point dataset.root at a LeRobot v3 dataset directory"
        )
    if not (path / INFO_PATH).is_file():
        raise ImitationSetupError(f"dataset.root={str(root)!r} is not a dataset: it has no {INFO_PATH}")
    try:
        meta = DatasetMeta(path)
    except (DatasetFormatError, FileNotFoundError, ValueError) as err:
        raise ImitationSetupError(f"dataset.root={str(root)!r} cannot be read: {err}") from err
    if meta.total_episodes == 0:
        raise ImitationSetupError(f"dataset {path} holds no episodes")
    if meta.stats is None:
        raise ImitationSetupError(f"dataset {path} has no meta/stats.json; the policies normalize with those statistics")
    return meta


def env_features(env: gym.Env, mapping: ObservationMapping | None = None) -> dict[str, tuple[int, ...]]:
    """{dataset key: per-step shape} an environment observes (cameras channel-first), plus "action"; through the
    shared observation mapping (training.datasets.observations), so the trainer sees what the recorder recorded."""
    mapping = mapping or ObservationMapping()
    env_id = env.spec.id if env.spec is not None else "the env"
    try:
        out = {k: f.shape for k, f in mapping.features(env.observation_space).items()}
    except ObservationMappingError as err:
        raise ImitationSetupError(f"env {env_id}: {err}") from None
    try:
        out["action"] = action_shape(env.action_space, f"env {env_id}")
    except ObservationMappingError as err:
        raise ImitationSetupError(str(err)) from None
    return out


def probe_env(env_cfg: EnvConfig) -> tuple[dict[str, tuple[int, ...]], float | None]:
    """Features and control rate of the env a config builds (built once, never stepped)."""
    try:
        env = make_env(env_cfg)
    except (ValueError, TypeError) as err:
        raise ImitationSetupError(f"cannot build env {env_cfg.id!r} from the env config: {err}") from err
    try:
        return env_features(env, ObservationMapping.from_env_config(env_cfg)), control_rate(env, env_cfg)
    finally:
        env.close()


def check_env_fits_policy(policy: Policy, env_cfg: EnvConfig, features: Mapping[str, tuple[int, ...]]) -> None:
    """The evaluation env must observe every policy input with the trained shape and take its action shape."""
    problems = []
    for key, spec in policy.input_specs.items():
        if key not in features:
            problems.append(f"the policy reads {key!r}, which env {env_cfg.id} (obs_mode={env_cfg.obs_mode!r}, "
                            f"cameras={env_cfg.cameras}) does not observe")
        elif tuple(features[key]) != tuple(spec.shape):
            # Only a camera's shape depends on image_size; a state vector of another length is another robot/task.
            hint = " (image_size / cameras differ?)" if key.startswith(IMAGE_PREFIX) else ""
            problems.append(f"{key!r} has shape {tuple(spec.shape)} for the policy but {tuple(features[key])} in the env"
                            + hint)
    if tuple(features["action"]) != tuple(policy.action_spec.shape):
        problems.append(f"the policy outputs actions of shape {tuple(policy.action_spec.shape)}, env {env_cfg.id} "
                        f"takes {tuple(features['action'])}")
    if problems:
        raise ImitationSetupError(
            "policy and environment do not match: " + "; ".join(problems)
            + ". Set env.obs_mode / env.cameras / env.image_size to what the dataset was recorded with, or choose "
            "the policy's inputs with policy.input_features"
        )


def check_dataset_fits_env(meta: DatasetMeta, env_cfg: EnvConfig, control_hz: float | None) -> None:
    """A dataset recorded on another task or at another control rate would train a policy for the wrong env."""
    recorded: Mapping[str, Any] = meta.collection or {}
    env_id = recorded.get("env_id")
    if env_id is not None and env_id != env_cfg.id:
        raise ImitationSetupError(
            f"dataset {meta.root} was recorded on {env_id!r} but env.id is {env_cfg.id!r}; pick the matching env=... "
            "or dataset.root=..."
        )
    if control_hz is not None and abs(float(control_hz) - meta.fps) > 1e-6:
        raise ImitationSetupError(
            f"dataset {meta.root} runs at {meta.fps} fps but env {env_cfg.id} is controlled at {control_hz:g} Hz; "
            "set env.control_hz to the dataset's rate"
        )
