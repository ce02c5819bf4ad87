"""Normalization statistics computed in one streaming pass while recording (meta/stats.json format).

Vectors: exact count/mean/std (Chan's parallel merge in float64), exact min/max, and quantiles from a
bounded uniform reservoir of rows (exact while the dataset has at most ``reservoir_size`` frames).
Images: an exact 256-bin histogram per channel over every pixel of every frame, so mean, std, min, max
and quantiles are exact; values are reported in [0, 1] with shape (3, 1, 1) like LeRobot.
Vectors also carry ``max_abs_delta``: the largest |x[t+1] - x[t]| between consecutive frames of one episode (times
fps, a speed); the exporter derives a bundle's default velocity limit from it. Each ``update`` is one episode.
"""

from __future__ import annotations

import copy
import io
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

QUANTILES: dict[str, float] = {"q01": 0.01, "q10": 0.10, "q50": 0.50, "q90": 0.90, "q99": 0.99}
STAT_NAMES = ("mean", "std", "min", "max", "count", *QUANTILES)
MAX_ABS_DELTA = "max_abs_delta"  # not a LeRobot statistic; readers that do not know it ignore it
DEFAULT_RESERVOIR_SIZE = 100_000


class VectorStats:
    """Running statistics of a (T, D) stream."""

    def __init__(self, dim: int, reservoir_size: int = DEFAULT_RESERVOIR_SIZE, seed: int = 0):
        self.dim = dim
        self.count = 0
        self.mean = np.zeros(dim, np.float64)
        self.m2 = np.zeros(dim, np.float64)
        self.min = np.full(dim, np.inf)
        self.max = np.full(dim, -np.inf)
        # None: unknown (restored from a state written before this statistic existed), never under-reported.
        self.max_abs_delta: np.ndarray | None = np.zeros(dim, np.float64)
        self.reservoir_size = reservoir_size
        # Grown on demand so small datasets do not pay for the full reservoir.
        self.reservoir = np.zeros((0, dim), np.float64)
        self.rng = np.random.default_rng(seed)

    def update(self, x: np.ndarray) -> None:
        """Add the frames of one episode (consecutive rows are consecutive frames: max_abs_delta reads them)."""
        x = np.asarray(x, np.float64).reshape(len(x), self.dim)
        n = len(x)
        if n == 0:
            return
        if self.max_abs_delta is not None and n > 1:
            self.max_abs_delta = np.maximum(self.max_abs_delta, np.abs(np.diff(x, axis=0)).max(0))
        batch_mean = x.mean(0)
        batch_m2 = ((x - batch_mean) ** 2).sum(0)
        total = self.count + n
        delta = batch_mean - self.mean
        self.mean = self.mean + delta * (n / total)
        self.m2 = self.m2 + batch_m2 + delta**2 * (self.count * n / total)
        self.min = np.minimum(self.min, x.min(0))
        self.max = np.maximum(self.max, x.max(0))
        self._reservoir_add(x)
        self.count = total

    def _reservoir_add(self, x: np.ndarray) -> None:
        # Algorithm R, vectorized: row t (0-based, over the whole stream) lands in slot t while the
        # reservoir fills, then replaces a uniform slot j < t+1 when j falls inside the reservoir.
        size = self.reservoir_size
        t = self.count + np.arange(len(x))
        needed = min(size, self.count + len(x))
        if needed > len(self.reservoir):
            grown = np.zeros((min(size, max(needed, 2 * len(self.reservoir))), self.dim), np.float64)
            grown[: len(self.reservoir)] = self.reservoir
            self.reservoir = grown
        fill = t < size
        self.reservoir[t[fill]] = x[fill]
        rest = np.flatnonzero(~fill)
        if len(rest):
            j = (self.rng.random(len(rest)) * (t[rest] + 1)).astype(np.int64)
            keep = j < size
            slots, rows = j[keep], rest[keep]
            # Later rows win on repeated slots, as in the sequential algorithm.
            _, last = np.unique(slots[::-1], return_index=True)
            chosen = len(slots) - 1 - last
            self.reservoir[slots[chosen]] = x[rows[chosen]]

    def result(self) -> dict[str, np.ndarray]:
        if self.count == 0:
            raise ValueError("no frames were recorded, statistics are undefined")
        sample = self.reservoir[: min(self.count, self.reservoir_size)]
        out = {
            "mean": self.mean,
            "std": np.sqrt(np.maximum(self.m2 / self.count, 0.0)),
            "min": self.min,
            "max": self.max,
            "count": np.array([self.count], np.int64),
        }
        qs = np.quantile(sample, list(QUANTILES.values()), axis=0)
        out.update({name: qs[i] for i, name in enumerate(QUANTILES)})
        if self.max_abs_delta is not None:
            out[MAX_ABS_DELTA] = self.max_abs_delta
        return out

    def state(self) -> dict[str, np.ndarray]:
        filled = min(self.count, self.reservoir_size)
        return {
            "kind": np.array("vector"),
            "count": np.array(self.count),
            "mean": self.mean,
            "m2": self.m2,
            "min": self.min,
            "max": self.max,
            "reservoir": self.reservoir[:filled],
            "reservoir_size": np.array(self.reservoir_size),
            "rng": np.array(json.dumps(self.rng.bit_generator.state)),
            **({} if self.max_abs_delta is None else {MAX_ABS_DELTA: self.max_abs_delta}),
        }

    @classmethod
    def from_state(cls, s: Mapping[str, np.ndarray]) -> VectorStats:
        obj = cls(int(s["mean"].shape[0]), int(s["reservoir_size"]))
        obj.count = int(s["count"])
        obj.mean, obj.m2, obj.min, obj.max = (np.array(s[k], np.float64) for k in ("mean", "m2", "min", "max"))
        obj.reservoir = np.array(s["reservoir"], np.float64).reshape(-1, obj.dim)
        # A recording resumed from an older state: the episodes before it were never measured.
        obj.max_abs_delta = np.array(s[MAX_ABS_DELTA], np.float64) if MAX_ABS_DELTA in s else None
        obj.rng.bit_generator.state = json.loads(str(s["rng"]))
        return obj


