"""Policies by family name (policies.registry): construction from dataset features/stats, save and load."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from fileio.atomic import write_bytes_atomic
from policies import registry
from policies.config import PolicyConfig
from policies.features import policy_features_from_dataset
from policies.interface import Policy

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT_VERSION = 1


def available_policies() -> list[str]:
    return sorted(registry.config_classes())


def policy_config_classes() -> dict[str, type[PolicyConfig]]:
    """name -> config dataclass, for registering Hydra structured configs in the ConfigStore."""
    return registry.config_classes()


def get_policy_class(name: str) -> type[Policy]:
    return registry.policy_class(name)


def make_policy_config(name: str, **overrides: Any) -> PolicyConfig:
    return registry.config_class(name).from_dict({**overrides, "type": name})


def config_from_dict(data: Mapping[str, Any]) -> PolicyConfig:
    """Config from a plain mapping with a 'type' key (also accepts an OmegaConf DictConfig)."""
    try:
        from omegaconf import DictConfig, OmegaConf

        if isinstance(data, DictConfig):
            data = OmegaConf.to_container(data, resolve=True)
    except ImportError:  # omegaconf is a dependency, but the policies do not need it
        pass
    if not isinstance(data, Mapping):
        raise ValueError(f"a policy config must be a mapping, got {type(data).__name__}")
    if "type" not in data:
        raise ValueError(f"policy config has no 'type' field (one of {available_policies()}); keys: {sorted(data)}")
    return registry.config_class(str(data["type"])).from_dict(data)


def config_to_dict(config: PolicyConfig) -> dict[str, Any]:
    return dataclasses.asdict(config)


def _as_config(config_or_name: PolicyConfig | str | Mapping[str, Any]) -> PolicyConfig:
    if isinstance(config_or_name, str):
        return make_policy_config(config_or_name)
    if isinstance(config_or_name, PolicyConfig):
        return dataclasses.replace(config_or_name)  # a copy: make_policy fills in features
    return config_from_dict(config_or_name)


def _match_features(config: PolicyConfig, dataset_features: Mapping[str, Any]) -> None:
    """Fill empty feature specs from the dataset; check explicit ones against it."""
    inputs, outputs = policy_features_from_dataset(dataset_features)
    name = type(config).__name__
    for field_name, available in (("input_features", inputs), ("output_features", outputs)):
        wanted = getattr(config, field_name)
        if not wanted:
            setattr(config, field_name, {k: list(v) for k, v in available.items()})
            continue
        for key, shape in wanted.items():
            if key not in available:
                raise ValueError(
                    f"{name}.{field_name} asks for {key!r}, which the dataset does not have; dataset features: "
                    f"{sorted(available)}"
                )
            if list(shape) != list(available[key]):
                raise ValueError(
                    f"{name}.{field_name}[{key!r}] has shape {list(shape)} but the dataset's is {list(available[key])}"
                )


def make_policy(
    config_or_name: PolicyConfig | str | Mapping[str, Any],
    features: Mapping[str, Any] | None = None,
    stats: Mapping[str, Any] | None = None,
) -> Policy:
    """Build a policy for a dataset.

    features: the dataset's feature table ({key: shape} or LeRobot info.json entries); fills or checks the config's
    input/output features. stats: meta/stats.json content; None only when a state dict with the normalization
    buffers will be loaded next (see load_policy).
    """
    config = _as_config(config_or_name)
    if features is not None:
        _match_features(config, features)
    config.validate()
    policy = get_policy_class(config.type)(config, stats)
    if stats is not None:
        policy.load_pretrained_weights()
    return policy


def policy_from_state_dict(config: PolicyConfig | Mapping[str, Any], state_dict: Mapping[str, torch.Tensor]) -> Policy:
    """Rebuild a trained policy from its config and a state dict (normalization buffers included)."""
    policy = make_policy(config)
    missing, unexpected = policy.load_state_dict(dict(state_dict), strict=False)
    if missing or unexpected:
        raise ValueError(
            f"state dict does not fit the {policy.name} policy built from its config: missing {sorted(missing)[:8]}, "
            f"unexpected {sorted(unexpected)[:8]}"
        )
    policy.input_normalizer.check_ready()
    policy.action_normalizer.check_ready()
    return policy


def import_recorded_family(meta: Mapping[str, Any]) -> None:
    """Import the family module a saved policy config records, unless its type is registered already (policies
    saved before the record carry no module: they are built-in families)."""
    module = meta.get("module")
    if isinstance(module, str) and meta.get("type") not in registry.config_classes():
        registry.import_family(module)


def policy_state_dict(policy: Policy) -> dict[str, torch.Tensor]:
    """CPU, contiguous copy of the state dict, ready for safetensors."""
    return {k: v.detach().to("cpu").contiguous() for k, v in policy.state_dict().items()}


def save_policy(policy: Policy, directory: str | os.PathLike) -> Path:
    """Write config.json + model.safetensors into `directory` (each file atomically); returns the directory."""
    from safetensors.torch import save

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(out / WEIGHTS_FILE, save(policy_state_dict(policy), metadata={"policy_type": policy.name}))
    # "module": where the family registers, so a fresh process can import a family from outside `policies`.
    meta = {"format_version": FORMAT_VERSION, "type": policy.name, "module": type(policy.config).__module__,
            "config": config_to_dict(policy.config)}
    write_bytes_atomic(out / CONFIG_FILE, (json.dumps(meta, indent=2) + "\n").encode())
    return out


def load_policy(
    directory: str | os.PathLike, expected_type: str | None = None, device: str | torch.device = "cpu"
) -> Policy:
    """Load a policy written by save_policy; no pickle is involved. `expected_type` refuses another policy type."""
    from safetensors.torch import load_file

    src = Path(directory)
    config_path, weights_path = src / CONFIG_FILE, src / WEIGHTS_FILE
    for path in (config_path, weights_path):
        if not path.is_file():
            raise FileNotFoundError(f"policy directory {src} has no {path.name}")
    try:
        meta = json.loads(config_path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{config_path} is not valid JSON: {err}") from err
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{config_path}: unsupported format_version {meta.get('format_version')!r}, expected {FORMAT_VERSION}"
        )
    kind = meta.get("type")
    import_recorded_family(meta)
    if expected_type is not None and kind != expected_type:
        raise ValueError(f"{src} holds a {kind!r} policy, expected {expected_type!r}")
    config = dict(meta.get("config", {}))
    if config.get("type", kind) != kind:
        raise ValueError(f"{config_path}: type {kind!r} disagrees with config.type {config.get('type')!r}")
    config["type"] = kind
    policy = policy_from_state_dict(config, load_file(str(weights_path)))
    return policy.to(device)


__all__ = [
    "available_policies",
    "config_from_dict",
    "config_to_dict",
    "get_policy_class",
    "import_recorded_family",
    "load_policy",
    "make_policy",
    "make_policy_config",
    "policy_config_classes",
    "policy_from_state_dict",
    "policy_state_dict",
    "save_policy",
]
