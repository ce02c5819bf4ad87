"""The safety defaults an export writes into the manifest: a per-joint velocity limit from the training data (dataset
statistics, the dataset itself for older checkpoints, or the RL policy's own rollouts), observation ranges (joint
limits plus a margin, the data's range widened for the rest), and the user's override."""

from __future__ import annotations

import json

import numpy as np
import pytest

from deploy.export import ExportConfig, export_checkpoint
from deploy.export.limits import (
    JOINT_MARGIN_FRACTION,
    MIN_JOINT_MARGIN,
    MIN_OTHER_MARGIN,
    MIN_VELOCITY_FRACTION,
    OTHER_MARGIN_FRACTION,
    VELOCITY_SCALE,
)
from deploy.runtime import ChunkRunner, load_manifest
from training.datasets.stats import MAX_ABS_DELTA

from tests.deploy.export_factory import REACH, _random_walk_episodes, dataset_stats, imitation_checkpoint, \
    reach_features

pytestmark = pytest.mark.slow  # each test trains and exports a checkpoint

STATE, ENV_STATE = "observation.state", "observation.environment_state"
FAST = dict(optimize=False, parity_samples=1)
HZ = 50.0
LOW = np.array([-1.9199, -1.7453, -1.69, -1.6581, -2.7438, -0.1745])  # Reach's joint limits (its action box)
HIGH = np.array([1.9199, 1.7453, 1.69, 1.6581, 2.8412, 1.7453])


def export(tmp_path, ckpt, name="bundle", **options):
    return export_checkpoint(ExportConfig(checkpoint=str(ckpt), output=str(tmp_path / name), **{**FAST, **options}))


def test_defaults_come_from_the_dataset_statistics(tmp_path):
    stats = dataset_stats(reach_features(), seed=3)
    # A joint the demonstrations never moved (wrist_roll) and one whose measured speed beat its command speed.
    stats["action"][MAX_ABS_DELTA][4] = 0.0
    stats[STATE][MAX_ABS_DELTA][4] = 0.0
    stats[STATE][MAX_ABS_DELTA][0] = 10 * stats["action"][MAX_ABS_DELTA][0]
    ckpt = imitation_checkpoint(tmp_path / "run", "mlp", stats=stats)
    result = export(tmp_path, ckpt)
    m = result.manifest
    assert "(default: 1.5 x the fastest joint speed)" in result.summary()

    command = np.asarray(stats["action"][MAX_ABS_DELTA]) * HZ
    measured = np.asarray(stats[STATE][MAX_ABS_DELTA]) * HZ
    want = VELOCITY_SCALE * np.maximum(command, measured)
    want[4] = MIN_VELOCITY_FRACTION * (HIGH[4] - LOW[4])  # never moved: the slow floor, not zero
    np.testing.assert_allclose(m.action.max_velocity, want, rtol=1e-6)
    assert m.action.max_velocity[0] == pytest.approx(VELOCITY_SCALE * measured[0])

    state = m.feature(STATE)
    margin = np.maximum(JOINT_MARGIN_FRACTION * (HIGH - LOW), MIN_JOINT_MARGIN["rad"])
    np.testing.assert_allclose(state.low, np.minimum(LOW - margin, stats[STATE]["min"]), rtol=1e-5)
    np.testing.assert_allclose(state.high, np.maximum(HIGH + margin, stats[STATE]["max"]), rtol=1e-5)
    env_state = m.feature(ENV_STATE)
    lo, hi = np.asarray(stats[ENV_STATE]["min"]), np.asarray(stats[ENV_STATE]["max"])
    big = np.maximum(np.abs(lo), np.abs(hi))
    pad = np.maximum(OTHER_MARGIN_FRACTION * np.maximum(hi - lo, big), MIN_OTHER_MARGIN)
    np.testing.assert_allclose(env_state.low, np.minimum(lo, -big) - pad, rtol=1e-5)
    np.testing.assert_allclose(env_state.high, np.maximum(hi, big) + pad, rtol=1e-5)

    safety = m.source.extra["safety"]
    assert safety["max_velocity"]["from"].startswith("default: 1.5 x") and "dataset_stats.json" in \
        safety["max_velocity"]["from"]
    assert safety["motion_profile"]["max_speed"]["action"] == pytest.approx(command.tolist())


def test_ranges_from_a_few_demonstrations_still_admit_unseen_starts(tmp_path):
    # Four demonstrations saw the reach target on one side only; the task places it anywhere in the workspace.
    import gymnasium as gym

    from training.datasets import observation_to_dataset

    ckpt = imitation_checkpoint(tmp_path / "run", "mlp", stats=dataset_stats(reach_features(), seed=2))
    m = export(tmp_path, ckpt).manifest
    env = gym.make(REACH["id"])
    outside = 0
    for seed in range(1000, 1100):
        obs = observation_to_dataset(env.reset(seed=seed)[0])
        for f in m.observation:
            outside += int(np.any((obs[f.key] < f.low) | (obs[f.key] > f.high)))
    env.close()
    assert outside == 0


