"""max_abs_delta in the recorder's statistics: the largest frame-to-frame step within an episode, never across two
episodes, carried through a resumable recording's saved state, and unknown (absent) after a resume from a state
written before it existed."""

from __future__ import annotations

import io

import numpy as np

from training.datasets.stats import MAX_ABS_DELTA, StatsAccumulator, VectorStats, episode_stats


def test_largest_step_within_episodes_not_across_them():
    acc = StatsAccumulator({"action": ("vector", 2)})
    acc.update({"action": np.array([[0.0, 0.0], [0.5, -0.1], [0.7, -0.4]])})
    # The second episode starts far away: that jump is a reset, not a motion.
    acc.update({"action": np.array([[10.0, 10.0], [10.2, 10.9]])})
    acc.update({"action": np.array([[3.0, 3.0]])})  # one frame: no step at all
    np.testing.assert_allclose(acc.result()["action"][MAX_ABS_DELTA], [0.5, 0.9])


def test_per_episode_statistics_carry_it_too():
    stats = episode_stats({"observation.state": "vector"}, {"observation.state": np.array([[1.0], [0.25], [0.5]])})
    np.testing.assert_allclose(stats["observation.state"].result()[MAX_ABS_DELTA], [0.75])


def test_saved_state_round_trip_and_old_states_report_it_unknown():
    acc = StatsAccumulator({"action": ("vector", 1)})
    acc.update({"action": np.array([[0.0], [2.0]])})
    restored = StatsAccumulator.from_npz(io.BytesIO(acc.to_npz_bytes()))
    restored.update({"action": np.array([[0.0], [1.0]])})
    np.testing.assert_allclose(restored.result()["action"][MAX_ABS_DELTA], [2.0])

    old_state = {k: v for k, v in acc.stats["action"].state().items() if k != MAX_ABS_DELTA}
    old = VectorStats.from_state(old_state)
    old.update(np.array([[0.0], [0.1]]))
    # The episodes before the resume were never measured: reporting 0.1 would under-state the data's speed.
    assert MAX_ABS_DELTA not in old.result()
