"""Async inference: latency compensation (skipping past actions), seam blending, late/stale chunks, threads."""

import threading
import time

import numpy as np

from deploy.runtime import ChunkRunner, Fault, SimulatedLatency
from tests.deploy.bundle_factory import ramp_bundle, state_obs

HZ = 50.0
NO = np.nan  # tick() returned None: no command, the driver holds


def ticks(n):
    return SimulatedLatency(latency_s=n / HZ)


def first_joint(action):
    return NO if action is None else action[0]


def run(runner, states):
    return np.array([first_joint(runner.tick(state_obs(x))) for x in states])


def test_first_chunk_starts_at_its_first_action_then_latency_is_compensated(tmp_path):
    # chunk 10, inference takes 4 ticks, a new chunk every 6 ticks (6 + 4 = 10: the robot is never starved).
    bundle = ramp_bundle(tmp_path / "b", chunk_size=10, n_action_steps=6, frequency_hz=HZ)
    with ChunkRunner(bundle, mode="async", latency=ticks(4), blend_ticks=0) as runner:
        actions = run(runner, [100 * t + 50 for t in range(16)])
    # t0-3 startup: no command, the robot holds still, so chunk(0) is still a plan from the pose it is in: it
    # starts at its action 0 when it lands at t4 (50, 51, ...), and the next request is due 6 ticks into it (t10).
    # chunk(10) lands at t14 while chunk(0) still executes: the 4 actions whose time passed are skipped -> 1050 + 4.
    np.testing.assert_array_equal(actions, [NO, NO, NO, NO, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 1054, 1055])
    s = runner.statistics
    assert (s.startup_ticks, s.held_ticks, s.late_chunks, s.skipped_actions, s.requests) == (4, 0, 0, 4, 2)
    assert s.no_command_ticks == 4
    assert list(s.delivery_ticks) == [4, 4] and not s.faults


def test_late_chunk_resumes_from_the_tick_the_robot_stopped(tmp_path):
    # chunk 5, a new one every 3 ticks, inference takes 4 ticks: every chunk after the first lands after the
    # previous one ran out, and the robot held still in between.
    bundle = ramp_bundle(tmp_path / "b", chunk_size=5, n_action_steps=3, frequency_hz=HZ)
    with ChunkRunner(bundle, mode="async", latency=ticks(4), blend_ticks=2) as runner:
        actions = run(runner, [100 * t + 50 for t in range(17)])
    # t4-8 chunk(0) from its action 0; t9-10 it has run out -> hold 54; chunk(7) lands at t11: the robot stopped at
    # t9, so it resumes at chunk(7)'s action for t9 (750 + 2), not blended with the held action; t14-15 hold;
    # chunk(12) lands at t16, the robot stopped at t14 -> 1250 + 2.
    np.testing.assert_array_equal(actions, [NO] * 4 + [50, 51, 52, 53, 54, 54, 54, 752, 753, 754, 754, 754, 1252])
    s = runner.statistics
    assert (s.startup_ticks, s.held_ticks, s.late_chunks, s.skipped_actions) == (4, 4, 2, 4)
    assert s.faults == {Fault.NO_FRESH_CHUNK: 4}
    assert list(s.delivery_ticks) == [4, 4, 4]


def test_in_time_chunk_is_blended_with_the_remaining_plan(tmp_path):
    bundle = ramp_bundle(tmp_path / "b", chunk_size=10, n_action_steps=4, frequency_hz=HZ)
    with ChunkRunner(bundle, mode="async", latency=ticks(2), blend_ticks=2) as runner:
        actions = run(runner, [100 * t for t in range(13)])
    # chunk(0) lands at t2 and starts at its action 0; chunk(6) lands at t8 (its action 2) and is crossfaded over 2
    # ticks with weights 1/3, 2/3 against chunk(0)'s planned actions for those ticks (6, 7; not the held 5):
    # t8 = 2/3*6 + 1/3*602, t9 = 1/3*7 + 2/3*603; chunk(10) lands at t12: 2/3*606 + 1/3*1002.
    expected = [NO, NO, 0, 1, 2, 3, 4, 5, 2 / 3 * 6 + 602 / 3, 7 / 3 + 2 / 3 * 603, 604, 605, 2 / 3 * 606 + 1002 / 3]
    np.testing.assert_allclose(actions, expected, rtol=1e-6)
    s = runner.statistics
    assert (s.held_ticks, s.late_chunks, s.skipped_actions) == (0, 0, 4) and not s.faults


def test_chunk_older_than_its_length_is_discarded(tmp_path):
    # Even the first chunk of an episode, which the robot waited for without moving: an observation older than
    # the whole chunk is not trusted; the runner asks again from a fresh one.
    bundle = ramp_bundle(tmp_path / "b", chunk_size=3, n_action_steps=3, frequency_hz=HZ)
    with ChunkRunner(bundle, mode="async", latency=ticks(5)) as runner:
        actions = run(runner, [100 * t for t in range(11)])
    np.testing.assert_array_equal(actions, NO)  # never a command: no chunk was fresh enough
    assert runner.statistics.no_command_ticks == 11
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
    np.testing.assert_array_equal(actions, [NO, 0, 1])  # chunk(0) of the new episode, never the old 7 + i


def test_background_thread_does_not_block_the_control_loop(tmp_path):
    # The commands encode which chunk and action they come from, so nothing may bound them: the state is a code,
    # not a measured pose, and the rate limit is off.
    bundle = ramp_bundle(tmp_path / "b", chunk_size=40, n_action_steps=10, frequency_hz=500.0, limit=1e6,
                         initial_from=False, max_velocity=None)
    with ChunkRunner(bundle, mode="async", blend_ticks=0, initial_action=[0.0, 0.0],
                     allow_unlimited_velocity=True) as runner:
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
            a = first_joint(runner.tick(state_obs(1000 * t)))
            durations.append(time.perf_counter() - start)
            decoded.append((t, a))
            time.sleep(0.002)
    assert threads == {"chunk-runner-inference"}
    assert np.median(durations) < 0.005
    s = runner.statistics
    assert s.chunks_received >= 3 and min(s.delivery_ticks) >= 1
    # Every model action at tick t is action i of the chunk observed at tick s: 1000 s + i. The first chunk starts
    # at its action 0 on arrival (the robot waited for it); later ones skip the ticks that passed during inference
    # (all of them unless the robot was starved meanwhile, which a loaded machine may cause).
    held = {t for t, kind, _ in s.recent_faults}
    first = s.startup_ticks
    assert decoded[first][1] == 0
    for t, a in decoded[first:]:
        if t in held:
            continue
        origin, i = divmod(int(a), 1000)
        assert a == int(a) and 0 <= i < 40 and origin + i <= t, (t, a)
        if origin > 0 and not s.faults:
            assert origin + i == t, (t, a)
