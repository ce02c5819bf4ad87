"""Process groups for data-parallel training: which process this is (torchrun, or a SLURM job started by submitit),
the few collectives the trainer needs, and single-process no-ops so that one code path serves both."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Sequence

import numpy as np
import torch
import torch.distributed as dist

# Rank 0 evaluates in simulation while the other ranks wait at a barrier; the collective timeout must outlast that.
TIMEOUT = timedelta(hours=2)
# Hydra overrides for ranks > 0: only rank 0 keeps Hydra's run directory, config copy and log file (each rank resolves
# ${now:...} itself, so their run directories could differ by a second); the others learn rank 0's run dir.
WORKER_HYDRA_OVERRIDES = ("hydra.run.dir=.", "hydra.output_subdir=null", "hydra/job_logging=none",
                          "hydra/hydra_logging=none")


@dataclass(frozen=True)
class DistributedContext:
    """This process's place in the job; every method is a no-op (or the identity) in a single-process run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False  # this context created the process group, so it destroys it

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def broadcast_object(self, value: Any) -> Any:
        """Rank 0's `value` on every rank."""
        if not self.enabled:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def all_gather_object(self, value: Any) -> list[Any]:
        """Every rank's `value`, in rank order."""
        if not self.enabled:
            return [value]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, value)
        return out

    def mean_over_ranks(self, values: Sequence[float], device: torch.device) -> list[float]:
        """Element-wise mean of per-rank numbers (float64, so that the mean of equal values is exact)."""
        if not self.enabled:
            return [float(v) for v in values]
        # NCCL only reduces device tensors; gloo only CPU ones.
        where = device if dist.get_backend() == "nccl" else torch.device("cpu")
        tensor = torch.tensor([float(v) for v in values], dtype=torch.float64, device=where)
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return (tensor / self.world_size).tolist()

    def rank_seed(self, seed: int, *more: int) -> int:
        """A seed for this rank's random streams (dropout, noise) derived from the run seed (and e.g. a step)."""
        entropy = [int(seed), 0xD15, self.rank, *(int(m) for m in more)]
        return int(np.random.SeedSequence(entropy).generate_state(1)[0])

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def _int_env(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError as err:
        raise ValueError(f"environment variable {name}={value!r} is not an integer") from err


def _export_submitit_environment() -> None:
    """Under a submitit job with several tasks (hydra-submitit-launcher, tasks_per_node > 1), set torch's env://
    variables (RANK, WORLD_SIZE, MASTER_ADDR, ...) from the SLURM job, as torchrun would have."""
    if not os.environ.get("SUBMITIT_EXECUTOR") or "WORLD_SIZE" in os.environ:
        return
    from submitit import JobEnvironment
    from submitit.helpers import TorchDistributedEnvironment

    if JobEnvironment().num_tasks > 1:
        # Devices are chosen by local rank (cuda:<LOCAL_RANK>), so every task keeps seeing all of the node's GPUs.
        TorchDistributedEnvironment().export(set_cuda_visible_devices=False)


def launched_world_size() -> int:
    """How many processes the launcher started for this job (1 for a plain `python scripts/train.py`)."""
    _export_submitit_environment()
    return _int_env("WORLD_SIZE", 1)


def launched_rank() -> int:
    return _int_env("RANK", 0)


def worker_hydra_overrides() -> list[str]:
    """Extra Hydra command-line overrides for this process (see WORKER_HYDRA_OVERRIDES); none on rank 0."""
    return list(WORKER_HYDRA_OVERRIDES) if launched_world_size() > 1 and launched_rank() > 0 else []


def setup(device_type: str) -> DistributedContext:
    """Join the job's process group when a launcher started several processes (NCCL on CUDA, gloo otherwise);
    a single-process context otherwise. Reuses a process group the caller already initialized."""
    world_size = launched_world_size()
    if world_size <= 1:
        return DistributedContext()
    rank, local_rank = launched_rank(), _int_env("LOCAL_RANK", 0)
    if not 0 <= rank < world_size:
        raise ValueError(f"RANK={rank} is outside 0..WORLD_SIZE-1={world_size - 1}")
    if dist.is_initialized():
        if dist.get_world_size() != world_size:
            raise ValueError(f"a process group of {dist.get_world_size()} processes is initialized, but "
                             f"WORLD_SIZE={world_size}")
        return DistributedContext(dist.get_rank(), world_size, local_rank, owns_group=False)
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        if name not in os.environ:
            raise ValueError(f"WORLD_SIZE={world_size} but {name} is not set: start multi-process training with "
                             "torchrun --nproc_per_node=N scripts/train.py ... (or a submitit launcher)")
    if device_type == "cuda":
        torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl" if device_type == "cuda" else "gloo", rank=rank, world_size=world_size,
                            timeout=TIMEOUT)
    return DistributedContext(rank, world_size, local_rank, owns_group=True)
