"""Safety behaviours of ChunkRunner: bad observations, limits, rate limit, first action, inference faults."""

import dataclasses

import numpy as np
import pytest

from deploy.runtime import ChunkRunner, Fault, SimulatedLatency
from tests.deploy.bundle_factory import IMAGE_KEY, STATE_KEY, make_manifest, ramp_bundle, ramp_model, state_obs, \
    write_bundle


@pytest.fixture
def bundle(tmp_path):
    return ramp_bundle(tmp_path / "b", chunk_size=10, n_action_steps=10, with_image=True)


def obs(value):
    return state_obs(value, image=True)


@pytest.mark.parametrize("bad, kind", [
    (state_obs(np.nan, image=True), Fault.NON_FINITE_OBSERVATION),
    ({STATE_KEY: np.array([1.0, np.inf], np.float32), IMAGE_KEY: np.zeros((3, 4, 4), np.uint8)},
     Fault.NON_FINITE_OBSERVATION),
    ({STATE_KEY: np.array([1e300, 0.0]), IMAGE_KEY: np.zeros((3, 4, 4), np.uint8)}, Fault.NON_FINITE_OBSERVATION),
    ({STATE_KEY: np.zeros(3, np.float32), IMAGE_KEY: np.zeros((3, 4, 4), np.uint8)}, Fault.BAD_SHAPE),
    ({STATE_KEY: np.zeros((1, 2), np.float32), IMAGE_KEY: np.zeros((3, 4, 4), np.uint8)}, Fault.BAD_SHAPE),
    ({STATE_KEY: np.zeros(2, np.float32), IMAGE_KEY: np.zeros((4, 4, 3), np.uint8)}, Fault.BAD_SHAPE),
    ({STATE_KEY: np.zeros(2, np.float32), IMAGE_KEY: np.zeros((3, 4, 4), np.float32)}, Fault.BAD_DTYPE),
    ({STATE_KEY: np.array(["a", "b"]), IMAGE_KEY: np.zeros((3, 4, 4), np.uint8)}, Fault.BAD_DTYPE),
    ({STATE_KEY: np.zeros(2, np.float32)}, Fault.MISSING_KEY),
    ({"agent_pos": np.zeros(2, np.float32), IMAGE_KEY: np.zeros((3, 4, 4), np.uint8)}, Fault.MISSING_KEY),
    (None, Fault.BAD_OBSERVATION),
    ([1.0, 2.0], Fault.BAD_OBSERVATION),
])
def test_bad_observation_holds_the_last_action_and_records_the_fault(bundle, bad, kind):
    with ChunkRunner(bundle) as runner:
        first = [runner.tick(obs(0)) for _ in range(3)]
        held = runner.tick(bad)
        after = runner.tick(obs(0))
    np.testing.assert_array_equal(held, first[-1])  # hold
    np.testing.assert_array_equal(after, [4, 4])  # the chunk's schedule goes on: tick 4 -> action 4
    assert runner.faults == {kind: 1} and runner.statistics.held_ticks == 1
    tick, recorded_kind, detail = runner.statistics.recent_faults[-1]
    assert (tick, recorded_kind) == (3, kind) and detail


def test_list_and_float64_observations_are_accepted(bundle):
    with ChunkRunner(bundle) as runner:
        a = runner.tick({STATE_KEY: [3.0, 4.0], IMAGE_KEY: np.zeros((3, 4, 4), np.uint8)})
    np.testing.assert_array_equal(a, [3, 4])
    assert not runner.faults


def test_tick_never_raises_on_garbage(bundle):
    rng = np.random.default_rng(0)
    garbage = [None, 3, "obs", b"x", {}, {STATE_KEY: None}, {STATE_KEY: object()}, {STATE_KEY: [[1], [2, 3]]},
               {STATE_KEY: {"a": 1}}, {STATE_KEY: np.zeros(2), IMAGE_KEY: "img"}, {1: 2}]
    with ChunkRunner(bundle) as runner:
        outputs = [runner.tick(obs(0))]
        for _ in range(40):
            outputs.append(runner.tick(garbage[rng.integers(len(garbage))]))
    assert all(o.shape == (2,) and o.dtype == np.float32 and np.isfinite(o).all() for o in outputs)
    assert runner.statistics.held_ticks == 40
    assert set(runner.faults) <= set(Fault.OBSERVATION_KINDS)


