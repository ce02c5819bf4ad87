"""Async inference: latency compensation (skipping past actions), seam blending, late/stale chunks, threads."""

import threading
import time

import numpy as np

from deploy.runtime import ChunkRunner, Fault, SimulatedLatency
from tests.deploy.bundle_factory import ramp_bundle, state_obs

HZ = 50.0


def ticks(n):
    return SimulatedLatency(latency_s=n / HZ)


def run(runner, states):
    return np.array([runner.tick(state_obs(x))[0] for x in states])


def test_late_chunk_skips_past_actions_and_holds_while_waiting(tmp_path):
    # chunk 5, a new one every 3 ticks, inference takes 4 ticks: every chunk lands after the previous ran out.
    bundle = ramp_bundle(tmp_path / "b", chunk_size=5, n_action_steps=3, frequency_hz=HZ)
    with ChunkRunner(bundle, mode="async", latency=ticks(4), blend_ticks=0) as runner:
        actions = run(runner, [100 * t for t in range(13)])
    # t0-3 startup (midpoint 0); t4 chunk(0) lands 4 ticks old -> its action 4; t5-7 it has run out -> hold;
    # t8 chunk(4) lands -> 400 + 4; hold; t12 chunk(8) -> 800 + 4.
    np.testing.assert_array_equal(actions, [0, 0, 0, 0, 4, 4, 4, 4, 404, 404, 404, 404, 804])
    s = runner.statistics
    assert (s.startup_ticks, s.held_ticks, s.late_chunks, s.skipped_actions) == (4, 6, 2, 12)
    assert s.faults == {Fault.NO_FRESH_CHUNK: 6}
    assert list(s.delivery_ticks) == [4, 4, 4]


def test_in_time_chunk_is_blended_into_the_executing_one(tmp_path):
    bundle = ramp_bundle(tmp_path / "b", chunk_size=10, n_action_steps=4, frequency_hz=HZ)
    with ChunkRunner(bundle, mode="async", latency=ticks(2), blend_ticks=2) as runner:
        actions = run(runner, [100 * t for t in range(11)])
    # chunk(0) lands at t2 (starting at its action 2); chunk(4) lands at t6 and is crossfaded over 2 ticks with
    # weights 1/3, 2/3 against chunk(0): t6 = 2/3*6 + 1/3*402, t7 = 1/3*7 + 2/3*403; chunk(8) lands at t10:
    # 2/3*406 + 1/3*802.
    expected = [0, 0, 2, 3, 4, 5, 2 / 3 * 6 + 402 / 3, 7 / 3 + 2 / 3 * 403, 404, 405, 2 / 3 * 406 + 802 / 3]
    np.testing.assert_allclose(actions, expected, rtol=1e-6)
    s = runner.statistics
    assert (s.held_ticks, s.late_chunks, s.skipped_actions) == (0, 0, 6) and not s.faults


def test_chunk_older_than_its_length_is_discarded(tmp_path):
    bundle = ramp_bundle(tmp_path / "b", chunk_size=3, n_action_steps=3, frequency_hz=HZ)
    with ChunkRunner(bundle, mode="async", latency=ticks(5)) as runner:
        actions = run(runner, [100 * t for t in range(11)])
    np.testing.assert_array_equal(actions, 0.0)
    assert runner.statistics.stale_chunks == 2 and runner.faults == {Fault.STALE_CHUNK: 2}
    assert runner.statistics.chunks_received == 0 and runner.statistics.requests == 3


def test_simulated_jitter_is_seeded(tmp_path):
    bundle = ramp_bundle(tmp_path / "b", chunk_size=20, n_action_steps=5, frequency_hz=HZ)

    def delivery(seed):
        latency = SimulatedLatency(latency_s=0.1, jitter_s=0.04, seed=seed)
        with ChunkRunner(bundle, mode="async", latency=latency) as runner:
            actions = run(runner, [100 * t for t in range(200)])
        return actions, list(runner.statistics.delivery_ticks)

    (a1, d1), (a2, d2), (_, d3) = delivery(1), delivery(1), delivery(2)
    np.testing.assert_array_equal(a1, a2)
    assert d1 == d2 and d1 != d3
    assert set(d1) <= {3, 4, 5, 6, 7} and len(set(d1)) >= 3  # ceil((0.1 +- 0.04) * 50)


def test_reset_drops_the_chunk_in_flight(tmp_path):
    bundle = ramp_bundle(tmp_path / "b", chunk_size=10, n_action_steps=10, frequency_hz=HZ)
    with ChunkRunner(bundle, mode="async", latency=ticks(1)) as runner:
        runner.tick(state_obs(7))  # request from the old episode
        runner.reset()
        actions = run(runner, [100 * t for t in range(3)])
    np.testing.assert_array_equal(actions, [0, 1, 2])  # chunk(0) of the new episode, never the old 7 + i


def test_background_thread_does_not_block_the_control_loop(tmp_path):
    bundle = ramp_bundle(tmp_path / "b", chunk_size=40, n_action_steps=10, frequency_hz=500.0)
    with ChunkRunner(bundle, mode="async", blend_ticks=0) as runner:
        inner = runner.policy.predict_chunk
        threads = set()

        def slow_predict(*args, **kwargs):
            threads.add(threading.current_thread().name)
            time.sleep(0.02)  # a 20 ms inference at a 2 ms control period
            return inner(*args, **kwargs)

        runner.policy.predict_chunk = slow_predict
        durations, decoded = [], []
        for t in range(150):
            start = time.perf_counter()
            a = runner.tick(state_obs(10 * t))[0]
            durations.append(time.perf_counter() - start)
            decoded.append((t, a))
            time.sleep(0.002)
    assert threads == {"chunk-runner-inference"}
    assert np.median(durations) < 0.005
    s = runner.statistics
    assert s.chunks_received >= 3 and min(s.delivery_ticks) >= 1
    # Latency compensation: every model action at tick t came from some chunk origin s <= t as 10 s + (t - s).
    held = {t for t, kind, _ in s.recent_faults}
    for t, a in decoded[s.startup_ticks:]:
        if t in held:
            continue
        origin = (a - t) / 9
        assert origin == int(origin) and 0 <= t - origin < 40, (t, a)