def test_user_override_and_bad_values(tmp_path):
    ckpt = imitation_checkpoint(tmp_path / "run", "mlp")
    result = export(tmp_path, ckpt, max_velocity=[2.0])
    m = result.manifest
    assert m.action.max_velocity == (2.0,) * 6
    assert "velocity limit 2..2 units/s per joint (export option max_velocity)" in result.summary()
    assert m.source.extra["safety"]["max_velocity"]["from"] == "export option max_velocity"
    per_joint = [0.5, 1.0, 1.5, 2.0, 2.5, 3.0]
    assert export(tmp_path, ckpt, "b2", max_velocity=per_joint).manifest.action.max_velocity == tuple(per_joint)
    with pytest.raises(ValueError, match=r"max_velocity has 2 values; give one, or one per action dimension \(6"):
        export(tmp_path, ckpt, "b3", max_velocity=[1.0, 2.0])
    for bad in ([0.0], [-1.0], [float("nan")], [float("inf")], [], ["fast"], [True]):
        with pytest.raises(ValueError, match="max_velocity"):
            export(tmp_path, ckpt, "b4", max_velocity=bad)
    assert not (tmp_path / "b3").exists() and not (tmp_path / "b4").exists()


def test_old_checkpoint_without_speeds_reads_its_dataset_or_asks_for_max_velocity(tmp_path):
    from training.datasets import DatasetWriter

    names = ["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper"]
    features = {k: {"dtype": "float32", "shape": [6], "names": names if k != ENV_STATE else None}
                for k in (STATE, ENV_STATE, "action")}
    episodes = _random_walk_episodes(REACH, 3, seed=5)
    root = tmp_path / "dataset"
    with DatasetWriter.create(root, int(HZ), features) as writer:
        for ep in episodes:
            writer.add_episode(ep, "reach")
    full = json.loads((root / "meta" / "stats.json").read_text())
    old = {k: {n: v for n, v in entry.items() if n != MAX_ABS_DELTA} for k, entry in full.items()}

    ckpt = imitation_checkpoint(tmp_path / "run", "mlp", stats=old, dataset_root=root)
    measured = export(tmp_path, ckpt).manifest
    want = VELOCITY_SCALE * HZ * np.maximum(full["action"][MAX_ABS_DELTA], full[STATE][MAX_ABS_DELTA])
    np.testing.assert_allclose(measured.action.max_velocity, want, rtol=1e-5)
    assert "speeds measured in dataset" in measured.source.extra["safety"]["max_velocity"]["from"]

    gone = imitation_checkpoint(tmp_path / "run_gone", "mlp", stats=old)  # its dataset path does not exist
    with pytest.raises(ValueError, match=r"pass max_velocity=\[\.\.\.\].*shoulder_pan"):
        export(tmp_path, gone, "b2")
    assert export(tmp_path, gone, "b3", max_velocity=[1.0]).manifest.action.max_velocity == (1.0,) * 6

    with DatasetWriter.open(root) as writer:  # the dataset grew after training: not the data the policy saw
        writer.add_episode(episodes[0], "reach")
    with pytest.raises(ValueError, match="not the data the policy was trained on"):
        export(tmp_path, ckpt, "b4")


def test_runner_holds_on_implausible_observations_and_rate_limits_from_the_measured_pose(tmp_path):
    ckpt = imitation_checkpoint(tmp_path / "run", "mlp", n_obs_steps=1)
    export(tmp_path, ckpt)
    m = load_manifest(tmp_path / "bundle")
    runner = ChunkRunner(tmp_path / "bundle")
    pose = np.zeros(6, np.float32)
    env_state = ((np.asarray(m.feature(ENV_STATE).low) + m.feature(ENV_STATE).high) / 2).astype(np.float32)
    first = runner.tick({STATE: np.full(6, 1e30, np.float32), ENV_STATE: env_state})
    assert first is None  # the case: a finite but absurd first state commands nothing
    assert runner.faults.get("out_of_range_observation") == 1
    action = runner.tick({STATE: pose, ENV_STATE: env_state})
    assert action is not None
    assert np.all(np.abs(action - pose) <= np.asarray(m.action.max_velocity) / HZ + 1e-6)


def test_quaternion_elements_get_their_natural_range_not_the_demonstrations():
    """A cube that tumbles reaches quaternion elements the demonstrations never showed: those get [-1, 1] (plus float
    rounding), so a valid but unseen orientation never makes the runner hold; metres keep the widened data range."""
    from types import SimpleNamespace

    from deploy.export.limits import observation_bounds, widened
    from deploy.runtime import ObservationFeature

    feature = ObservationFeature(key=ENV_STATE, shape=(5,), dtype="float32", units=("m",) + ("quaternion",) * 4)
    data_low = np.array([0.1, 0.9, -0.37, -0.37, -0.1])
    data_high = np.array([0.3, 1.0, 0.37, 0.37, 0.1])
    profile = SimpleNamespace(low={ENV_STATE: data_low}, high={ENV_STATE: data_high})
    info = SimpleNamespace(initial_from=None)
    low, high = observation_bounds(info, feature, profile)
    assert (low[0], high[0]) == tuple(float(v[0]) for v in widened(data_low, data_high))
    for i in range(1, 5):
        assert -1.01 < low[i] < -1.0 and 1.0 < high[i] < 1.01
    # A quarter turn about x (qx = 0.707, beyond the demos' 0.37) is inside; a garbage value is not.
    assert low[2] < 0.7071 < high[2] and not low[2] < 1e30 < high[2]
