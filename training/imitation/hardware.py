"""Where training runs: device choice, CPU thread count and the mixed-precision context."""

from __future__ import annotations

import contextlib
import os

import torch


def choose_device(name: str) -> torch.device:
    """"auto": the first CUDA device when there is one, else the CPU; explicit names are checked."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={name!r} but CUDA is not available on this machine (use device=auto or cpu)")
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
    try:
        busy = os.getloadavg()[0]
    except OSError:
        busy = 0.0
    return max(1, min(cores, int(cores - busy + 0.5)))


def autocast(device: torch.device, enabled: bool):
    """bfloat16 autocast on CUDA when enabled (float16 on GPUs without bf16); a no-op on the CPU."""
    if not enabled or device.type != "cuda":
        return contextlib.nullcontext()
    return torch.autocast(device_type="cuda", dtype=amp_dtype(device))


def amp_dtype(device: torch.device) -> torch.dtype:
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def needs_grad_scaler(device: torch.device, enabled: bool) -> bool:
    """float16 autocast needs loss scaling; bfloat16 has float32's range and does not."""
    return enabled and device.type == "cuda" and amp_dtype(device) is torch.float16
