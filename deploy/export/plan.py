"""A family's export description (policies.export) in the bundle's terms: runtime control spec, sampler, features."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from deploy.runtime import ControlSpec, DdimSampler, InGraphSampler, ModelFile, ObservationFeature
from policies.export import ExportDescription, ExportEnv, Graph, Reference, frame_shape, input_shape

from .env_info import EnvInfo

__all__ = ["ExportPlan", "export_env", "input_shape", "plan_from_description"]


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


def export_env(info: EnvInfo) -> ExportEnv:
    """The torch-side view of the env a family exports for."""
    return ExportEnv(env_id=info.env_id, action_dim=info.action_dim,
                     features={k: (tuple(f.shape), f.dtype) for k, f in info.features.items()})


def _sampler(spec: dict[str, Any] | None) -> InGraphSampler | DdimSampler | None:
    if spec is None:
        return None
    params = dict(spec)
    kind = params.pop("type", None)
    if kind == "in_graph":
        return InGraphSampler(**params)
    if kind == "ddim":
        condition = params.pop("condition_model", None)
        if condition is not None:  # its sha256 is filled in once the file is written (bundle.build_manifest)
            params["condition_model"] = ModelFile(sha256="0" * 64, **condition)
        return DdimSampler(**params)
    raise ValueError(f"export description names sampler type {kind!r}; the runtime runs 'in_graph' and 'ddim'")


def _frame(feature: ObservationFeature, layouts: dict[str, str]) -> ObservationFeature:
    """A camera feature (channel-first in EnvInfo) in the layout its graph input takes, declared in the manifest."""
    if not feature.is_image:
        if feature.key in layouts:
            raise ValueError(f"export description gives a frame layout for {feature.key!r}, which is not a camera")
        return feature
    layout = layouts.get(feature.key, "CHW")
    if layout not in ("CHW", "HWC"):
        raise ValueError(f"export description: layout {layout!r} of {feature.key!r} is not 'HWC' or 'CHW'")
    return dataclasses.replace(feature, shape=frame_shape(tuple(feature.shape), layout), layout=layout)


def plan_from_description(policy_type: str, description: ExportDescription, info: EnvInfo) -> ExportPlan:
    d = description
    coeff = None if d.temporal_ensemble_coeff is None else float(d.temporal_ensemble_coeff)
    control = ControlSpec(frequency_hz=info.control_hz, chunk_size=int(d.chunk_size),
                          n_action_steps=int(d.n_action_steps), n_obs_steps=int(d.n_obs_steps),
                          chunk_offset=int(d.chunk_offset), temporal_ensemble_coeff=coeff)
    return ExportPlan(policy_type=policy_type, graphs=list(d.graphs), features=[_frame(info.feature(k), d.layouts)
                                                                                for k in d.input_keys],
                      model_inputs=dict(d.model_inputs), control=control, reference=d.reference,
                      sampler=_sampler(d.sampler), noise_shape=d.noise_shape, notes=dict(d.notes))


def with_reference(plan: ExportPlan, reference: Reference | None) -> ExportPlan:
    return plan if reference is None else dataclasses.replace(plan, reference=reference)
