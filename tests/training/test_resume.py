"""The resume rule shared by both trainers: execution-only overrides are applied, any other is refused by name."""

import pytest

from training.resume import ResumeError, apply_changes, parse_overrides, resume_changes

ALLOWED = ("resume", "device", "progress_bar", "logger.mode")
SAVED = {"steps": 100, "device": "auto", "progress_bar": True, "logger": {"mode": "offline", "project": "p"},
         "policy": {"type": "act", "dim_model": 64}, "resume": None}


def test_allowed_overrides_change_only_their_keys():
    overrides = ["device=cpu", "+logger.mode=disabled", "resume=/runs/a", "hydra.run.dir=/tmp/x"]
    changes = resume_changes(parse_overrides(overrides), overrides, ALLOWED, {"policy": "act"}, "/runs/a")
    assert changes == {"device": "cpu", "logger.mode": "disabled"}  # resume and hydra.* are not config changes
    resumed = apply_changes(SAVED, changes)
    assert resumed == {**SAVED, "device": "cpu", "logger": {"mode": "disabled", "project": "p"}}
    assert SAVED["device"] == "auto"  # the saved config itself is left alone


def test_values_come_from_the_given_config():
    given = {**SAVED, "device": "cuda:1", "steps": 5}
    assert resume_changes(given, ["device=cuda:1"], ALLOWED, {}, "/runs/a") == {"device": "cuda:1"}


def test_other_overrides_are_refused_together_naming_the_allowed_ones():
    overrides = ["steps=5", "device=cpu", "policy.dim_model=32"]
    with pytest.raises(ResumeError, match=r"resume=/runs/a .*cannot be applied: \['steps', 'policy.dim_model'\]\. "
                                          r"Allowed with resume: \['device', 'progress_bar', 'logger.mode'\]"):
        resume_changes(parse_overrides(overrides), overrides, ALLOWED, {"policy": "act"}, "/runs/a")


def test_a_group_may_name_the_runs_own_choice_only():
    assert resume_changes(parse_overrides(["policy=act"]), ["policy=act"], ALLOWED, {"policy": "act"}, "r") == {}
    with pytest.raises(ResumeError, match="that run trains a 'act' policy, but policy=mlp was given"):
        resume_changes(parse_overrides(["policy=mlp"]), ["policy=mlp"], ALLOWED, {"policy": "act"}, "r")


def test_malformed_overrides_are_refused():
    with pytest.raises(ResumeError, match=r"must be key=value .*\['device', '~logger.mode'\]"):
        parse_overrides(["device", "~logger.mode", "progress_bar=false"])
