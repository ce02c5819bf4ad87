"""Where training runs: device choice, CPU thread count and the mixed-precision context."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import torch


def choose_device(name: str, local_rank: int | None = None) -> torch.device:
    """"auto": CUDA when there is a GPU, else Apple's MPS, else the CPU; explicit names are checked.

    With a local_rank (torchrun), every process takes the GPU of its local rank, whatever index was configured.
    """
    if name == "auto":
        if torch.cuda.is_available():
            name = "cuda"
        elif torch.backends.mps.is_available():
            name = "mps"
        else:
            name = "cpu"
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={name!r} but CUDA is not available on this machine (use device=auto or cpu)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device={name!r} but MPS (Apple GPU) is not available on this machine "
                         "(use device=auto or cpu)")
    if device.type == "cuda" and local_rank is not None:
        return torch.device("cuda", local_rank)
    return device


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def choose_threads(requested: int | None) -> int:
    """Intra-op threads for CPU training: as requested, else one per core that is idle right now.

    Why not torch's default (all cores): OpenMP worker threads spin-wait at every parallel region, and on a machine
    whose cores are busy with other processes a waiting thread loses its time slice. On this project's shared 2-core
    CPU, ACT training steps ran 10-20x slower with 2 threads than with 1 while other jobs were running.
    """
    if requested is not None:
        return int(requested)
    cores = available_cores()
    return max(1, min(cores, int(cores - busy_cores() + 0.5)))


def busy_cores(interval_s: float = 0.5) -> float:
    """How many cores other work keeps busy right now: the machine's CPU time over `interval_s` (from /proc/stat),
    else the 1-minute load average. The load average lags by a minute: right after this process recorded demos on
    every core it still reads "all busy", and a quick start then trained on one thread of an idle machine."""
    def totals() -> tuple[float, float] | None:
        try:
            fields = [float(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        except (OSError, ValueError):
            return None
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
        return sum(fields), idle

    before = totals()
    if before is not None:
        time.sleep(interval_s)
        after = totals()
        if after is not None and after[0] > before[0]:
            busy_share = 1.0 - (after[1] - before[1]) / (after[0] - before[0])
            return busy_share * (os.cpu_count() or 1)
    try:
        return os.getloadavg()[0]
    except OSError:
        return 0.0


AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def amp_dtype(device: torch.device, enabled: bool, name: str = "auto") -> torch.dtype | None:
    """The autocast dtype of a run, or None for float32.

    "auto": bfloat16 on CUDA (float16 on GPUs without bf16) and float32 elsewhere, since CPU autocast is slower than
    float32 for these small networks; "bf16" / "fp16" ask for that dtype on any device (CPU and MPS included).
    """
    if not enabled:
        return None
    if name == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if name not in AMP_DTYPES:
        raise ValueError(f"amp_dtype must be one of {['auto', *AMP_DTYPES]}, got {name!r}")
    if name == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError("amp_dtype=bf16 but this GPU has no bfloat16 support; use amp_dtype=fp16 or auto")
    return AMP_DTYPES[name]


def autocast(device: torch.device, dtype: torch.dtype | None):
    """Mixed-precision context for the forward pass; a no-op for float32 (dtype None)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def grad_scaler(device: torch.device, dtype: torch.dtype | None) -> torch.amp.GradScaler | None:
    """float16 autocast needs loss scaling (its range is small); bfloat16 has float32's range and does not."""
    return torch.amp.GradScaler(device.type) if dtype is torch.float16 else None
