"""Chunk scheduling, chunk offsets, observation history and temporal ensembling against hand-computed sequences."""

import functools

import numpy as np
import pytest

from deploy.runtime import ChunkRunner, SimulatedLatency
from tests.deploy.bundle_factory import ramp_bundle, state_obs


# Exact sequences: inference inline without a deadline, so a loaded test machine cannot turn a slow inference into a
# late_chunk hold (the deadline has its own tests in test_chunk_runner_deadline.py).
Runner = functools.partial(ChunkRunner, sync_deadline_s=None)

# The ramp model returns actions[i] = state + i, so with state = 100 * tick the action a runner outputs at tick t
# from a chunk requested at tick s is 100 * s + (t - s) (+ chunk_offset).


def run(runner, states, image=False):
    """The commands as rows; NaN rows where tick() returned None (no command)."""
    actions = [runner.tick(state_obs(x, image=image)) for x in states]
    return np.array([np.full(2, np.nan, np.float32) if a is None else a for a in actions])


def test_new_chunk_every_n_action_steps(tmp_path):
    bundle = ramp_bundle(tmp_path / "b", chunk_size=5, n_action_steps=3, with_image=True)
    with Runner(bundle) as runner:
        actions = run(runner, [100 * t for t in range(9)], image=True)
    expected = [0, 1, 2, 300, 301, 302, 600, 601, 602]
    np.testing.assert_array_equal(actions, np.repeat(np.array(expected, np.float32)[:, None], 2, axis=1))
    assert runner.statistics.requests == 3 and runner.statistics.held_ticks == 0 and not runner.faults


def test_n_action_steps_override_and_chunk_offset(tmp_path):
    # chunk_offset 2: the action for the observation's own tick is chunk[2].
    bundle = ramp_bundle(tmp_path / "b", chunk_size=6, chunk_offset=2, n_action_steps=4)
    with Runner(bundle, n_action_steps=2) as runner:
        actions = run(runner, [100 * t for t in range(6)])[:, 0]
    np.testing.assert_array_equal(actions, [2, 3, 202, 203, 402, 403])
    with pytest.raises(ValueError, match=r"n_action_steps must be an integer in \[1, 4\]"):
        ChunkRunner(bundle, n_action_steps=5)


def test_observation_history_is_stacked_oldest_first_and_padded(tmp_path):
    # Two-step model: actions[i] = 1000 * state[t-1] + state[t] + i.
    bundle = ramp_bundle(tmp_path / "b", chunk_size=4, n_action_steps=2, n_obs_steps=2, with_image=True)
    states = [1, 2, 3, 4, 5, 6]
    with Runner(bundle) as runner:
        actions = run(runner, states, image=True)[:, 0]
    # tick 0: history padded with the first observation -> 1000*1 + 1; tick 2: 1000*2 + 3; tick 4: 1000*4 + 5.
    np.testing.assert_array_equal(actions, [1001, 1002, 2003, 2004, 4005, 4006])


def test_rejected_observation_is_replaced_by_the_last_good_one_in_the_history(tmp_path):
    bundle = ramp_bundle(tmp_path / "b", chunk_size=4, n_action_steps=2, n_obs_steps=2)
    with Runner(bundle) as runner:
        out = [runner.tick(state_obs(x)) for x in (1, 2, 3)]
        out.append(runner.tick(state_obs(np.nan)))  # tick 3 rejected: history becomes [3, 3]
        out.append(runner.tick(state_obs(5)))  # tick 4 requests with history [3, 5]
    np.testing.assert_array_equal(np.array(out)[:, 0], [1001, 1002, 2003, 2003, 3005])


def ensembled_reference(chunks, coeff, tick):
    """ACT temporal ensembling written out directly: chunks = [(origin, arrival, actions)], oldest first."""
    preds = [actions[tick - origin] for origin, arrival, actions in chunks
             if arrival <= tick and 0 <= tick - origin < len(actions)]
    weights = np.exp(-coeff * np.arange(len(preds)))
    return (weights[:, None] * np.array(preds)).sum(0) / weights.sum()


def ramp_chunk(origin, state_of, chunk_size, dim=2):
    return np.array([[state_of(origin) + i] * dim for i in range(chunk_size)], np.float64)


def test_temporal_ensembling_matches_act_weights(tmp_path):
    coeff, chunk = 0.5, 4
    bundle = ramp_bundle(tmp_path / "b", chunk_size=chunk, n_action_steps=1, temporal_ensemble_coeff=coeff)
    state_of = lambda t: 10.0 * t + (t % 3) * 7.0  # not linear, so predictions for a tick disagree
    with Runner(bundle) as runner:
        actions = run(runner, [state_of(t) for t in range(10)])
    chunks = [(s, s, ramp_chunk(s, state_of, chunk)) for s in range(10)]
    for t in range(10):
        np.testing.assert_allclose(actions[t], ensembled_reference(chunks, coeff, t), rtol=1e-6)
    # Hand check of tick 2: predictions 0+2, 17+1, 34+0 (oldest first), weights 1, e^-0.5, e^-1.
    w = np.exp(-0.5 * np.arange(3))
    assert actions[2][0] == pytest.approx((w @ [2.0, 18.0, 34.0]) / w.sum(), rel=1e-6)
    assert runner.statistics.requests == 10


def test_temporal_ensembling_with_simulated_latency_and_jitter(tmp_path):
    coeff, chunk, hz = 0.2, 8, 50.0
    latency = SimulatedLatency(latency_s=0.05, jitter_s=0.03, seed=3)  # 1..4 ticks
    bundle = ramp_bundle(tmp_path / "b", chunk_size=chunk, n_action_steps=1, temporal_ensemble_coeff=coeff,
                         frequency_hz=hz)
    state_of = lambda t: 10.0 * t + (t % 4) * 3.0
    with Runner(bundle, mode="async", latency=latency) as runner:
        actions = run(runner, [state_of(t) for t in range(30)])
    # Reproduce the schedule: one inference in flight; a new one is requested the tick the previous one lands.
    rng = np.random.default_rng(latency.seed)
    chunks, origin = [], 0
    while origin < 30:
        arrival = origin + latency.delay_ticks(rng, hz)
        chunks.append((origin, arrival, ramp_chunk(origin, state_of, chunk)))
        origin = arrival
    # The robot held still until the first chunk landed: that chunk's plan starts on arrival, at its action 0.
    first = chunks[0][1]
    chunks[0] = (first, first, chunks[0][2])
    assert len({a - o for o, a, _ in chunks}) > 1, "the jitter should vary the delay"
    np.testing.assert_array_equal(actions[:first], np.nan)  # startup: no command until the first chunk
    for t in range(first, 30):
        np.testing.assert_allclose(actions[t], ensembled_reference(chunks, coeff, t), rtol=1e-6)
    assert runner.statistics.startup_ticks == first and runner.statistics.held_ticks == 0
    assert runner.statistics.no_command_ticks == first
