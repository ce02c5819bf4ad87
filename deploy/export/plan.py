"""What a policy family hands the bundle writer: graphs, control settings, sampler and a torch reference."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np
import torch

from deploy.runtime import ControlSpec, DdimSampler, InGraphSampler, ObservationFeature

from .env_info import EnvInfo
from .graphs import Graph

MAIN_FILE = "policy.onnx"
ACTION_OUTPUT = "action"

# bundle inputs (observation key -> (1, [n_obs,] *shape) array) and optional noise -> the torch checkpoint's chunk
# from the current step on, (chunk_size - chunk_offset, action_dim), in action units.
Reference = Callable[[Mapping[str, np.ndarray], "np.ndarray | None"], np.ndarray]


@dataclass
class ExportPlan:
    policy_type: str
    graphs: list[Graph]  # graphs[0] is the manifest's model.file; a DDIM condition model follows it
    features: list[ObservationFeature]  # the observations the bundle reads, in graph-input order
    model_inputs: dict[str, str]  # observation key -> ONNX input of graphs[0] (empty when a condition model reads them)
    control: ControlSpec
    reference: Reference
    sampler: InGraphSampler | DdimSampler | None = None  # hashes of condition models are filled in when written
    noise_shape: tuple[int, ...] | None = None  # diffusion: (1, horizon, action_dim) standard-normal initial noise
    notes: dict[str, Any] = field(default_factory=dict)  # exporter metadata for manifest source


def observation_features(info: EnvInfo, keys: list[str]) -> list[ObservationFeature]:
    return [info.feature(k) for k in keys]


def input_shape(feature: ObservationFeature, n_obs_steps: int) -> tuple[int, ...]:
    """The runtime's convention: (1, *shape), or (1, n_obs_steps, *shape) with an observation history."""
    return (1, *feature.shape) if n_obs_steps == 1 else (1, n_obs_steps, *feature.shape)


def example_inputs(features: list[ObservationFeature], n_obs_steps: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(seed)
    out = []
    for f in features:
        shape = input_shape(f, n_obs_steps)
        if f.dtype == "uint8":
            out.append(torch.randint(0, 256, shape, generator=generator, dtype=torch.uint8))
        else:
            out.append(torch.randn(shape, generator=generator, dtype=getattr(torch, f.dtype)))
    return tuple(out)


def control_spec(info: EnvInfo, *, chunk_size: int, n_action_steps: int, n_obs_steps: int, chunk_offset: int = 0,
                 temporal_ensemble_coeff: float | None = None) -> ControlSpec:
    coeff = None if temporal_ensemble_coeff is None else float(temporal_ensemble_coeff)
    return ControlSpec(frequency_hz=info.control_hz, chunk_size=int(chunk_size), n_action_steps=int(n_action_steps),
                       n_obs_steps=int(n_obs_steps), chunk_offset=int(chunk_offset), temporal_ensemble_coeff=coeff)


def to_torch(inputs: Mapping[str, np.ndarray], keys: list[str], stacked: bool) -> dict[str, torch.Tensor]:
    """Bundle inputs -> the policy's (B, n_obs, ...) tensors."""
    out = {}
    for k in keys:
        x = torch.from_numpy(np.ascontiguousarray(inputs[k]))
        out[k] = x if stacked else x.unsqueeze(1)
    return out
