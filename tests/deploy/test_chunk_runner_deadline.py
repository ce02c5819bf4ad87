"""Sync mode's deadline: a stalled inference never blocks tick(); it is a late_chunk, used when it lands."""

import threading
import time

import numpy as np
import pytest

from deploy.runtime import ChunkRunner, Fault
from tests.deploy.bundle_factory import ramp_bundle, state_obs

HZ = 50.0


class Stall:
    """Patches runner.policy.predict_chunk: the requests numbered in `stalled` (1 = the first) block until
    release() is called; release() returns once the stalled inference has finished and handed its result over."""

    def __init__(self, runner, stalled=()):
        self.inner, self.calls, self.threads = runner.policy.predict_chunk, 0, set()
        self.stalled, self._go, self._done = set(stalled), threading.Event(), threading.Event()
        runner.policy.predict_chunk = self.predict

    def predict(self, *args, **kwargs):
        self.calls += 1
        self.threads.add(threading.current_thread().name)
        if self.calls not in self.stalled:
            return self.inner(*args, **kwargs)
        self._go.wait(30)  # bounded, so a broken runner fails the test instead of hanging it
        try:
            return self.inner(*args, **kwargs)
        finally:
            self._done.set()

    def release(self):
        self._go.set()
        assert self._done.wait(30)
        time.sleep(0.05)  # what is left after predict returns: the worker reads the clock and queues the result


def test_default_deadline_is_one_control_period_and_none_runs_inline(tmp_path):
    bundle = ramp_bundle(tmp_path / "b", chunk_size=5, frequency_hz=HZ)
    with ChunkRunner(bundle) as runner:
        assert runner.sync_deadline_s == pytest.approx(1 / HZ)
        stall = Stall(runner)
        np.testing.assert_array_equal(runner.tick(state_obs(1.0)), [1.0, 1.0])
    assert stall.threads == {"chunk-runner-inference"}  # the wait can be bounded because the work is elsewhere
    with ChunkRunner(bundle, sync_deadline_s=None) as runner:
        assert runner.sync_deadline_s is None
        stall = Stall(runner)
        runner.tick(state_obs(1.0))
    assert stall.threads == {threading.current_thread().name}
    with ChunkRunner(bundle, mode="async") as runner:
        assert runner.sync_deadline_s is None


def test_stalled_first_inference_returns_no_command_and_lands_later(tmp_path):
    bundle = ramp_bundle(tmp_path / "b", chunk_size=10, n_action_steps=10, frequency_hz=HZ)
    with ChunkRunner(bundle, sync_deadline_s=0.01) as runner:
        stall = Stall(runner, stalled={1})
        first = runner.tick(state_obs(5.0))  # returns although the inference is still blocked
        assert first is None
        assert runner.faults == {Fault.LATE_CHUNK: 1}
        assert "not done within the sync deadline (10.0 ms)" in runner.statistics.recent_faults[0][2]
        waiting = runner.tick(state_obs(6.0))  # still in flight: startup goes on, no second request
        stall.release()
        action = runner.tick(state_obs(5.0))
    assert waiting is None
    # The robot held still (driver's hold) since tick 0, so the chunk observed there starts at its action 0.
    np.testing.assert_array_equal(action, [5.0, 5.0])
    s = runner.statistics
    assert (s.late_chunks, s.chunks_received, s.requests, s.skipped_actions) == (1, 1, 1, 0)
    assert (s.no_command_ticks, s.startup_ticks, s.held_ticks) == (2, 1, 0)
    assert runner.faults == {Fault.LATE_CHUNK: 1} and list(s.delivery_ticks) == [2]


def stalled_second_request(tmp_path, chunk_size: int, n_action_steps: int, release_at: int, ticks: int):
    """Runs a ramp bundle on a robot at 100 * tick whose second request stalls until tick `release_at`: the first
    action of every tick, and the runner."""
    bundle = ramp_bundle(tmp_path / "b", chunk_size=chunk_size, n_action_steps=n_action_steps, frequency_hz=HZ)
    with ChunkRunner(bundle, sync_deadline_s=0.01) as runner:
        stall = Stall(runner, stalled={2})
        actions = [runner.tick(state_obs(100.0 * t))[0] for t in range(release_at)]
        stall.release()
        actions += [runner.tick(state_obs(100.0 * t))[0] for t in range(release_at, ticks)]
    return actions, runner


def test_stall_mid_episode_goes_on_with_the_previous_plan_then_compensates_latency(tmp_path):
    # chunk 10, a new request every 5 ticks; the request at tick 5 stalls.
    actions, runner = stalled_second_request(tmp_path, chunk_size=10, n_action_steps=5, release_at=8, ticks=11)
    # Tick 5's inference missed the deadline: ticks 5-7 go on with chunk(0)'s plan (actions 5, 6, 7). chunk(5)
    # (500 + i) lands at tick 8, where the robot has moved on: its actions for ticks 5-7 are skipped -> 503, 504;
    # the next request stays on the schedule, 5 ticks after chunk(5)'s tick: tick 10 -> 1000.
    assert actions == [0, 1, 2, 3, 4, 5, 6, 7, 503, 504, 1000]
    s = runner.statistics
    assert s.recent_faults[0][:2] == (5, Fault.LATE_CHUNK) and runner.faults == {Fault.LATE_CHUNK: 1}
    assert (s.late_chunks, s.held_ticks, s.skipped_actions, s.requests) == (1, 0, 3, 3)


def test_stall_when_the_plan_runs_out_holds_the_last_command(tmp_path):
    actions, runner = stalled_second_request(tmp_path, chunk_size=5, n_action_steps=5, release_at=7, ticks=8)
    # chunk(0) covers ticks 0-4; tick 5's chunk is late: ticks 5 and 6 hold 4. It lands at tick 7; the robot has
    # stood still since tick 5, so it starts at its action 0 there (500).
    assert actions == [0, 1, 2, 3, 4, 4, 4, 500]
    s = runner.statistics
    assert runner.faults == {Fault.LATE_CHUNK: 1, Fault.NO_FRESH_CHUNK: 1}  # one fault per held tick
    assert (s.late_chunks, s.held_ticks, s.skipped_actions) == (1, 2, 0)
