"""The one rule both trainers apply to overrides given with resume: how the run executes may change, nothing else."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from omegaconf import DictConfig, OmegaConf


class ResumeError(ValueError):
    """An override that would change what a resumed run computes, or a group choice that is not the run's own."""


def override_key(override: str) -> str:
    """`+a.b=1` -> `a.b`; Hydra's add/delete prefixes stripped."""
    return override.split("=", 1)[0].lstrip("+~")


def parse_overrides(overrides: Sequence[str]) -> DictConfig:
    """`["device=cpu", "+log_every=2"]` as a config ({"device": "cpu", "log_every": 2}), values typed as YAML."""
    malformed = [o for o in overrides if "=" not in o or o.startswith("~")]
    if malformed:
        raise ResumeError(f"overrides must be key=value (nothing can be deleted from a resumed run), got {malformed}")
    return OmegaConf.from_dotlist([o.lstrip("+") for o in overrides])


def resume_changes(given: Mapping[str, Any] | DictConfig, overrides: Sequence[str], allowed: Sequence[str],
                   groups: Mapping[str, str], run_dir: Any) -> dict[str, Any]:
    """The changes `overrides` make to a resumed run, as {dotted key: value taken from `given`}.

    `given` is the config the overrides built (or the overrides themselves as a dotlist config); `groups` maps a
    config group (`policy`, `algo`) to the run's own choice: choosing it again is harmless, another is refused. Keys
    outside `allowed` are refused all together in one error naming them and the allowed ones.
    """
    given = given if isinstance(given, DictConfig) else OmegaConf.create(dict(given))
    keys = [override_key(o) for o in overrides if not override_key(o).startswith("hydra")]
    chosen = {override_key(o): o.split("=", 1)[1] for o in overrides if "=" in o}
    for group, own in groups.items():
        if group in keys:
            if chosen.get(group) != own:
                raise ResumeError(f"resume={run_dir}: that run trains a {own!r} {group}, but {group}="
                                  f"{chosen.get(group)} was given; resume it without {group}=..., or start a new run")
            keys = [k for k in keys if k != group]
    refused = [k for k in keys if k not in allowed and k != "resume"]
    if refused:
        raise ResumeError(f"resume={run_dir} continues a run with its saved config, so these overrides cannot be "
                          f"applied: {refused}. Allowed with resume: {[k for k in allowed if k != 'resume']}; start a "
                          "new run to change the rest")
    return {key: OmegaConf.select(given, key) for key in keys if key != "resume"}


def apply_changes(saved: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """The saved config (a plain dict) with `changes` applied; the saved `resume` stays unset: a checkpoint's config
    never points at another run."""
    config = OmegaConf.create(dict(saved))
    for key, value in changes.items():
        OmegaConf.update(config, key, value, merge=False)
    return OmegaConf.to_container(config)  # type: ignore[return-value]
