"""Camera frames at the runtime: manifest format 2 (frame layout, max_age_s), format-1 (CHW) bundles still running, and
ChunkRunner holding and counting every frame it must not use (missing, wrong shape / dtype, stale, no capture time)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from deploy.runtime import (
    ChunkRunner,
    Fault,
    Manifest,
    ManifestError,
    ObservationFeature,
    load_manifest,
)

from tests.deploy.bundle_factory import IMAGE_KEY, STATE_KEY, make_manifest, ramp_model, state_obs, write_bundle

H, W = 4, 4
HWC_SHAPE = (H, W, 3)


class FakeClock:
    def __init__(self, now: float = 100.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def hwc_bundle(bundle_dir, max_age_s: float | None = 0.05):
    """The ramp bundle (actions = state + i; the frame is read but contributes 0) with an HWC camera."""
    manifest = make_manifest(with_image=True)
    image = ObservationFeature(key=IMAGE_KEY, shape=HWC_SHAPE, dtype="uint8", units="pixel", layout="HWC",
                               max_age_s=max_age_s)
    manifest = dataclasses.replace(manifest, observation=(manifest.observation[0], image))
    model = ramp_model(2, 5, with_image=True)
    image_input = next(i for i in model.graph.input if i.name == "image_in")
    for dim, size in zip(image_input.type.tensor_type.shape.dim[1:], HWC_SHAPE):
        dim.dim_value = size
    return write_bundle(bundle_dir, model, manifest)


def frame(value: int = 7, shape=HWC_SHAPE, dtype=np.uint8) -> np.ndarray:
    return np.full(shape, value, dtype)


def runner_for(bundle, clock, **kwargs) -> ChunkRunner:
    return ChunkRunner(bundle, sync_deadline_s=None, clock=clock, **kwargs)


# ------------------------------------------------------------------------------------------------------ manifest


def test_format_2_declares_the_frame_layout_and_age_limit(tmp_path):
    bundle = hwc_bundle(tmp_path / "b")
    data = json.loads((bundle / "manifest.json").read_text())
    assert data["format_version"] == 2
    image = next(f for f in data["observation"] if f["key"] == IMAGE_KEY)
    assert image["shape"] == [H, W, 3] and image["layout"] == "HWC" and image["max_age_s"] == 0.05
    m = load_manifest(bundle)
    f = m.feature(IMAGE_KEY)
    assert (f.layout, f.frame_layout, f.max_age_s, f.is_image) == ("HWC", "HWC", 0.05, True)
    assert m.feature(STATE_KEY).frame_layout is None


def _dict(tmp_path) -> dict:
    data = json.loads((hwc_bundle(tmp_path / "b").joinpath("manifest.json")).read_text())
    data.pop("manifest_sha256")
    return data


@pytest.mark.parametrize("edit, match", [
    (lambda d: d.update(format_version=1), r"unknown key\(s\) \['layout', 'max_age_s'\] in observation\[1\]"),
    (lambda d: d["observation"][1].update(layout="BGR"), r"observation\[1\].layout: 'BGR' is not one of"),
    (lambda d: d["observation"][1].update(shape=[3, H, W]), r"observation\[1\].shape: a HWC camera frame has 3"),
    (lambda d: d["observation"][1].update(max_age_s=0), r"observation\[1\].max_age_s: must be > 0"),
    (lambda d: d["observation"][0].update(layout="HWC"), r"observation\[0\].layout: is for camera features"),
])
def test_bad_camera_fields_are_refused_by_name(tmp_path, edit, match):
    data = _dict(tmp_path)
    edit(data)
    with pytest.raises(ManifestError, match=match):
        Manifest.from_dict(data)


# ------------------------------------------------------------------------------------------- format-1 CHW bundles


def test_format_1_channel_first_bundle_loads_and_runs_as_before(tmp_path):
    manifest = dataclasses.replace(make_manifest(with_image=True), format_version=1)
    bundle = write_bundle(tmp_path / "old", ramp_model(2, 5, with_image=True), manifest)
    data = json.loads((bundle / "manifest.json").read_text())
    assert data["format_version"] == 1 and "layout" not in data["observation"][1]
    f = load_manifest(bundle).feature(IMAGE_KEY)
    assert f.shape == (3, 4, 4) and f.layout is None and f.frame_layout == "CHW" and f.max_age_s is None
    runner = runner_for(bundle, FakeClock())
    # No capture times needed (format 1 has no age limit); the channel-first frame is used as it is.
    np.testing.assert_allclose(runner.tick(state_obs(0.5, image=True)), [0.5, 0.5])
    np.testing.assert_allclose(runner.tick(state_obs(0.5, image=True)), [1.5, 1.5])
    assert runner.faults == {}
    # A channel-last frame is not transposed to fit: held and counted.
    obs = {**state_obs(0.5), IMAGE_KEY: np.zeros((4, 4, 3), np.uint8)}
    np.testing.assert_allclose(runner.tick(obs), [1.5, 1.5])
    assert runner.faults == {Fault.BAD_SHAPE: 1}


# ------------------------------------------------------------------------------------------------- ChunkRunner


def test_hwc_frames_with_fresh_capture_times_drive_the_bundle(tmp_path):
    clock = FakeClock()
    runner = runner_for(hwc_bundle(tmp_path / "b"), clock)
    for i in range(3):
        clock.now += 0.02
        action = runner.tick({**state_obs(1.0), IMAGE_KEY: frame()}, frame_times={IMAGE_KEY: clock.now - 0.01})
        np.testing.assert_allclose(action, [1.0 + i, 1.0 + i])
    assert runner.faults == {} and runner.statistics.held_ticks == 0


BAD_FRAMES = [
    # (what the caller passes: observation extras, frame_times; fault kind, words of the detail)
    ({}, {IMAGE_KEY: 0.0}, Fault.MISSING_KEY, "missing key 'observation.images.top'"),
    ({IMAGE_KEY: frame(shape=(3, H, W))}, {IMAGE_KEY: 0.0}, Fault.BAD_SHAPE,
     "frame of shape (3, 4, 4), expected (4, 4, 3) (HWC uint8"),
    ({IMAGE_KEY: frame(shape=(8, 8, 3))}, {IMAGE_KEY: 0.0}, Fault.BAD_SHAPE, "frame of shape (8, 8, 3), expected"),
    ({IMAGE_KEY: frame(dtype=np.float32)}, {IMAGE_KEY: 0.0}, Fault.BAD_DTYPE,
     "frame of dtype float32, expected uint8 (4, 4, 3) (HWC); frames are never converted"),
    ({IMAGE_KEY: frame(dtype=np.uint16)}, {IMAGE_KEY: 0.0}, Fault.BAD_DTYPE, "frame of dtype uint16"),
    ({IMAGE_KEY: frame()}, {IMAGE_KEY: -0.2}, Fault.STALE_FRAME, "frame is 200.0 ms old, the limit is 50 ms"),
    ({IMAGE_KEY: frame()}, None, Fault.MISSING_FRAME_TIME, "no capture time in frame_times"),
    ({IMAGE_KEY: frame()}, {"observation.images.wrist": 0.0}, Fault.MISSING_FRAME_TIME, "no capture time"),
    ({IMAGE_KEY: frame()}, {IMAGE_KEY: float("nan")}, Fault.BAD_FRAME_TIME, "not a finite number"),
    ({IMAGE_KEY: frame()}, {IMAGE_KEY: 1.0}, Fault.BAD_FRAME_TIME, "in the future of the runner's clock"),
]


@pytest.mark.parametrize("extra, times, kind, detail", BAD_FRAMES)
def test_a_frame_the_runner_must_not_use_holds_the_last_command_and_is_counted(tmp_path, extra, times, kind,
                                                                               detail):
    clock = FakeClock()
    runner = runner_for(hwc_bundle(tmp_path / "b"), clock)
    first = runner.tick({**state_obs(1.0), IMAGE_KEY: frame()}, frame_times={IMAGE_KEY: clock.now})
    np.testing.assert_allclose(first, [1.0, 1.0])
    # frame_times are relative to the clock here: 0.0 = captured now.
    times = None if times is None else {k: clock.now + v for k, v in times.items()}
    for _ in range(2):
        held = runner.tick({**state_obs(1.0), **extra}, frame_times=times)
        np.testing.assert_array_equal(held, first)  # the last command again, not the next planned action
    assert runner.faults == {kind: 2}
    assert runner.statistics.held_ticks == 2
    tick, recorded_kind, text = runner.statistics.recent_faults[-1]
    assert (tick, recorded_kind) == (2, kind) and detail in text, text
    # A good frame again: the plan goes on.
    np.testing.assert_allclose(runner.tick({**state_obs(1.0), IMAGE_KEY: frame()},
                                           frame_times={IMAGE_KEY: clock.now}), [4.0, 4.0])


def test_age_limit_override_and_switch_off(tmp_path):
    clock = FakeClock()
    bundle = hwc_bundle(tmp_path / "b")
    old = {IMAGE_KEY: clock.now - 0.2}
    obs = {**state_obs(1.0), IMAGE_KEY: frame()}
    loose = runner_for(bundle, clock, max_frame_age_s=0.5)
    assert loose.tick(obs, frame_times=old) is not None and loose.faults == {}
    unchecked = runner_for(bundle, clock, max_frame_age_s=None)  # simulation: no capture times at all
    assert unchecked.tick(obs) is not None and unchecked.faults == {}
    strict = runner_for(bundle, clock, max_frame_age_s=0.1)
    assert strict.tick(obs, frame_times=old) is None and strict.faults == {Fault.STALE_FRAME: 1}
    # Shape and dtype are checked whatever the age setting.
    assert unchecked.tick({**state_obs(1.0), IMAGE_KEY: frame(shape=(3, H, W))}) is not None
    assert unchecked.faults == {Fault.BAD_SHAPE: 1}
    for bad in (0, -1.0, float("inf"), True, "0.1"):
        with pytest.raises(ValueError, match="max_frame_age_s must be a positive number of seconds"):
            runner_for(bundle, clock, max_frame_age_s=bad)

