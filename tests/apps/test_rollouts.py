"""Rollout export: ChunkRunner's on_chunk hook reports where each accepted chunk is scheduled (sync, async in time,
async after a hold, temporal ensembling), and RolloutRecorder turns it into chunk rows at their scheduled ticks,
unused chunks marked as such."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from apps.rollouts import RolloutRecorder
from deploy.runtime import ChunkRunner, Fault, SimulatedLatency
from tests.deploy.bundle_factory import ramp_bundle, state_obs

HZ = 50.0


def run_with_hook(bundle, n_ticks, **kwargs):
    """Tick a runner on states 100 * t + 50; returns its outputs and the (observed, start, arrival) of each chunk."""
    accepted, now = [], [0]
    runner = ChunkRunner(bundle, on_chunk=lambda observed, start: accepted.append((observed, start, now[0])),
                         **kwargs)
    outputs = []
    with runner:
        for t in range(n_ticks):
            now[0] = t
            action = runner.tick(state_obs(100 * t + 50))
            outputs.append(None if action is None else action[0])  # None: nothing commanded yet (startup)
    return np.array(outputs, dtype=object), accepted, runner.statistics


def planned(chunk, t):
    """The ramp model's action for tick t from chunk (observed, start, arrival): state(observed) + step."""
    observed, start, _ = chunk
    return 100 * observed + 50 + (t - start)


@pytest.mark.parametrize("kwargs, expected", [
    # sync: a chunk every 3 ticks, used in the tick it was computed in, step k at observed + k.
    (dict(mode="sync", n_action_steps=3), [(t, t, t) for t in range(0, 16, 3)]),
    # async in time (chunk 10, a request every 6 ticks, 4 ticks of latency): the first chunk starts when it lands
    # (the robot waited in the pose it was observed in); the next continues the plan, its first 4 actions skipped.
    (dict(mode="async", latency=SimulatedLatency(4 / HZ), n_action_steps=6, blend_ticks=0), [(0, 4, 4), (10, 10, 14)]),
])
def test_on_chunk_reports_the_tick_each_chunk_starts_at(tmp_path, kwargs, expected):
    bundle = ramp_bundle(tmp_path / "b", chunk_size=10, frequency_hz=HZ)
    outputs, accepted, stats = run_with_hook(bundle, 16, **kwargs)
    assert accepted == expected
    for t, output in enumerate(outputs):
        live = [c for c in accepted if c[2] <= t]
        assert output == (planned(live[-1], t) if live else None)  # None: startup, no command before a plan
    assert stats.skipped_actions == sum(arrival - start for _, start, arrival in accepted)


def test_on_chunk_after_a_hold_reports_the_shifted_start(tmp_path):
    # chunk 5, a new one every 3 ticks, 4 ticks of latency: every chunk after the first lands after the previous one
    # ran out; it resumes at its action for the tick the robot stopped, i.e. its step 0 is scheduled that much later.
    bundle = ramp_bundle(tmp_path / "b", chunk_size=5, n_action_steps=3, frequency_hz=HZ)
    outputs, accepted, stats = run_with_hook(bundle, 17, mode="async", latency=SimulatedLatency(4 / HZ),
                                             blend_ticks=2)
    # chunk(0) runs t4-8 and runs out at t9; chunk(7) lands at t11 resuming at its action 2: start 11 - 2 = 9.
    assert accepted == [(0, 4, 4), (7, 9, 11), (12, 14, 16)]
    for t, output in enumerate(outputs):
        live = [c for c in accepted if c[2] <= t]
        if live and t - live[-1][1] < 5:
            assert output == planned(live[-1], t)
    assert stats.held_ticks == 4 and stats.late_chunks == 2


