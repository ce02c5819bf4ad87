"""What a policy family's export.py hands deploy.export (torch only): graphs, control settings, sampler, reference."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch import Tensor, nn

from policies.interface import Policy

MAIN_FILE = "policy.onnx"
ACTION_OUTPUT = "action"

# bundle inputs (observation key -> (1, [n_obs,] *shape) array) and optional noise -> the torch policy's chunk from the
# current step on, (chunk_size - chunk_offset, action_dim), in action units.
Reference = Callable[[Mapping[str, np.ndarray], "np.ndarray | None"], np.ndarray]


@dataclass
class Graph:
    """One ONNX file of a bundle: the module, its named example inputs (batch 1, fixed shapes) and output name."""

    file: str
    module: nn.Module
    input_names: list[str]
    examples: tuple[Tensor, ...]
    output: str
    # "dynamo" (torch.export) or "torchscript" (the tracer, for Python-side scheduler code reading tensor values).
    exporter: str = "dynamo"

    def __post_init__(self) -> None:
        if self.exporter not in ("dynamo", "torchscript"):
            raise ValueError(f"{self.file}: exporter must be 'dynamo' or 'torchscript', got {self.exporter!r}")
        if len(self.input_names) != len(self.examples):
            raise ValueError(f"{self.file}: {len(self.input_names)} input names for {len(self.examples)} examples")


@dataclass(frozen=True)
class ExportEnv:
    """What the exporter tells a family about the env it exports for: {observation key: (shape, dtype)} as the robot
    delivers them, and the action size."""

    env_id: str
    features: dict[str, tuple[tuple[int, ...], str]]
    action_dim: int

    def feature(self, key: str) -> tuple[tuple[int, ...], str]:
        if key not in self.features:
            raise ValueError(f"the policy reads {key!r}, which env {self.env_id} does not observe; it observes "
                             f"{sorted(self.features)}")
        return self.features[key]


@dataclass
class ExportDescription:
    """Returned by a family's @register_export function fn(policy, env: ExportEnv, options); deploy.export turns it
    into ONNX files and a manifest."""

    graphs: list[Graph]  # graphs[0] is the manifest's model file; a DDIM condition model follows it
    input_keys: list[str]  # the observations the bundle reads, in graph-input order
    model_inputs: dict[str, str]  # observation key -> input of graphs[0] (empty when a condition model reads them)
    chunk_size: int
    n_action_steps: int
    n_obs_steps: int
    reference: Reference
    chunk_offset: int = 0
    temporal_ensemble_coeff: float | None = None
    # In the manifest's terms: {"type": "in_graph", ...} or {"type": "ddim", ..., "condition_model": {"file",
    # "inputs", "output"}}; None: the graph's output is the chunk.
    sampler: dict[str, Any] | None = None
    noise_shape: tuple[int, ...] | None = None  # standard-normal initial noise the runtime feeds, e.g. (1, horizon, A)
    notes: dict[str, Any] = field(default_factory=dict)  # family metadata for the manifest's source
    # Camera key -> the frame layout its graph input takes: "HWC" ((H, W, 3) uint8, as camera drivers deliver
    # frames; the graph transposes) or "CHW" ((3, H, W), the env feature's shape). Cameras not named here: CHW.
    layouts: dict[str, str] = field(default_factory=dict)


HWC = "HWC"


def is_image(env: ExportEnv, key: str) -> bool:
    shape, dtype = env.feature(key)
    return dtype == "uint8" and len(shape) == 3


def frame_shape(shape: tuple[int, ...], layout: str | None) -> tuple[int, ...]:
    """A channel-first (3, H, W) feature shape as the frame of `layout` ("HWC": (H, W, 3)); others unchanged."""
    if layout == HWC:
        c, h, w = shape
        return (h, w, c)
    return tuple(shape)


def input_shape(shape: tuple[int, ...], n_obs_steps: int) -> tuple[int, ...]:
    """The runtime's convention: (1, *shape), or (1, n_obs_steps, *shape) with an observation history."""
    return (1, *shape) if n_obs_steps == 1 else (1, n_obs_steps, *shape)


