"""Trainer state without pickle: optimizer / scheduler / grad-scaler state dicts and RNG states split into
tensors (for safetensors) and plain values (for JSON), and put back together."""

from __future__ import annotations

import random
from typing import Any, Mapping

import numpy as np
import torch

OPTIMIZER_PREFIX = "optimizer.state."
TORCH_RNG_KEY = "rng.torch_cpu"
CUDA_RNG_PREFIX = "rng.torch_cuda."


def _plain(value: Any, where: str) -> Any:
    """JSON-safe copy of a state-dict value; tuples become lists. Anything else is a bug we want to hear about."""
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v, where) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v, where) for k, v in value.items()}
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    raise TypeError(f"{where}: cannot store a {type(value).__name__} in JSON")


def split_optimizer_state(state: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """optimizer.state_dict() -> ({"optimizer.state.<param id>.<name>": tensor}, {"param_groups", "scalars"})."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for param_id, entries in state["state"].items():
        for name, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{OPTIMIZER_PREFIX}{int(param_id)}.{name}"] = value.detach().to("cpu").contiguous()
            else:
                scalars.setdefault(str(int(param_id)), {})[name] = _plain(value, f"optimizer state {name!r}")
    return tensors, {"param_groups": _plain(state["param_groups"], "optimizer param_groups"), "scalars": scalars}


def join_optimizer_state(tensors: Mapping[str, torch.Tensor], plain: Mapping[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if not key.startswith(OPTIMIZER_PREFIX):
            continue
        param_id, _, name = key[len(OPTIMIZER_PREFIX):].partition(".")
        state.setdefault(int(param_id), {})[name] = value
    for param_id, entries in plain["scalars"].items():
        state.setdefault(int(param_id), {}).update(entries)
    groups = []
    for group in plain["param_groups"]:
        group = dict(group)
        if "betas" in group:
            group["betas"] = tuple(group["betas"])  # torch's Adam stores a tuple; keep the state dict identical
        groups.append(group)
    return {"state": state, "param_groups": groups}


def scheduler_state(scheduler: torch.optim.lr_scheduler.LRScheduler) -> dict[str, Any]:
    return _plain(scheduler.state_dict(), "lr scheduler state")


def capture_rng() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """RNG states of torch (CPU and every CUDA device), numpy's global generator and python's `random`."""
    tensors = {TORCH_RNG_KEY: torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"{CUDA_RNG_PREFIX}{i}"] = s
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    plain = {
        "numpy": {"kind": kind, "keys": keys.tolist(), "pos": int(pos), "has_gauss": int(has_gauss),
                  "cached_gaussian": float(cached)},
        "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next},
    }
    return tensors, plain


def restore_rng(tensors: Mapping[str, torch.Tensor], plain: Mapping[str, Any]) -> None:
    torch.set_rng_state(tensors[TORCH_RNG_KEY])
    cuda = sorted((int(k[len(CUDA_RNG_PREFIX):]), v) for k, v in tensors.items() if k.startswith(CUDA_RNG_PREFIX))
    if cuda and torch.cuda.is_available():
        states = [v for _, v in cuda][: torch.cuda.device_count()]
        torch.cuda.set_rng_state_all(states)
    n = plain["numpy"]
    np.random.set_state((n["kind"], np.asarray(n["keys"], dtype=np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = plain["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
