"""Check a torch device name from a config (format and presence on this machine) before any work starts."""

from __future__ import annotations

import re

# "auto" lets the caller pick; the others are what torch.device accepts for the hardware we support.
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda)(:(\d+))?$")


def check_device(name: object, field: str = "device", allow_auto: bool = True) -> str:
    """`name` if it names a device this machine has ("auto", "cpu", "cuda", "cuda:<i>", "mps"), else a ValueError
    naming the field, what was given and what exists here."""
    if not isinstance(name, str):
        raise ValueError(f"{field} must be a device name string, got {name!r}")
    match = _DEVICE.match(name)
    if match is None or (match.group(2) and match.group(1) != "cuda") or (name == "auto" and not allow_auto):
        allowed = ("auto, " if allow_auto else "") + "cpu, cuda, cuda:<index>, mps"
        raise ValueError(f"{field}={name!r} is not a device name; expected one of {allowed}")
    kind, index = match.group(1), match.group(3)
    if kind in ("auto", "cpu"):
        return name
    import torch

    if kind == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"{field}={name!r} but MPS (Apple GPU) is not available on this machine (use auto or cpu)")
    if kind == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"{field}={name!r} but CUDA is not available on this machine (use auto or cpu)")
        if index is not None and int(index) >= count:
            raise ValueError(f"{field}={name!r} but this machine has {count} CUDA device(s): cuda:0"
                             + (f" .. cuda:{count - 1}" if count > 1 else ""))
    return name