def test_actions_are_clamped_to_the_limits(tmp_path):
    manifest = make_manifest(action_dim=2, chunk_size=10, n_action_steps=10)
    manifest = dataclasses.replace(manifest, action=dataclasses.replace(manifest.action, lower=(-1.0, 0.5),
                                                                        upper=(3.0, 2.0)))
    bundle = write_bundle(tmp_path / "b", ramp_model(2, 10), manifest)
    with ChunkRunner(bundle) as runner:
        actions = np.array([runner.tick(state_obs(-2.0)) for _ in range(8)])
    # raw: -2 + t for both joints
    np.testing.assert_array_equal(actions[:, 0], [-1, -1, 0, 1, 2, 3, 3, 3])
    np.testing.assert_array_equal(actions[:, 1], [0.5, 0.5, 0.5, 1, 2, 2, 2, 2])


def test_per_tick_change_is_limited_by_max_velocity(tmp_path):
    # 50 and 100 rad/s at 50 Hz: at most 1 and 2 rad per tick.
    bundle = ramp_bundle(tmp_path / "b", chunk_size=5, n_action_steps=5, max_velocity=(50.0, 100.0),
                         initial_from=True)
    with ChunkRunner(bundle) as runner:
        actions = np.array([runner.tick(state_obs(10 * t)) for t in range(10)])
    # raw: 0,1,2,3,4 then 50,51,52,...: joint 0 follows at 1/tick, joint 1 at 2/tick.
    np.testing.assert_array_equal(actions[:, 0], np.arange(10))
    np.testing.assert_array_equal(actions[:, 1], [0, 1, 2, 3, 4, 6, 8, 10, 12, 14])
    with ChunkRunner(bundle, max_velocity=None) as runner:
        raw = np.array([runner.tick(state_obs(10 * t)) for t in range(6)])
    np.testing.assert_array_equal(raw[:, 1], [0, 1, 2, 3, 4, 50])
    with ChunkRunner(bundle, max_velocity=25.0) as runner:  # scalar override: 0.5 rad per tick
        slow = np.array([runner.tick(state_obs(10 * t)) for t in range(3)])
    np.testing.assert_array_equal(slow[:, 0], [0, 0.5, 1.0])


def test_first_action_is_rate_limited_from_the_observed_position(tmp_path):
    bundle = ramp_bundle(tmp_path / "b", chunk_size=5, n_action_steps=5, max_velocity=(25.0, 25.0),
                         initial_from=True)
    with ChunkRunner(bundle, mode="async", latency=SimulatedLatency(2 / 50.0)) as runner:
        state = np.array([1.0, -1.0], np.float32)
        actions = np.array([runner.tick({STATE_KEY: state + 0}) for _ in range(6)])
    # Startup (2 ticks) holds the observed position (1, -1); the chunk (1 + i, -1 + i) lands at tick 2 and starts
    # at its action 0 (the robot waited for it), so its targets (1, -1), (2, 0), (3, 1), (4, 2) move 1 rad per
    # tick and are approached at 0.5 rad per tick from (1, -1).
    np.testing.assert_array_equal(actions, [[1, -1], [1, -1], [1, -1], [1.5, -0.5], [2, 0], [2.5, 0.5]])
    assert runner.statistics.startup_ticks == 2 and runner.statistics.held_ticks == 0