def _hist_quantile(hist: np.ndarray, q: float) -> float:
    # Same definition as np.quantile(method="linear") on the sorted values the histogram stands for.
    n = int(hist.sum())
    cdf = np.cumsum(hist)
    h = q * (n - 1)
    lo = int(np.floor(h))
    hi = min(lo + 1, n - 1)
    v_lo = int(np.searchsorted(cdf, lo, side="right"))
    v_hi = int(np.searchsorted(cdf, hi, side="right"))
    return v_lo + (h - lo) * (v_hi - v_lo)


class ImageStats:
    """Exact per-channel statistics of a (T, H, W, C) uint8 stream via 256-bin histograms."""

    def __init__(self, channels: int = 3):
        self.channels = channels
        self.hist = np.zeros((channels, 256), np.int64)
        self.frames = 0

    def update(self, frames: np.ndarray) -> None:
        frames = np.asarray(frames)
        if frames.dtype != np.uint8:
            raise ValueError(f"image statistics need uint8 frames, got {frames.dtype}")
        flat = frames.reshape(-1, self.channels)
        offsets = np.arange(self.channels, dtype=np.int64) * 256
        self.hist += np.bincount((flat + offsets).ravel(), minlength=256 * self.channels).reshape(
            self.channels, 256
        )
        self.frames += len(frames)

    def result(self) -> dict[str, np.ndarray]:
        if self.frames == 0:
            raise ValueError("no frames were recorded, statistics are undefined")
        values = np.arange(256, dtype=np.float64)
        n = self.hist.sum(1).astype(np.float64)
        mean = (self.hist * values).sum(1) / n
        var = (self.hist * (values - mean[:, None]) ** 2).sum(1) / n
        nonzero = self.hist > 0
        vmin = np.array([np.flatnonzero(row)[0] for row in nonzero], np.float64)
        vmax = np.array([np.flatnonzero(row)[-1] for row in nonzero], np.float64)

        def per_channel(x: np.ndarray) -> np.ndarray:
            return (np.asarray(x, np.float64) / 255.0).reshape(self.channels, 1, 1)

        out = {
            "mean": per_channel(mean),
            "std": per_channel(np.sqrt(var)),
            "min": per_channel(vmin),
            "max": per_channel(vmax),
            "count": np.array([self.frames], np.int64),
        }
        for name, q in QUANTILES.items():
            out[name] = per_channel([_hist_quantile(row, q) for row in self.hist])
        return out

    def state(self) -> dict[str, np.ndarray]:
        return {"kind": np.array("image"), "hist": self.hist, "frames": np.array(self.frames)}

    @classmethod
    def from_state(cls, s: Mapping[str, np.ndarray]) -> ImageStats:
        obj = cls(int(s["hist"].shape[0]))
        obj.hist = np.array(s["hist"], np.int64)
        obj.frames = int(s["frames"])
        return obj


