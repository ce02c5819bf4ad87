"""Fuzz: the exporter and the bundles it writes against bad inputs. Every case must end in a clear error naming what
was wrong (ValueError, or FileNotFoundError for a missing file); none may write a bundle or load a corrupted one.

Kinds (one test id per case):
  checkpoint files  every file of an imitation (MLP) and an RL (PPO) checkpoint x byte flips / truncations / deletion
  bundle files      every file of an MLP and a DDIM Diffusion (encoder + denoiser) bundle x the same corruptions,
                    refused at load by the runtime (ChunkRunner)
  max_velocity      bad values of the export option
  output / source   output inside the checkpoint, existing output, output that is a file, missing checkpoints
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from deploy.export import ExportConfig, export_checkpoint
from deploy.runtime import ChunkRunner, load_manifest

from tests.deploy.export_factory import imitation_checkpoint, rl_checkpoint

pytestmark = pytest.mark.slow  # trains and exports checkpoints to corrupt

FAST = dict(optimize=False, parity_samples=1)
IMITATION_FILES = ("checkpoint.json", "config.yaml", "policy/config.json", "policy/model.safetensors",
                   "dataset_stats.json", "trainer_state.json", "trainer_state.safetensors")
RL_FILES = ("checkpoint.json", "config.yaml", "model.zip", "normalization.json", "policy.safetensors",
            "trainer_state.json")
MLP_BUNDLE_FILES = ("manifest.json", "policy.onnx")
DIFFUSION_BUNDLE_FILES = ("manifest.json", "policy.onnx", "encoder.onnx")
CORRUPTIONS = ("flip_first", "flip_middle", "flip_last", "flip_8_spread", "truncate_empty", "truncate_half",
               "truncate_last_2_bytes", "delete")


def corrupt(path: Path, how: str) -> None:
    data = bytearray(path.read_bytes())
    n = len(data)
    if how == "delete":
        path.unlink()
        return
    if how.startswith("truncate"):
        # Two bytes, not one: manifest.json ends in a newline, and dropping only that changes nothing.
        keep = {"truncate_empty": 0, "truncate_half": n // 2, "truncate_last_2_bytes": n - 2}[how]
        path.write_bytes(bytes(data[:keep]))
        return
    positions = {"flip_first": [0], "flip_middle": [n // 2], "flip_last": [n - 1],
                 "flip_8_spread": [int(i) for i in np.linspace(0, n - 1, 8)]}[how]
    for i in positions:
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz_export")
    return {"imitation": imitation_checkpoint(root / "imitation", "mlp"), "rl": rl_checkpoint(root / "rl", "ppo"),
            "root": root}


@pytest.fixture(scope="module")
def bundles(checkpoints):
    root = checkpoints["root"]
    diffusion = imitation_checkpoint(root / "diffusion", "diffusion")
    export_checkpoint(ExportConfig(checkpoint=str(checkpoints["imitation"]), output=str(root / "mlp_bundle"), **FAST))
    export_checkpoint(ExportConfig(checkpoint=str(diffusion), output=str(root / "diffusion_bundle"), **FAST))
    return {"mlp": root / "mlp_bundle", "diffusion": root / "diffusion_bundle"}


def test_the_fuzzed_file_lists_are_complete(checkpoints, bundles):
    for kind, files in (("imitation", IMITATION_FILES), ("rl", RL_FILES)):
        listed = json.loads((checkpoints[kind] / "checkpoint.json").read_text())["files"]
        assert sorted(files) == sorted(["checkpoint.json", *listed]), kind
    for kind, files in (("mlp", MLP_BUNDLE_FILES), ("diffusion", DIFFUSION_BUNDLE_FILES)):
        present = sorted(p.name for p in bundles[kind].iterdir())
        assert sorted(files) == present, kind


@pytest.mark.parametrize("how", CORRUPTIONS)
@pytest.mark.parametrize("kind, name", [("imitation", n) for n in IMITATION_FILES] + [("rl", n) for n in RL_FILES])
def test_corrupt_checkpoint_is_refused_naming_the_file(checkpoints, tmp_path, kind, name, how):
    ckpt = copy_tree(checkpoints[kind], tmp_path / "ckpt")
    corrupt(ckpt / name, how)
    out = tmp_path / "bundle"
    with pytest.raises((ValueError, FileNotFoundError)) as error:
        export_checkpoint(ExportConfig(checkpoint=str(ckpt), output=str(out), **FAST))
    assert Path(name).name in str(error.value), f"the error does not name {name}: {error.value}"
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".bundle.tmp")]


@pytest.mark.parametrize("how", CORRUPTIONS)
@pytest.mark.parametrize("kind, name", [("mlp", n) for n in MLP_BUNDLE_FILES]
                         + [("diffusion", n) for n in DIFFUSION_BUNDLE_FILES])
def test_corrupt_bundle_is_refused_at_load_naming_the_file(bundles, tmp_path, kind, name, how):
    bundle = copy_tree(bundles[kind], tmp_path / "bundle")
    corrupt(bundle / name, how)
    with pytest.raises((ValueError, FileNotFoundError)) as error:
        ChunkRunner(bundle)
    assert name in str(error.value), f"the error does not name {name}: {error.value}"


BAD_VELOCITIES = {
    "zero": [0.0], "negative": [-1.0], "nan": [float("nan")], "inf": [float("inf")], "minus_inf": [float("-inf")],
    "empty": [], "string": "fast", "string_entry": ["fast"], "bool_entry": [True], "none_entry": [None],
    "nested": [[1.0]], "wrong_length": [1.0, 2.0], "too_many": [1.0] * 7, "one_bad_of_six": [1.0] * 5 + [0.0],
    "scalar": 3.0, "dict": {"a": 1.0},
}


@pytest.mark.parametrize("case", sorted(BAD_VELOCITIES))
def test_bad_max_velocity_is_refused_before_anything_is_written(checkpoints, tmp_path, case):
    with pytest.raises(ValueError, match="max_velocity") as error:
        export_checkpoint(ExportConfig(checkpoint=str(checkpoints["imitation"]), output=str(tmp_path / "bundle"),
                                       max_velocity=BAD_VELOCITIES[case], **FAST))
    assert "\n" not in str(error.value)
    assert not (tmp_path / "bundle").exists()


def _output_case(case: str, ckpt: Path, tmp_path: Path) -> tuple[Path, Path, dict]:
    """(checkpoint, output, extra options) of one bad-location case."""
    work = copy_tree(ckpt.parent.parent, tmp_path / "run")  # the run dir, so a "checkpoint inside" stays readable
    ckpt = work / ckpt.relative_to(ckpt.parent.parent)
    existing = tmp_path / "existing"
    if case == "output_is_the_checkpoint":
        return ckpt, ckpt, {"overwrite": True}
    if case == "output_inside_the_checkpoint":
        return ckpt, ckpt / "bundle", {}
    if case == "output_inside_the_checkpoint_policy_dir":
        return ckpt, ckpt / "policy" / "bundle", {}
    if case == "existing_output_without_overwrite":
        existing.mkdir()
        (existing / "manifest.json").write_text("{}")
        return ckpt, existing, {}
    if case == "existing_non_bundle_with_overwrite":
        existing.mkdir()
        (existing / "notes.txt").write_text("mine")
        return ckpt, existing, {"overwrite": True}
    if case == "output_is_a_file":
        existing.write_text("a file")
        return ckpt, existing, {"overwrite": True}
    if case == "output_parent_is_a_file":
        existing.write_text("a file")
        return ckpt, existing / "bundle", {}
    if case == "missing_checkpoint":
        return tmp_path / "nowhere", tmp_path / "bundle", {}
    if case == "checkpoint_is_a_file":
        existing.write_text("a file")
        return existing, tmp_path / "bundle", {}
    if case == "empty_checkpoint_dir":
        existing.mkdir()
        return existing, tmp_path / "bundle", {}
    if case == "empty_output":
        return ckpt, Path(""), {}
    if case == "checkpoint_trained_without_env":
        return imitation_checkpoint(tmp_path / "no_env", "mlp", no_env=True), tmp_path / "bundle", {}
    raise AssertionError(case)


OUTPUT_CASES = ("output_is_the_checkpoint", "output_inside_the_checkpoint", "output_inside_the_checkpoint_policy_dir",
                "existing_output_without_overwrite", "existing_non_bundle_with_overwrite", "output_is_a_file",
                "output_parent_is_a_file", "missing_checkpoint", "checkpoint_is_a_file", "empty_checkpoint_dir",
                "empty_output", "checkpoint_trained_without_env")


@pytest.mark.parametrize("case", OUTPUT_CASES)
def test_bad_locations_are_refused_and_nothing_is_touched(checkpoints, tmp_path, case):
    ckpt, out, options = _output_case(case, checkpoints["imitation"], tmp_path)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    with pytest.raises((ValueError, FileNotFoundError)) as error:
        export_checkpoint(ExportConfig(checkpoint=str(ckpt), output=str(out), **{**FAST, **options}))
    message = str(error.value)
    named = "output" if case == "empty_output" else str(out) if case.startswith(("output", "existing")) else \
        str(ckpt)
    assert named in message, f"the error does not name {named}: {message}"
    after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before  # nothing written, nothing removed (the checkpoint included)


def test_a_clean_bundle_still_loads(bundles):
    # The fuzzed corruptions are refused, not everything: the untouched bundles run.
    for bundle in bundles.values():
        assert load_manifest(bundle).action.max_velocity is not None
        ChunkRunner(bundle).close()
