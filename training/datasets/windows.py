"""Torch Dataset of training windows (observation history, action chunks, *_is_pad) over a LeRobot v3 dataset."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, RandomSampler, SequentialSampler
from torch.utils.data._utils.collate import default_collate

from .format import SchemaMismatchError, is_visual
from .image_cache import load_images
from .reader import DatasetMeta, load_numeric


class WindowDataset(torch.utils.data.Dataset):
    """One sample per frame of the selected episodes; windowed keys gather frames at ``frame + delta``.

    ``delta_indices`` maps feature keys to frame offsets (LeRobot style), e.g. {"observation.state": [-1, 0],
    "action": list(range(100))}. Offsets falling outside the episode repeat the edge frame and are flagged
    in ``<key>_is_pad``. Cameras come out uint8 (len(deltas), C, H, W) from a decode-once cache.
    ``extra_keys`` are returned for the current frame only. ``image_cache_dir`` overrides where decoded frames are
    cached (see image_cache.cache_root). Indexing with a list of sample ids returns a
    whole stacked batch gathered with vectorized numpy indexing; ``make_dataloader`` feeds it batches of
    ids so the per-sample Python cost is negligible (a plain ``DataLoader(ds, batch_size=...)`` also works,
    one sample at a time).
    """

    def __init__(self, dataset: str | Path | DatasetMeta, delta_indices: Mapping[str, Sequence[int]],
                 episodes: Sequence[int] | None = None, extra_keys: Sequence[str] = (), in_memory_images: bool = False,
                 image_cache_dir: str | Path | None = None):
        self.meta = dataset if isinstance(dataset, DatasetMeta) else DatasetMeta(dataset)
        meta = self.meta
        if meta.total_episodes == 0:
            raise ValueError(f"dataset {meta.root} holds no episodes")
        wanted = [*delta_indices, *extra_keys]
        unknown = [k for k in wanted if k not in meta.features]
        if unknown:
            raise SchemaMismatchError(f"keys {unknown} are not features of dataset {meta.root}; it has {sorted(meta.features)}")
        for key, deltas in delta_indices.items():
            if len(deltas) == 0 or any(int(d) != d for d in deltas):
                raise ValueError(f"delta indices for {key!r} must be a non-empty list of integers, got {list(deltas)}")
        self.delta_indices = {k: np.asarray(v, np.int64) for k, v in delta_indices.items()}
        self.extra_keys = list(extra_keys)
        numeric = [k for k in dict.fromkeys(wanted) if not is_visual(meta.features[k])]
        cameras = [k for k in dict.fromkeys(wanted) if is_visual(meta.features[k])]
        loaded = load_numeric(meta, list(dict.fromkeys([*numeric, "episode_index", "frame_index", "index"])))
        self._arrays: dict[str, np.ndarray] = {}
        for k in numeric:
            x = loaded[k]
            self._arrays[k] = np.ascontiguousarray(x if x.dtype == np.bool_ else x.astype(np.float32, copy=False))
        for k in cameras:
            self._arrays[k] = load_images(meta, k, in_memory=in_memory_images, cache_dir=image_cache_dir)
        self._episode_index = loaded["episode_index"].astype(np.int64)
        self._frame_index = loaded["frame_index"].astype(np.int64)
        self._index = loaded["index"].astype(np.int64)
        starts = meta.episode_column("dataset_from_index").astype(np.int64)
        ends = meta.episode_column("dataset_to_index").astype(np.int64)
        self._row_start = starts[self._episode_index]
        self._row_end = ends[self._episode_index]
        selected = range(meta.total_episodes) if episodes is None else list(episodes)
        bad = [e for e in selected if not 0 <= e < meta.total_episodes]
        if bad:
            raise IndexError(f"episodes {bad} out of range: dataset has {meta.total_episodes}")
        self.episodes = list(selected)
        self._rows = np.concatenate([np.arange(starts[e], ends[e]) for e in self.episodes]) if self.episodes else np.zeros(0, np.int64)
        # Keys sharing one delta list share one gather-index computation.
        self._groups: dict[tuple[int, ...], list[str]] = {}
        for k, d in self.delta_indices.items():
            self._groups.setdefault(tuple(d.tolist()), []).append(k)

    def __len__(self) -> int:
        return len(self._rows)

    def get_batch(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        """Stacked samples for ``indices`` (each key gains a leading batch axis)."""
        indices = np.asarray(indices, np.int64)
        if indices.size and (indices.min() < -len(self) or indices.max() >= len(self)):
            raise IndexError(f"sample ids {indices.min()}..{indices.max()} out of range for {len(self)} samples")
        rows = self._rows[indices]
        start, end = self._row_start[rows], self._row_end[rows]
        out: dict[str, torch.Tensor] = {}
        for deltas, keys in self._groups.items():
            query = rows[:, None] + np.asarray(deltas, np.int64)[None, :]
            pad = (query < start[:, None]) | (query >= end[:, None])
            query = np.clip(query, start[:, None], end[:, None] - 1)
            pad_t = torch.from_numpy(pad)
            for k in keys:
                out[k] = torch.from_numpy(self._arrays[k][query])
                out[f"{k}_is_pad"] = pad_t
        for k in self.extra_keys:
            if k not in out:
                out[k] = torch.from_numpy(np.asarray(self._arrays[k][rows]))
        out["episode_index"] = torch.from_numpy(self._episode_index[rows])
        out["frame_index"] = torch.from_numpy(self._frame_index[rows])
        out["index"] = torch.from_numpy(self._index[rows])
        return out

    def __getitem__(self, i) -> dict[str, torch.Tensor]:
        if isinstance(i, (int, np.integer)):
            return {k: v[0] for k, v in self.get_batch([int(i)]).items()}
        return self.get_batch(i)


class _BatchIds(torch.utils.data.Sampler):
    """Yields lists of sample ids, so the DataLoader fetches whole batches through ``dataset[ids]``."""

    def __init__(self, sampler: torch.utils.data.Sampler, batch_size: int, drop_last: bool):
        self.batches = torch.utils.data.BatchSampler(sampler, batch_size, drop_last)

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def collate_windows(batch):
    """Collate for WindowDataset: stacked batches pass through, lists of samples are stacked."""
    if isinstance(batch, Mapping):
        return dict(batch)
    return default_collate(batch)


def make_dataloader(dataset: WindowDataset, batch_size: int, shuffle: bool = True, seed: int = 0,
                    num_workers: int = 0, drop_last: bool = True, pin_memory: bool = False) -> DataLoader:
    """DataLoader that draws whole batches through the vectorized ``dataset[ids]`` path (seeded shuffling)."""
    generator = torch.Generator().manual_seed(seed)
    sampler = RandomSampler(dataset, generator=generator) if shuffle else SequentialSampler(dataset)
    # batch_size=None turns off per-sample collation: each sampler item is a list of ids fetched at once.
    return DataLoader(dataset, batch_size=None, sampler=_BatchIds(sampler, batch_size, drop_last),
                      num_workers=num_workers, collate_fn=collate_windows, pin_memory=pin_memory,
                      persistent_workers=num_workers > 0)