def test_on_chunk_with_temporal_ensembling_matches_the_ensembled_ticks(tmp_path):
    # Ensembling adds each chunk's actions from the ones still due on: the same start + k schedule as chunk mode.
    bundle = ramp_bundle(tmp_path / "b", chunk_size=5, n_action_steps=1, frequency_hz=HZ, temporal_ensemble_coeff=0.0)
    outputs, accepted, _ = run_with_hook(bundle, 12, mode="async", latency=SimulatedLatency(2 / HZ), blend_ticks=0)
    assert accepted[0] == (0, 2, 2)  # the first chunk starts when it lands
    assert accepted[1:] == [(t, t, t + 2) for t in range(2, 10, 2)]  # a request whenever inference is free
    for t in range(2, 12):
        # coefficient 0: the plain mean of every accepted chunk's prediction for tick t.
        live = [planned(c, t) for c in accepted if c[2] <= t < c[1] + 5]
        np.testing.assert_allclose(float(outputs[t]), np.mean(live), rtol=1e-6)


def test_a_failing_on_chunk_is_a_fault_not_a_crash(tmp_path):
    bundle = ramp_bundle(tmp_path / "b", chunk_size=5, frequency_hz=HZ)

    def broken(observed, start):
        raise RuntimeError("recorder is full")

    with ChunkRunner(bundle, on_chunk=broken) as runner:
        outputs = [runner.tick(state_obs(50))[0] for _ in range(3)]
    assert outputs == [50, 51, 52]  # the plan runs as if nobody listened
    assert runner.faults == {Fault.INTERNAL_ERROR: 1}
    assert "on_chunk callback failed: RuntimeError: recorder is full" in runner.statistics.recent_faults[0][2]
    with pytest.raises(ValueError, match="on_chunk must be a callable"):
        ChunkRunner(bundle, on_chunk=42)


def test_recorder_places_used_chunks_at_their_schedule_and_marks_the_rest(tmp_path):
    rec = RolloutRecorder(("a", "b"), ("rad", "m"), control_hz=10.0, chunk_offset=1)
    rec.start(0, seed=7)
    chunk = lambda base: base + np.arange(4, dtype=np.float32)[:, None] * np.ones(2, np.float32)  # noqa: E731
    rec.chunk(0, 0, chunk(0))  # first chunk: lands at 2, starts there
    rec.chunk(0, 4, chunk(40))  # in time: starts at its observation tick
    rec.chunk(0, 6, chunk(60))  # stale: never accepted
    rec.chunk(0, 8, chunk(80))  # accepted at 10, after the episode (length 10) ended
    rec.accepted(0, 0, 2, 2)
    rec.accepted(0, 4, 4, 6)
    rec.accepted(0, 8, 8, 10)
    for t in range(12):
        # Ticks 0-1: the runner had nothing to command; the simulated driver held the measured pose.
        rec.tick(0, t, np.full(2, t, np.float32), held=False, no_command=t < 2)
    with pytest.raises(ValueError, match="no chunk computed then was recorded"):
        rec.accepted(0, 5, 5, 7)
    with pytest.raises(ValueError, match="must lie between"):
        rec.accepted(0, 4, 7, 6)
    rec.truncate({0: 10})
    out = rec.write(tmp_path / "rollouts")
    chunks = pq.read_table(out["chunks.parquet"]).to_pydict()
    # chunk_offset 1 dropped: 3 rows per chunk, steps 0-2.
    assert chunks["origin_tick"] == [0] * 3 + [4] * 3 + [6] * 3 + [8] * 3
    assert chunks["used"] == [True] * 6 + [False] * 6
    assert chunks["start_tick"] == [2] * 3 + [4] * 3 + [None] * 6
    assert chunks["arrival_tick"] == [2] * 3 + [6] * 3 + [None] * 6
    assert chunks["tick"] == [2, 3, 4, 4, 5, 6] + [None] * 6
    assert chunks["timestamp_s"] == [0.2, 0.3, 0.4, 0.4, 0.5, 0.6] + [None] * 6
    assert chunks["a"][:3] == [1.0, 2.0, 3.0] and chunks["a"][3:6] == [41.0, 42.0, 43.0]
    actions = pq.read_table(out["actions.parquet"]).to_pydict()
    assert len(actions["tick"]) == 10 and actions["no_command"] == [True] * 2 + [False] * 8
    meta = json.loads(out["rollouts.json"].read_text())
    assert meta["format_version"] == 3 and "no_command" in meta["columns"]["actions"] and set(meta["columns"]["chunks"]) >= {"origin_tick", "start_tick", "used"}
