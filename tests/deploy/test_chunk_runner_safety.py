"""Safety behaviours of ChunkRunner: bad observations, limits, rate limit, first action, inference faults."""

import dataclasses
import functools

import numpy as np
import pytest

from deploy.runtime import ChunkRunner, Fault, SimulatedLatency
from tests.deploy.bundle_factory import IMAGE_KEY, STATE_KEY, make_manifest, ramp_bundle, ramp_model, state_obs, \
    write_bundle


# Exact sequences: inference inline without a deadline, so a loaded test machine cannot turn a slow inference into a
# late_chunk hold (the deadline has its own tests in test_chunk_runner_deadline.py).
Runner = functools.partial(ChunkRunner, sync_deadline_s=None)


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
    with Runner(bundle) as runner:
        first = [runner.tick(obs(0)) for _ in range(3)]
        held = runner.tick(bad)
        after = runner.tick(obs(0))
    np.testing.assert_array_equal(held, first[-1])  # hold
    np.testing.assert_array_equal(after, [4, 4])  # the chunk's schedule goes on: tick 4 -> action 4
    assert runner.faults == {kind: 1} and runner.statistics.held_ticks == 1
    tick, recorded_kind, detail = runner.statistics.recent_faults[-1]
    assert (tick, recorded_kind) == (3, kind) and detail


def test_list_and_float64_observations_are_accepted(bundle):
    with Runner(bundle) as runner:
        a = runner.tick({STATE_KEY: [3.0, 4.0], IMAGE_KEY: np.zeros((3, 4, 4), np.uint8)})
    np.testing.assert_array_equal(a, [3, 4])
    assert not runner.faults


def test_tick_never_raises_on_garbage(bundle):
    rng = np.random.default_rng(0)
    garbage = [None, 3, "obs", b"x", {}, {STATE_KEY: None}, {STATE_KEY: object()}, {STATE_KEY: [[1], [2, 3]]},
               {STATE_KEY: {"a": 1}}, {STATE_KEY: np.zeros(2), IMAGE_KEY: "img"}, {1: 2}]
    with Runner(bundle) as runner:
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
    with Runner(bundle) as runner:
        actions = np.array([runner.tick(state_obs([-2.0, 0.0])) for _ in range(8)])
    # raw: -2 + t and 0 + t
    np.testing.assert_array_equal(actions[:, 0], [-1, -1, 0, 1, 2, 3, 3, 3])
    np.testing.assert_array_equal(actions[:, 1], [0.5, 1, 2, 2, 2, 2, 2, 2])


def test_per_tick_change_is_limited_by_max_velocity(tmp_path):
    # 50 and 100 rad/s at 50 Hz: at most 1 and 2 rad per tick.
    bundle = ramp_bundle(tmp_path / "b", chunk_size=5, n_action_steps=5, max_velocity=(50.0, 100.0))
    with Runner(bundle) as runner:
        actions = np.array([runner.tick(state_obs(10 * t)) for t in range(10)])
    # raw: 0,1,2,3,4 then 50,51,52,...: joint 0 follows at 1/tick, joint 1 at 2/tick.
    np.testing.assert_array_equal(actions[:, 0], np.arange(10))
    np.testing.assert_array_equal(actions[:, 1], [0, 1, 2, 3, 4, 6, 8, 10, 12, 14])
    with Runner(bundle, max_velocity=None, allow_unlimited_velocity=True) as runner:
        raw = np.array([runner.tick(state_obs(10 * t)) for t in range(6)])
    np.testing.assert_array_equal(raw[:, 1], [0, 1, 2, 3, 4, 50])
    with Runner(bundle, max_velocity=25.0) as runner:  # scalar override: 0.5 rad per tick
        slow = np.array([runner.tick(state_obs(10 * t)) for t in range(3)])
    np.testing.assert_array_equal(slow[:, 0], [0, 0.5, 1.0])


def test_running_without_a_velocity_limit_must_be_asked_for(tmp_path):
    unlimited = ramp_bundle(tmp_path / "u", chunk_size=5, max_velocity=None)
    with pytest.raises(ValueError, match="the manifest sets no max_velocity.*allow_unlimited_velocity=True"):
        ChunkRunner(unlimited)
    limited = ramp_bundle(tmp_path / "l", chunk_size=5, max_velocity=1.0)
    with pytest.raises(ValueError, match="max_velocity=None was passed"):
        ChunkRunner(limited, max_velocity=None)
    with pytest.raises(ValueError, match="allow_unlimited_velocity must be True or False"):
        ChunkRunner(unlimited, allow_unlimited_velocity="yes")
    with Runner(unlimited, allow_unlimited_velocity=True) as runner:
        assert runner.max_velocity is None
    with Runner(unlimited, max_velocity=[1.0, 2.0]) as runner:  # a runtime limit for an unlimited bundle
        np.testing.assert_array_equal(runner.max_velocity, [1.0, 2.0])
    with Runner(limited, allow_unlimited_velocity=True) as runner:  # allowing does not remove a limit
        np.testing.assert_array_equal(runner.max_velocity, [1.0, 1.0])