class StatsAccumulator:
    """Statistics of every recorded feature, updated one episode at a time."""

    def __init__(self, shapes: Mapping[str, tuple[str, int]], reservoir_size: int = DEFAULT_RESERVOIR_SIZE, seed: int = 0):
        """``shapes`` maps a feature to ("vector", dim) or ("image", channels)."""
        self.stats: dict[str, VectorStats | ImageStats] = {}
        for i, (key, (kind, size)) in enumerate(shapes.items()):
            self.stats[key] = ImageStats(size) if kind == "image" else VectorStats(size, reservoir_size, seed + i)

    def update(self, episode: Mapping[str, np.ndarray], images: Mapping[str, ImageStats] | None = None) -> None:
        """Add one episode; ``images`` may carry that episode's already-computed image histograms."""
        for key, acc in self.stats.items():
            if images is not None and key in images and isinstance(acc, ImageStats):
                acc.hist += images[key].hist
                acc.frames += images[key].frames
            else:
                acc.update(episode[key])

    def result(self) -> dict[str, dict[str, np.ndarray]]:
        return {key: acc.result() for key, acc in self.stats.items()}

    def copy(self) -> StatsAccumulator:
        return copy.deepcopy(self)

    def to_npz_bytes(self) -> bytes:
        arrays = {f"{key}//{name}": value for key, acc in self.stats.items() for name, value in acc.state().items()}
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        return buf.getvalue()

    @classmethod
    def from_npz(cls, path: Path) -> StatsAccumulator:
        with np.load(path, allow_pickle=False) as data:
            grouped: dict[str, dict[str, np.ndarray]] = {}
            for name in data.files:
                key, field = name.rsplit("//", 1)
                grouped.setdefault(key, {})[field] = data[name]
        obj = cls({})
        for key, s in grouped.items():
            obj.stats[key] = ImageStats.from_state(s) if str(s["kind"]) == "image" else VectorStats.from_state(s)
        return obj


def episode_stats(kinds: Mapping[str, str], episode: Mapping[str, np.ndarray]) -> dict[str, VectorStats | ImageStats]:
    """Exact statistics of one episode (stored per episode in meta/episodes like LeRobot does)."""
    out: dict[str, VectorStats | ImageStats] = {}
    for key, kind in kinds.items():
        x = episode[key]
        if kind == "image":
            acc: VectorStats | ImageStats = ImageStats(x.shape[-1])
        else:
            x = np.asarray(x, np.float64).reshape(len(x), -1)
            acc = VectorStats(x.shape[1], reservoir_size=len(x))
        acc.update(x)
        out[key] = acc
    return out


def stats_to_json(stats: Mapping[str, Mapping[str, np.ndarray]]) -> dict[str, dict[str, Any]]:
    return {key: {name: np.asarray(v).tolist() for name, v in s.items()} for key, s in stats.items()}


def stats_from_json(obj: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, np.ndarray]]:
    return {key: {name: np.asarray(v) for name, v in s.items()} for key, s in obj.items()}
