"""The constructor-argument checks in envs.validation, and the randomization config built on them."""

import math

import numpy as np
import pytest

from envs.randomization import MAX_ACTION_DELAY_STEPS, DomainRandomizationConfig
from envs.validation import (
    MAX_IMAGE_SIDE,
    check_camera_names,
    check_choice,
    check_image_size,
    check_int,
    check_pair,
    check_real,
    did_you_mean,
)


def test_did_you_mean_names_the_closest_choice_or_nothing():
    assert did_you_mean("stat", ["state", "pixels"]) == " (did you mean 'state'?)"
    assert did_you_mean("zzzzzz", ["state", "pixels"]) == ""
    assert did_you_mean(3, ["state"]) == ""


@pytest.mark.parametrize("value,expected", [(64, (64, 64)), (np.int64(32), (32, 32)), ((48, 64), (48, 64)),
                                            ([np.int32(1), np.uint16(MAX_IMAGE_SIDE)], (1, MAX_IMAGE_SIDE))])
def test_image_size_accepts_integers_and_one_int_means_square(value, expected):
    size = check_image_size("Env", value)
    assert size == expected and all(type(v) is int for v in size)


@pytest.mark.parametrize("value", ["96", (96.5, 96), 96.0, True, (True, 96), (96,), (0, 5), (MAX_IMAGE_SIDE + 1, 5)])
def test_image_size_refuses_everything_else(value):
    with pytest.raises(ValueError, match="image_size"):
        check_image_size("Env", value)


def test_camera_names_plain_string_is_one_camera_and_duplicates_are_refused():
    assert check_camera_names("Env", "top") == ("top",)
    assert check_camera_names("Env", ["top", "wrist"]) == ("top", "wrist")
    with pytest.raises(ValueError, match=r"\['top'\] more than once"):
        check_camera_names("Env", ["top", "wrist", "top"])


def test_numbers_refuse_bools_strings_and_non_finite_values():
    assert check_real("Env", "x", np.float32(0.5), minimum=0.0) == 0.5
    for bad in (True, "1", None, math.nan, math.inf, 10**400, [1.0], 1j):
        with pytest.raises(ValueError, match="Env: x must be"):
            check_real("Env", "x", bad, minimum=0.0)
    with pytest.raises(ValueError, match=">= 0"):
        check_real("Env", "x", -1e-9, minimum=0.0, strict=False)
    assert check_int("Env", "n", np.uint8(3), minimum=1) == 3
    for bad in (True, 3.0, "3", 0):
        with pytest.raises(ValueError, match="Env: n must be"):
            check_int("Env", "n", bad, minimum=1)


def test_choice_and_pair():
    assert check_choice("Env", "mode", None, (None, "a")) is None
    with pytest.raises(ValueError, match="did you mean 'state'"):
        check_choice("Env", "mode", "stat", ("state", "pixels"))
    with pytest.raises(ValueError, match="mode must be one of"):
        check_choice("Env", "mode", np.array(["state"]), ("state",))
    assert check_pair("Env", "p", np.array([1, 2])) == (1, 2)
    with pytest.raises(ValueError, match="pair"):
        check_pair("Env", "p", np.zeros((2, 2)))


def test_randomization_config_normalises_valid_values_and_names_bad_ones():
    cfg = DomainRandomizationConfig.from_any({"friction_scale": [np.float32(0.5), 2], "action_delay_steps": [0, 3]})
    assert cfg.enabled and cfg.friction_scale == (0.5, 2.0) and cfg.action_delay_steps == (0, 3)
    assert type(cfg.friction_scale[0]) is float
    with pytest.raises(ValueError, match=f"action_delay_steps\\[1\\] must be >= 0 and <= {MAX_ACTION_DELAY_STEPS}"):
        DomainRandomizationConfig.from_any({"action_delay_steps": [0, MAX_ACTION_DELAY_STEPS + 1]})
    with pytest.raises(ValueError, match="did you mean 'armature_scale'"):
        DomainRandomizationConfig.from_any({"armature_scal": [1, 1]})
    assert DomainRandomizationConfig.from_any(np.bool_(False)).enabled is False


def test_visual_preset_yaml_mirrors_visual_only():
    """configs/env/randomization/visual.yaml (`+env/randomization=visual`) is DomainRandomizationConfig.visual_only()."""
    from pathlib import Path

    import yaml

    path = Path(__file__).resolve().parents[2] / "configs" / "env" / "randomization" / "visual.yaml"
    preset = DomainRandomizationConfig.from_any(yaml.safe_load(path.read_text()))
    assert preset == DomainRandomizationConfig.visual_only()