def test_first_command_starts_at_the_pose_measured_on_its_tick(tmp_path):
    bundle = ramp_bundle(tmp_path / "b", chunk_size=5, n_action_steps=5, max_velocity=(25.0, 25.0))
    states = [[1.0, -1.0], [2.0, -2.0], [3.0, -3.0], [3.0, -3.0], [3.0, -3.0], [3.0, -3.0]]
    with Runner(bundle, mode="async", latency=SimulatedLatency(2 / 50.0)) as runner:
        actions = [runner.tick(state_obs(s)) for s in states]
    # Startup (2 ticks): no command, the driver holds. The chunk observed at t0, (1 + i, -1 + i), lands at t2 and
    # starts at its action 0; by then the robot was moved to (3, -3), so the first command moves 0.5 rad per tick
    # from there towards the plan's (1, -1), (2, 0), (3, 1), (4, 2).
    assert actions[:2] == [None, None]
    np.testing.assert_array_equal(actions[2:], [[2.5, -2.5], [2.0, -2.0], [2.5, -1.5], [3.0, -1.0]])
    s = runner.statistics
    assert (s.startup_ticks, s.no_command_ticks, s.held_ticks) == (2, 2, 0) and not s.faults


def test_no_command_before_the_first_valid_observation(tmp_path):
    bundle = ramp_bundle(tmp_path / "b", chunk_size=5, n_action_steps=5, max_velocity=50.0, limit=10.0)
    bad = [None, {"wrong": 1}, state_obs(np.nan), state_obs(1e30), {STATE_KEY: np.array([True, False])}]
    for mode in ("sync", "async"):
        with Runner(bundle, mode=mode, latency=SimulatedLatency(0.0) if mode == "async" else None) as runner:
            assert [runner.tick(b) for b in bad] == [None] * len(bad)
            first = runner.tick(state_obs(0.5))
            held = runner.tick(None)
        np.testing.assert_array_equal(first, [0.5, 0.5])  # the model's action 0 at the measured pose
        np.testing.assert_array_equal(held, first)  # once something was commanded, a fault holds it
        s = runner.statistics
        assert (s.no_command_ticks, s.held_ticks, s.requests, sum(s.faults.values())) == (5, 1, 1, 6), mode
        assert s.summary()["no_command_ticks"] == 5
        # A new episode commands nothing until its own first valid observation.
        runner.reset()
        assert runner.tick({"wrong": 1}) is None


def test_bundle_without_a_measured_pose_needs_initial_action(tmp_path):
    manifest = make_manifest(action_dim=2, chunk_size=5, n_action_steps=5, initial_from=False, max_velocity=25.0)
    manifest = dataclasses.replace(manifest, action=dataclasses.replace(manifest.action, lower=(0.0, -4.0),
                                                                        upper=(2.0, 0.0)))
    bundle = write_bundle(tmp_path / "b", ramp_model(2, 5), manifest)
    with pytest.raises(ValueError, match="no action.initial_from.*pass initial_action="):
        ChunkRunner(bundle)
    with Runner(bundle, initial_action=[0.5, 5.0]) as runner:  # clamped into the limits: (0.5, 0)
        assert runner.tick(None) is None  # nothing to command before the model has spoken
        np.testing.assert_array_equal(runner.tick(state_obs([3.0, -3.0])), [1.0, -0.5])  # 0.5 rad/tick from it
        runner.reset(initial_action=[2.0, -4.0])  # the next episode starts elsewhere
        np.testing.assert_array_equal(runner.tick(state_obs([0.0, 0.0])), [1.5, -3.5])
        with pytest.raises(ValueError, match="initial_action must be 2 finite numbers"):
            runner.reset(initial_action=[np.nan, 0.0])
    measured = ramp_bundle(tmp_path / "m", chunk_size=5)
    with pytest.raises(ValueError, match="measures the robot's pose itself"):
        ChunkRunner(measured, initial_action=[0.0, 0.0])
    with Runner(measured) as runner, pytest.raises(ValueError, match="measures the robot's pose itself"):
        runner.reset(initial_action=[0.0, 0.0])


def test_out_of_range_observation_is_a_fault(tmp_path):
    bundle = ramp_bundle(tmp_path / "b", chunk_size=10, n_action_steps=10, state_range=(-2.0, 2.0))
    with Runner(bundle) as runner:
        assert runner.tick(state_obs([0.0, 1e30])) is None  # the very first observation: nothing commanded
        first = runner.tick(state_obs(1.0))
        held = runner.tick(state_obs([2.5, 0.0]))
        ok = runner.tick(state_obs([2.0, -2.0]))  # the bounds themselves are plausible
    np.testing.assert_array_equal(first, [1.0, 1.0])
    np.testing.assert_array_equal(held, first)
    np.testing.assert_array_equal(ok, [3.0, 3.0])
    assert runner.faults == {Fault.OUT_OF_RANGE_OBSERVATION: 2}
    details = [d for _, _, d in runner.statistics.recent_faults]
    assert "'observation.state'[1] (joint1) = 1e+30 is outside [-2, 2]" in details[0]
    assert "'observation.state'[0] (joint0) = 2.5 is outside [-2, 2]" in details[1]


