"""Writing a bundle directory: ONNX files, manifest (via deploy.runtime's writer), optional TorchScript; atomically."""

from __future__ import annotations

import dataclasses
import math
import shutil
from pathlib import Path
from typing import Any, Callable

from deploy.runtime import (
    MANIFEST_FILE,
    ActionSpec,
    DdimSampler,
    Manifest,
    ModelFile,
    ObservationFeature,
    SourceSpec,
    file_sha256,
)

from fileio.atomic import fsync_tree, publish_directory

from .env_info import EnvInfo
from .plan import ExportPlan
from .staging import OutputExistsError, OutputLock, clean_leftovers, tmp_name

TORCHSCRIPT_FILE = "policy.torchscript.pt"


def json_safe(value: Any) -> Any:
    """Plain JSON: non-finite floats (allowed in YAML configs, refused by the manifest writer) become strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def action_spec(info: EnvInfo, plan: ExportPlan, max_velocity: tuple[float, ...] | None) -> ActionSpec:
    """`max_velocity`: one limit per action dimension (deploy.export.limits), or None for none."""
    if max_velocity is not None and len(max_velocity) != info.action_dim:
        raise ValueError(f"max_velocity has {len(max_velocity)} values, the env has {info.action_dim} action "
                         f"dimensions {list(info.action_names)}")
    reads = {f.key for f in plan.features}
    # The runner reads the robot's current command-space position from here; only possible when the bundle reads
    # that observation.
    initial = info.initial_from if info.initial_from is not None and info.initial_from.key in reads else None
    return ActionSpec(names=info.action_names, units=info.action_units, lower=info.action_low, upper=info.action_high,
                      max_velocity=max_velocity, initial_from=initial)


def build_manifest(directory: Path, plan: ExportPlan, action: ActionSpec, source: SourceSpec,
                   observation: tuple[ObservationFeature, ...]) -> Manifest:
    """The manifest for the graphs already written to `directory` (their hashes read from disk); `observation`:
    plan.features with their ranges filled in."""
    main = plan.graphs[0]
    model = ModelFile(file=main.file, sha256=file_sha256(directory / main.file), inputs=dict(plan.model_inputs),
                      output=main.output)
    sampler = plan.sampler
    if isinstance(sampler, DdimSampler) and sampler.condition_model is not None:
        cm = sampler.condition_model
        sampler = dataclasses.replace(sampler, condition_model=dataclasses.replace(
            cm, sha256=file_sha256(directory / cm.file)))
    return Manifest(policy_type=plan.policy_type, control=plan.control, observation=tuple(observation),
                    action=action, model=model, source=source, sampler=sampler)


def make_parent(output: Path) -> None:
    parent = output.parent
    if parent.exists() and not parent.is_dir():
        raise ValueError(f"output {output}: its parent {parent} is a file, not a directory")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as e:
        raise ValueError(f"output {output}: cannot create its directory {parent} ({e})") from e


def prepare_output(output: Path, overwrite: bool) -> None:
    if not output.exists():
        make_parent(output)
        return
    if not output.is_dir():
        raise OutputExistsError(f"output {output} exists and is a file; a bundle is a directory")
    if not overwrite:
        raise OutputExistsError(f"output {output} already exists; pass overwrite=true to replace it")
    if any(output.iterdir()) and not (output / MANIFEST_FILE).is_file():
        raise OutputExistsError(f"output {output} is a non-empty directory without {MANIFEST_FILE}; refusing to "
                                "replace something that is not a bundle")


def write_atomically(output: Path, overwrite: bool, fill: Callable[[Path], Any]) -> Any:
    """Run fill(tmp_dir) in a temp dir beside `output`, then rename it into place (old bundle replaced last).

    Holds the output's lock throughout (a second export of the same output fails at once) and first clears what a
    killed export of it left behind (deploy.export.staging)."""
    output = Path(output)
    make_parent(output)
    with OutputLock(output):
        clean_leftovers(output)
        prepare_output(output, overwrite)
        tmp = tmp_name(output, "tmp")
        tmp.mkdir()
        try:
            result = fill(tmp)
            fsync_tree(tmp)
            publish_directory(tmp, output, trash=tmp_name(output, "old"))
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return result
