"""Fields and checks shared by every policy config dataclass (Hydra structured-config friendly types only)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Optional

from policies.features import ACTION_KEY, FeatureKind, specs_from_shapes
from policies.normalization import validate_mapping


@dataclass
class PolicyConfig:
    """Base of all policy configs.

    input_features / output_features are {dataset key: per-step shape}; left empty in YAML they are filled from
    the dataset by `policies.factory.make_policy`, set explicitly they select a subset of the dataset's features.
    """

    type: str = ""
    input_features: dict[str, list[int]] = field(default_factory=dict)
    output_features: dict[str, list[int]] = field(default_factory=dict)
    normalization_mapping: dict[str, str] = field(
        default_factory=lambda: {"state": "mean_std", "image": "mean_std", "action": "mean_std"}
    )
    n_obs_steps: int = 1
    n_action_steps: int = 1
    # None: execute n_action_steps of each chunk; a float k: predict every step and average overlapping chunks with
    # weights exp(-k * i), i = 0 for the oldest prediction (ACT paper); needs n_action_steps == 1.
    temporal_ensemble_coeff: Optional[float] = None
    # Per-policy optimizer defaults a trainer may use (AdamW); see Policy.optim_param_groups.
    optimizer_lr: float = 1e-4
    optimizer_weight_decay: float = 1e-4
    # Camera augmentation in training only (policies.augmentation; inference and export see the frames unchanged):
    # random shift by up to image_shift pixels, and brightness/contrast/saturation factors in [1 - j, 1 + j].
    image_shift: int = 0
    image_color_jitter: float = 0.0

    family: ClassVar[str]  # set by policies.registry.register_config

    def expected_type(self) -> str:
        """The family name the subclass registered under, which `type` must carry."""
        family = getattr(type(self), "family", None)
        if family is None:
            raise TypeError(f"{type(self).__name__} is not a registered policy config: decorate it with "
                            "@policies.registry.register_config(<name>)")
        return family

    def chunk_length(self) -> int:
        """Number of future actions predict_chunk returns, starting at the current step."""
        raise NotImplementedError

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        name = type(self).__name__
        for f in dataclasses.fields(self):
            # NaN slips through every `x <= 0` check below; no policy field means anything by NaN or infinity.
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"{name}.{f.name} must be a finite number, got {value}")
        if self.type != self.expected_type():
            raise ValueError(f"{name}.type must be {self.expected_type()!r}, got {self.type!r}")
        validate_mapping(self.normalization_mapping, f"{name}.normalization_mapping")
        specs_from_shapes(self.input_features)
        specs_from_shapes(self.output_features)
        for key in self.input_features:
            if specs_from_shapes({key: self.input_features[key]})[key].kind is FeatureKind.ACTION:
                raise ValueError(f"{name}.input_features must not contain {ACTION_KEY!r}")
        if self.output_features and set(self.output_features) != {ACTION_KEY}:
            raise ValueError(
                f"{name}.output_features must be exactly {{'{ACTION_KEY}': [A]}}, got {self.output_features}"
            )
        if self.n_obs_steps < 1:
            raise ValueError(f"{name}.n_obs_steps must be >= 1, got {self.n_obs_steps}")
        if not 1 <= self.n_action_steps <= self.chunk_length():
            raise ValueError(
                f"{name}.n_action_steps must be in [1, {self.chunk_length()}] (the predicted chunk length), "
                f"got {self.n_action_steps}"
            )
        if self.temporal_ensemble_coeff is not None and self.n_action_steps != 1:
            raise ValueError(
                f"{name}: temporal ensembling (temporal_ensemble_coeff={self.temporal_ensemble_coeff}) predicts a "
                f"chunk every step, so n_action_steps must be 1, got {self.n_action_steps}"
            )
        if self.image_shift < 0:
            raise ValueError(f"{name}.image_shift must be >= 0 pixels, got {self.image_shift}")
        if not 0.0 <= self.image_color_jitter < 1.0:
            raise ValueError(f"{name}.image_color_jitter must be in [0, 1) (a factor range 1 +- j), got "
                             f"{self.image_color_jitter}")
        if self.optimizer_lr <= 0 or self.optimizer_weight_decay < 0:
            raise ValueError(f"{name}: optimizer_lr must be > 0 and optimizer_weight_decay >= 0, got "
                             f"{self.optimizer_lr} and {self.optimizer_weight_decay}")

    def features_ready(self) -> None:
        """Raise unless the feature specs are filled in (a network can only be built then)."""
        name = type(self).__name__
        if ACTION_KEY not in self.output_features:
            raise ValueError(
                f"{name}.output_features has no {ACTION_KEY!r} shape: build the policy with make_policy(config, "
                "dataset_features, stats) or set output_features explicitly"
            )
        if not self.input_features:
            raise ValueError(f"{name}.input_features is empty: no observation to condition on")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "PolicyConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            import difflib

            close = {k: near[0] for k in unknown if (near := difflib.get_close_matches(k, known, 1, 0.5))}
            hint = f" (did you mean {', '.join(f'{v!r} for {k!r}' for k, v in close.items())}?)" if close else ""
            raise ValueError(f"{cls.__name__}: unknown field(s) {unknown}{hint}; known fields: {sorted(known)}")
        return cls(**dict(data))