def example_inputs(env: ExportEnv, keys: list[str], n_obs_steps: int, seed: int = 0,
                   layouts: Mapping[str, str] | None = None) -> tuple[Tensor, ...]:
    generator = torch.Generator().manual_seed(seed)
    out = []
    for key in keys:
        feature_shape, dtype = env.feature(key)
        shape = input_shape(frame_shape(tuple(feature_shape), (layouts or {}).get(key)), n_obs_steps)
        if dtype == "uint8":
            out.append(torch.randint(0, 256, shape, generator=generator, dtype=torch.uint8))
        else:
            out.append(torch.randn(shape, generator=generator, dtype=getattr(torch, dtype)))
    return tuple(out)


def to_torch(inputs: Mapping[str, np.ndarray], keys: list[str], stacked: bool,
             layouts: Mapping[str, str] | None = None) -> dict[str, Tensor]:
    """Bundle inputs -> the policy's (B, n_obs, ...) tensors (HWC camera frames made channel-first)."""
    out = {}
    for k in keys:
        array = np.asarray(inputs[k])
        if (layouts or {}).get(k) == HWC:
            array = np.moveaxis(array, -1, -3)
        x = torch.from_numpy(np.ascontiguousarray(array))
        out[k] = x if stacked else x.unsqueeze(1)
    return out


def check_policy_fits_env(policy: Policy, env: ExportEnv) -> list[str]:
    """The policy's input keys, after checking each shape and the action size against the env."""
    for key, spec in policy.input_specs.items():
        shape, _ = env.feature(key)
        if tuple(shape) != tuple(spec.shape):
            raise ValueError(f"{key!r} has shape {tuple(spec.shape)} for the policy but {tuple(shape)} in env "
                             f"{env.env_id}")
    if policy.action_dim != env.action_dim:
        raise ValueError(f"the policy outputs {policy.action_dim} actions, env {env.env_id} takes {env.action_dim}")
    return list(policy.input_specs)


class ChunkGraph(nn.Module):
    """Observations in physical units / uint8 pixels, (1, [n_obs,] *shape) each in `keys` order -> (1, chunk, A).

    Normalization, uint8 -> [0, 1] image scaling and unnormalization happen inside predict_chunk, so the graph holds
    them; camera inputs named "HWC" in `layouts` take (..., H, W, 3) frames and are made channel-first here.
    """

    def __init__(self, policy: Policy, keys: list[str], layouts: Mapping[str, str] | None = None):
        super().__init__()
        self.policy = policy
        self.keys = list(keys)
        self.hwc = [(layouts or {}).get(k) == HWC for k in self.keys]
        self.stacked = policy.config.n_obs_steps > 1

    def forward(self, *observations: Tensor) -> Tensor:
        obs = {}
        for k, x, hwc in zip(self.keys, observations, self.hwc):
            if hwc:
                x = x.movedim(-1, -3)
            obs[k] = x if self.stacked else x.unsqueeze(1)
        return self.policy.predict_chunk(obs)


def describe_chunk_policy(policy: Policy, env: ExportEnv, notes: dict | None = None) -> ExportDescription:
    """A policy whose predict_chunk is one deterministic pass (ACT, MLP): raw observations -> raw chunk, one graph.
    Cameras take HWC uint8 frames, as camera drivers deliver them."""
    keys = check_policy_fits_env(policy, env)
    c = policy.config
    layouts = {k: HWC for k in keys if is_image(env, k)}
    graph = Graph(MAIN_FILE, ChunkGraph(policy, keys, layouts), keys,
                  example_inputs(env, keys, c.n_obs_steps, layouts=layouts), ACTION_OUTPUT)
    stacked = c.n_obs_steps > 1

    def reference(inputs, noise=None) -> np.ndarray:
        with torch.no_grad():
            return policy.predict_chunk(to_torch(inputs, keys, stacked, layouts))[0].numpy()

    return ExportDescription(graphs=[graph], input_keys=keys, model_inputs={k: k for k in keys},
                             chunk_size=policy.chunk_length, n_action_steps=c.n_action_steps,
                             n_obs_steps=c.n_obs_steps, temporal_ensemble_coeff=c.temporal_ensemble_coeff,
                             reference=reference, notes=dict(notes or {}), layouts=layouts)