def test_first_action_without_a_reference_is_the_midpoint(tmp_path):
    manifest = make_manifest(action_dim=2, chunk_size=5, n_action_steps=5)
    manifest = dataclasses.replace(manifest, action=dataclasses.replace(manifest.action, lower=(0.0, -4.0),
                                                                        upper=(2.0, 0.0)))
    bundle = write_bundle(tmp_path / "b", ramp_model(2, 5), manifest)
    with ChunkRunner(bundle) as runner:
        np.testing.assert_array_equal(runner.tick({"wrong": 1}), [1.0, -2.0])
    with ChunkRunner(bundle, initial_action=[0.5, 5.0]) as runner:  # explicit, clamped into the limits
        np.testing.assert_array_equal(runner.tick(None), [0.5, 0.0])


def test_non_finite_model_output_is_held(tmp_path):
    # sqrt(state) + i: a negative state makes the model output NaN.
    bundle = ramp_bundle(tmp_path / "b", chunk_size=3, n_action_steps=1, sqrt=True)
    with ChunkRunner(bundle) as runner:
        good = runner.tick(state_obs(4.0))
        bad = runner.tick(state_obs(-1.0))
    np.testing.assert_array_equal(good, [2, 2])
    np.testing.assert_array_equal(bad, good)
    assert runner.faults == {Fault.NON_FINITE_ACTION: 1} and runner.statistics.held_ticks == 1


def test_failed_inference_is_a_fault_and_is_retried(bundle):
    with ChunkRunner(bundle, n_action_steps=2) as runner:
        inner, calls = runner.policy.predict_chunk, []

        def flaky(*args, **kwargs):
            calls.append(1)
            if len(calls) == 2:
                raise RuntimeError("onnxruntime fell over")
            return inner(*args, **kwargs)

        runner.policy.predict_chunk = flaky
        actions = np.array([runner.tick(obs(100 * t)) for t in range(5)])[:, 0]
    # tick 2's request fails: chunk(0) goes on (action 2); tick 3 retries -> 300.
    np.testing.assert_array_equal(actions, [0, 1, 2, 300, 301])
    assert runner.faults == {Fault.INFERENCE_ERROR: 1}
    assert "onnxruntime fell over" in runner.statistics.recent_faults[-1][2]


def test_chunk_running_out_in_sync_mode_after_failures_holds(bundle):
    with ChunkRunner(bundle, n_action_steps=10) as runner:
        inner = runner.policy.predict_chunk
        calls = []

        def fail_after_first(*args, **kwargs):
            calls.append(1)
            if len(calls) > 1:
                raise RuntimeError("down")
            return inner(*args, **kwargs)

        runner.policy.predict_chunk = fail_after_first
        actions = np.array([runner.tick(obs(0)) for _ in range(12)])[:, 0]
    np.testing.assert_array_equal(actions, list(range(10)) + [9, 9])
    assert runner.faults[Fault.NO_FRESH_CHUNK] == 2 and runner.statistics.held_ticks == 2


def test_a_runner_bug_is_reported_not_raised(bundle):
    with ChunkRunner(bundle) as runner:
        runner.tick(obs(0))

        def broken(t):
            raise IndexError("bug")

        runner._planned = broken
        held = runner.tick(obs(0))
    np.testing.assert_array_equal(held, [0, 0])
    assert runner.faults == {Fault.INTERNAL_ERROR: 1} and runner.statistics.held_ticks == 1


def test_constructor_rejects_bad_settings(bundle):
    with pytest.raises(ValueError, match="mode must be"):
        ChunkRunner(bundle, mode="fast")
    with pytest.raises(ValueError, match="use mode='async'"):
        ChunkRunner(bundle, latency=SimulatedLatency(0.1))
    with pytest.raises(ValueError, match="max_velocity must be positive"):
        ChunkRunner(bundle, max_velocity=[1.0, 0.0])
    with pytest.raises(ValueError, match="initial_action must be 2 finite numbers"):
        ChunkRunner(bundle, initial_action=[0.0])
    with pytest.raises(ValueError, match="intra_op_threads"):
        ChunkRunner(bundle, intra_op_threads=0)
    with pytest.raises(ValueError, match="latency_s"):
        SimulatedLatency(-0.1)
