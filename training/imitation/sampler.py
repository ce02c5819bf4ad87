"""Shuffled training batches as a pure function of (seed, batch number), so a resumed run sees the same data order."""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from training.datasets import WindowDataset, collate_windows


def epoch_seed(seed: int, epoch: int) -> int:
    return int(np.random.SeedSequence([int(seed), int(epoch)]).generate_state(1)[0])


class ResumableBatchSampler(Sampler):
    """Endless lists of sample ids: epoch e is a permutation drawn from (seed, e), cut into full batches.

    Batch k of the run is batch k % batches_per_epoch of epoch k // batches_per_epoch, so starting at `start_batch`
    (the number of batches a run has consumed) continues exactly where an interrupted run stopped, whatever the
    DataLoader had prefetched. The last incomplete batch of an epoch is dropped.
    """

    def __init__(self, num_samples: int, batch_size: int, seed: int, start_batch: int = 0):
        if batch_size > num_samples:
            raise ValueError(f"batch_size={batch_size} is larger than the {num_samples} training samples")
        self.num_samples = int(num_samples)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.start_batch = int(start_batch)

    @property
    def batches_per_epoch(self) -> int:
        return self.num_samples // self.batch_size

    def position(self, batch: int) -> tuple[int, int]:
        """(epoch, batch within the epoch) of run batch number `batch`."""
        return divmod(int(batch), self.batches_per_epoch)

    def __iter__(self) -> Iterator[list[int]]:
        epoch, index = self.position(self.start_batch)
        while True:
            generator = torch.Generator().manual_seed(epoch_seed(self.seed, epoch))
            order = torch.randperm(self.num_samples, generator=generator).tolist()
            for i in range(index, self.batches_per_epoch):
                yield order[i * self.batch_size : (i + 1) * self.batch_size]
            epoch, index = epoch + 1, 0


class RankShard(Sampler):
    """This rank's contiguous share of every global batch of a ResumableBatchSampler (data-parallel training).

    Not torch's DistributedSampler: that one shards whole epochs per rank, so the ranks together would not see the
    batches a single process sees. Splitting each global batch instead makes N processes with a global batch of B
    compute the same gradient (DDP averages the per-rank means) as one process with batch B, and resuming at batch k
    stays exact for every rank.
    """

    def __init__(self, batches: ResumableBatchSampler, rank: int, world_size: int):
        if batches.batch_size % world_size:
            raise ValueError(f"batch_size={batches.batch_size} (the global batch) must be divisible by the "
                             f"{world_size} training processes")
        self.batches = batches
        self.per_rank = batches.batch_size // world_size
        self.offset = rank * self.per_rank

    def __iter__(self) -> Iterator[list[int]]:
        for ids in self.batches:
            yield ids[self.offset : self.offset + self.per_rank]


def make_training_loader(dataset: WindowDataset, batch_size: int, seed: int, start_batch: int,
                         num_workers: int = 0, pin_memory: bool = False, rank: int = 0,
                         world_size: int = 1) -> tuple[DataLoader, ResumableBatchSampler]:
    """Endless DataLoader of whole batches (fetched through WindowDataset's vectorized dataset[ids] path), and the
    sampler that tells the run's data position. With world_size > 1, batch_size is the global batch and this rank
    loads its share of it."""
    sampler = ResumableBatchSampler(len(dataset), batch_size, seed, start_batch)
    # An explicit generator: otherwise creating the iterator draws its worker base seed from torch's global RNG,
    # which would shift the training RNG stream of a resumed run against an uninterrupted one.
    generator = torch.Generator().manual_seed(int(np.random.SeedSequence([int(seed), 0xDA7A]).generate_state(1)[0]))
    batches = sampler if world_size == 1 else RankShard(sampler, rank, world_size)
    loader = DataLoader(dataset, batch_size=None, sampler=batches, num_workers=num_workers, collate_fn=collate_windows,
                        pin_memory=pin_memory, generator=generator, persistent_workers=False)
    return loader, sampler


def validation_batches(dataset: WindowDataset, batch_size: int, max_batches: int) -> list[list[int]]:
    """Fixed, evenly spread sample ids for the validation loss (the same batches at every evaluation)."""
    n = len(dataset)
    count = min(n, batch_size * max_batches)
    ids = np.linspace(0, n - 1, count).round().astype(np.int64).tolist()
    return [ids[i : i + batch_size] for i in range(0, len(ids), batch_size)]