def test_measured_joints_without_manifest_bounds_are_checked_against_the_widened_limits(tmp_path):
    # An old manifest (no low/high): the joints initial_from reads must lie within the limits +- their range.
    bundle = ramp_bundle(tmp_path / "b", chunk_size=10, n_action_steps=10, limit=1.0)  # limits [-1, 1]: [-3, 3]
    with Runner(bundle) as runner:
        assert runner.tick(state_obs(1e30)) is None
        assert runner.tick(state_obs([-3.5, 0.0])) is None
        first = runner.tick(state_obs([2.9, -3.0]))
    np.testing.assert_array_equal(first, [1.0, -1.0])  # plausible, clamped into the limits
    assert runner.faults == {Fault.OUT_OF_RANGE_OBSERVATION: 2}
    assert "the action limits widened by their range" in runner.statistics.recent_faults[0][2]


def test_commands_stay_within_the_tracking_bound_of_the_measured_pose(tmp_path):
    bundle = ramp_bundle(tmp_path / "b", chunk_size=10, n_action_steps=10, max_velocity=(100.0, 100.0),
                         max_tracking_error=(0.5, 3.0))
    measured = [0.0, 0.2, 0.4, 0.6, 5.0, 5.0]  # the robot lags the plan 0, 1, 2, ..., then is pushed to 5
    with Runner(bundle) as runner:
        actions = np.array([runner.tick(state_obs(m)) for m in measured[:4]])
        pushed = runner.tick(state_obs(measured[4]))
        held = runner.tick(None)  # a fault: no fresh measurement, the last command is held as is
        back = runner.tick(state_obs(measured[5]))
    # joint 0 (bound 0.5) stays within 0.5 of the measurement; joint 1 (bound 3) follows the plan 0, 1, 2, 3.
    np.testing.assert_allclose(actions[:, 0], [0.0, 0.7, 0.9, 1.1], rtol=1e-6)
    np.testing.assert_array_equal(actions[:, 1], [0, 1, 2, 3])
    # Pushed to 5: the plan says 4; joint 0 must come within [4.5, 5.5] but moves at most 2 per tick (100 rad/s).
    np.testing.assert_allclose(pushed, [3.1, 4.0], rtol=1e-6)
    np.testing.assert_allclose(held, pushed)
    # Tick 6, plan 6, still at 5: joint 0 is bounded to 5.5 but only reaches 3.1 + 2; joint 1 follows the plan.
    np.testing.assert_allclose(back, [5.1, 6.0], rtol=1e-6)
    with Runner(bundle, max_tracking_error=None) as runner:  # the override switches it off
        np.testing.assert_array_equal([runner.tick(state_obs(m))[0] for m in measured[:4]], [0, 1, 2, 3])
    plain = ramp_bundle(tmp_path / "p", chunk_size=10, initial_from=False)
    with pytest.raises(ValueError, match="max_tracking_error bounds commands around the measured pose"):
        ChunkRunner(plain, initial_action=[0.0, 0.0], max_tracking_error=0.1)


def test_non_finite_model_output_is_held(tmp_path):
    # sqrt(state) + i: a negative state makes the model output NaN.
    bundle = ramp_bundle(tmp_path / "b", chunk_size=3, n_action_steps=1, sqrt=True)
    with Runner(bundle) as runner:
        good = runner.tick(state_obs(4.0))
        bad = runner.tick(state_obs(-1.0))
    np.testing.assert_array_equal(good, [2, 2])
    np.testing.assert_array_equal(bad, good)
    assert runner.faults == {Fault.NON_FINITE_ACTION: 1} and runner.statistics.held_ticks == 1


def test_failed_inference_is_a_fault_and_is_retried(bundle):
    with Runner(bundle, n_action_steps=2) as runner:
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
    with Runner(bundle, n_action_steps=10) as runner:
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
    with Runner(bundle) as runner:
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
    with pytest.raises(ValueError, match=r"max_velocity must be one positive .*\(action units per second\)"):
        ChunkRunner(bundle, max_velocity=[1.0, 0.0])
    with pytest.raises(ValueError, match="max_tracking_error must be one positive finite number or 2"):
        ChunkRunner(bundle, max_tracking_error=[0.1, -1.0])
    with pytest.raises(ValueError, match="max_velocity must be one positive finite number or 2"):
        ChunkRunner(bundle, max_velocity=[1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="sync_deadline_s must be a positive number"):
        ChunkRunner(bundle, sync_deadline_s=0.0)
    with pytest.raises(ValueError, match="sync_deadline_s applies to mode='sync'"):
        ChunkRunner(bundle, mode="async", sync_deadline_s=0.1)
    with pytest.raises(ValueError, match="intra_op_threads"):
        ChunkRunner(bundle, intra_op_threads=0)
    with pytest.raises(ValueError, match="latency_s"):
        SimulatedLatency(-0.1)
