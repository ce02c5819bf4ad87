"""training.cli: the strict key walk, one-line errors, sweep expansion, run-dir cleanup; training.devices."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import pytest
from omegaconf import OmegaConf, open_dict

from training import cli
from training.devices import check_device


@dataclass
class Inner:
    rate: float = 1.0
    width: int = 4


@dataclass
class Schema:
    inner: Inner = field(default_factory=Inner)
    maybe: Optional[Inner] = None
    extra: dict[str, Any] = field(default_factory=dict)  # open by design
    steps: int = 1


def composed(**added) -> Any:
    cfg = OmegaConf.structured(Schema)
    with open_dict(cfg):  # what Hydra does for `+key=value`
        for key, value in added.items():
            OmegaConf.update(cfg, key.replace("__", "."), value, force_add=True)
    return cfg


def test_unknown_keys_are_named_with_the_closest_valid_key_at_every_level():
    assert cli.unknown_keys(composed()) == []
    assert cli.unknown_keys(composed(inner__widht=3)) == ["'inner.widht' (did you mean 'inner.width'?)"]
    assert cli.unknown_keys(composed(stepz=3)) == ["'stepz' (did you mean 'steps'?)"]
    # A root-level key that is a close name of a nested field points there.
    assert cli.unknown_keys(composed(width=3)) == ["'width' (did you mean 'inner.width'?)"]
    with pytest.raises(cli.UsageError, match=r"unknown config keys 'inner.x' .*, 'zzz' "):
        cli.check_keys(composed(zzz=1, inner__x=2))


def test_open_dicts_and_unset_optional_nodes_are_not_checked():
    assert cli.unknown_keys(composed(extra__anything=1)) == []
    cfg = composed()
    cfg.maybe = Inner(rate=2.0)
    OmegaConf.update(cfg, "maybe.bogus", 1, force_add=True)
    [problem] = cli.unknown_keys(cfg)  # no close name: the nearest field of the same node is offered
    assert problem.startswith("'maybe.bogus' (did you mean 'maybe.")


def test_missing_required_values_name_the_override():
    cfg = OmegaConf.create({"checkpoint": "???"})
    with pytest.raises(cli.UsageError, match=r"^checkpoint is required and not set: pass checkpoint=<value>$"):
        cli.to_object(cfg)


def test_non_finite_numbers_are_refused_anywhere_in_a_config():
    cli.check_finite(Schema())
    with pytest.raises(ValueError, match=r"^inner.rate=nan is not a finite number$"):
        cli.check_finite(Schema(inner=Inner(rate=float("nan"))))
    with pytest.raises(ValueError, match=r"^maybe.rate=-inf is not a finite number$"):
        cli.check_finite(Schema(maybe=Inner(rate=float("-inf"))))


def test_one_line_folds_hydra_messages_and_keeps_the_cause():
    try:
        try:
            int("abc")
        except ValueError as inner:
            raise RuntimeError("Error merging override steps=abc\n  more detail") from inner
    except RuntimeError as err:
        assert cli.one_line(err) == ("Error merging override steps=abc more detail: invalid literal for int() with "
                                     "base 10: 'abc'")


def test_null_groups_become_the_none_option_only_where_allowed():
    assert cli.rewrite_null_groups(["env=null", "env.id=x", "policy=null", "env=reach"], ["env"]) == \
        ["env=none", "env.id=x", "policy=null", "env=reach"]


def test_multirun_sweeps_are_checked_value_by_value():
    runs = cli._composition_runs(["a=1,2", "b=x", "c=range(3,5)", "d=interval(0,1)"], multirun=True)
    assert runs == [["a=1", "b=x", "c=3"], ["a=2", "b=x", "c=3"], ["a=1", "b=x", "c=4"]]
    assert cli._composition_runs(["a=1,2"], multirun=False) == [["a=1,2"]]


def test_a_run_dir_is_removed_only_while_it_holds_nothing_but_hydra_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    hydra_only = tmp_path / "outputs" / "train" / "x" / "2026"
    (hydra_only / ".hydra").mkdir(parents=True)
    (hydra_only / ".hydra" / "config.yaml").write_text("{}")
    (hydra_only / "train.log").write_text("")
    cli._remove_if_only_hydra(hydra_only)
    assert not (tmp_path / "outputs").exists()  # the parents Hydra made went with it
    worked = tmp_path / "run"
    (worked / ".hydra").mkdir(parents=True)
    (worked / "metrics.jsonl").write_text("{}\n")
    cli._remove_if_only_hydra(worked)
    assert (worked / "metrics.jsonl").is_file()


@pytest.mark.parametrize("name", ["auto", "cpu"])
def test_device_names_that_always_exist(name):
    assert check_device(name) == name


@pytest.mark.parametrize("name, message", [
    ("gpu", "device='gpu' is not a device name"),
    ("cpu:0", "device='cpu:0' is not a device name"),
    ("cuda:x", "device='cuda:x' is not a device name"),
    ("", "device='' is not a device name"),
    (3, "device must be a device name string, got 3"),
])
def test_device_names_that_are_no_device(name, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        check_device(name)


def test_a_cuda_index_beyond_the_machine_is_refused(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert check_device("cuda:1") == "cuda:1"
    beyond = r"device='cuda:7' but this machine has 2 CUDA device\(s\): cuda:0 \.\. cuda:1"
    with pytest.raises(ValueError, match=beyond):
        check_device("cuda:7")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="CUDA is not available on this machine"):
        check_device("cuda")


@pytest.mark.slow
def test_a_run_dir_that_a_live_training_holds_is_refused_before_hydra_writes_into_it(tmp_path):
    """Hydra copies .hydra/ into hydra.run.dir before the job takes its lock: the check comes first, in preflight."""
    from fileio.locks import DirectoryLock
    from training.imitation.config import from_hydra, register_configs

    register_configs()  # the structured schemas train.yaml composes, as scripts/train.py registers them
    run_dir = tmp_path / "run"
    argv = [f"hydra.run.dir={run_dir}", "dataset.root=" + str(tmp_path)]
    with DirectoryLock(run_dir, what="run directory"):
        with pytest.raises(cli.UsageError, match=rf"run directory {run_dir} is locked by pid \d+"):
            cli.preflight("train", from_hydra, argv)
        assert sorted(p.name for p in run_dir.iterdir()) == [".lock"]
    cli.preflight("train", from_hydra, argv)  # released: the same command line passes, and preflight writes nothing
    assert not run_dir.exists()
