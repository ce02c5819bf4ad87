"""meta/stats.json against numpy, the bounded reservoir, and the persisted running state."""

import numpy as np
import pytest
from dataset_test_utils import FEATURES, concat, make_episode

from training.datasets import DatasetMeta, DatasetWriter
from training.datasets.stats import QUANTILES, ImageStats, StatsAccumulator, VectorStats


def test_stats_json_matches_numpy(tmp_path):
    rng = np.random.default_rng(5)
    episodes = [make_episode(rng, n) for n in (30, 11, 17)]
    with DatasetWriter.create(tmp_path / "ds", 10, FEATURES, commit_every=2) as writer:
        for ep in episodes:
            writer.add_episode(ep, "t")
    stats = DatasetMeta(tmp_path / "ds").stats
    for key in ("observation.state", "observation.environment_state", "action", "next.reward", "next.done"):
        x = concat(episodes, key).astype(np.float64).reshape(58, -1)
        s = stats[key]
        np.testing.assert_allclose(s["mean"], x.mean(0), rtol=1e-10, atol=1e-12, err_msg=key)
        np.testing.assert_allclose(s["std"], x.std(0), rtol=1e-10, atol=1e-12, err_msg=key)
        np.testing.assert_array_equal(s["min"], x.min(0))
        np.testing.assert_array_equal(s["max"], x.max(0))
        assert s["count"].tolist() == [58]
        for name, q in QUANTILES.items():
            np.testing.assert_allclose(s[name], np.quantile(x, q, axis=0), rtol=1e-12, err_msg=f"{key} {name}")
    pixels = concat(episodes, "observation.images.top").reshape(-1, 3).astype(np.float64) / 255
    s = stats["observation.images.top"]
    assert s["mean"].shape == (3, 1, 1) and s["q50"].shape == (3, 1, 1)
    np.testing.assert_allclose(s["mean"].ravel(), pixels.mean(0), rtol=1e-10)
    np.testing.assert_allclose(s["std"].ravel(), pixels.std(0), rtol=1e-9)
    np.testing.assert_allclose(s["min"].ravel(), pixels.min(0))
    np.testing.assert_allclose(s["max"].ravel(), pixels.max(0))
    for name, q in QUANTILES.items():
        np.testing.assert_allclose(s[name].ravel(), np.quantile(pixels, q, axis=0), rtol=1e-12, err_msg=name)
    assert s["count"].tolist() == [58]  # frames, like LeRobot
    assert np.all((s["min"] >= 0) & (s["max"] <= 1))
    # The stats state accounts for every frame, so an append continues the same stream.
    stats_index = stats["index"]
    assert stats_index["max"].tolist() == [57]


def test_reservoir_bounds_memory_and_estimates_quantiles():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40_000, 2)) * [1.0, 3.0]
    acc = VectorStats(2, reservoir_size=4_000, seed=1)
    for chunk in np.array_split(x, 37):
        acc.update(chunk)
    assert acc.reservoir.shape == (4_000, 2)
    out = acc.result()
    np.testing.assert_allclose(out["mean"], x.mean(0), atol=1e-12)
    np.testing.assert_allclose(out["std"], x.std(0), rtol=1e-10)
    # A uniform 4k sample: q50 within a few standard errors (sd ~ 1.25 * sigma / sqrt(n) ~ 0.02 * sigma).
    scale = np.array([1.0, 3.0])
    assert np.all(np.abs(out["q50"] - np.quantile(x, 0.5, axis=0)) < 0.1 * scale)
    assert np.all(np.abs(out["q10"] - np.quantile(x, 0.1, axis=0)) < 0.1 * scale)
    # The sample is uniform over the stream: late rows are as present as early ones.
    late = np.isin(acc.reservoir[:, 0], x[20_000:, 0]).mean()
    assert 0.4 < late < 0.6


def test_running_state_round_trip(tmp_path):
    rng = np.random.default_rng(2)
    acc = StatsAccumulator({"v": ("vector", 3), "img": ("image", 3)}, reservoir_size=50, seed=4)
    episodes = [{"v": rng.normal(size=(40, 3)), "img": rng.integers(0, 256, (40, 4, 4, 3), dtype=np.uint8)} for _ in range(4)]
    acc.update(episodes[0])
    acc.update(episodes[1])
    (tmp_path / "s.npz").write_bytes(acc.to_npz_bytes())
    restored = StatsAccumulator.from_npz(tmp_path / "s.npz")
    for ep in episodes[2:]:
        acc.update(ep)
        restored.update(ep)
    a, b = acc.result(), restored.result()
    for key in a:
        for name in a[key]:
            np.testing.assert_array_equal(a[key][name], b[key][name], err_msg=f"{key} {name}")


def test_image_stats_reject_float_frames():
    with pytest.raises(ValueError, match="uint8"):
        ImageStats().update(np.zeros((1, 2, 2, 3), np.float32))
