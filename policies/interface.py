"""The common Policy base: input checking, normalization, loss and chunk prediction (step-wise execution:
policies.chunking.ChunkExecutor)."""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from policies.augmentation import color_jitter, random_shift
from policies.config import PolicyConfig
from policies.features import ACTION_KEY, ENV_STATE_KEY, STATE_KEY, FeatureKind, FeatureSpec, specs_from_shapes
from policies.normalization import Normalizer


def to_float_image(images: Tensor) -> Tensor:
    """uint8 [0, 255] -> float [0, 1]; float images are taken to be in [0, 1] already."""
    if images.dtype == torch.uint8:
        return images.to(torch.float32) / 255.0
    if not images.is_floating_point():
        raise ValueError(f"images must be uint8 or float in [0, 1], got dtype {images.dtype}")
    return images


class Policy(nn.Module, abc.ABC):
    """A policy takes and returns raw (physical) units; normalization lives in its buffers.

    Layout every subclass keeps, so export can split it cleanly:
      input_normalizer (observations) -> `predict_normalized_chunk` (the network, normalized space)
      -> action_normalizer.unnormalize.
    """

    name: ClassVar[str]
    config_class: ClassVar[type[PolicyConfig]]

    def __init__(self, config: PolicyConfig, stats: Mapping[str, Any] | None = None):
        super().__init__()
        if not isinstance(config, self.config_class):
            raise TypeError(f"{type(self).__name__} needs a {self.config_class.__name__}, got {type(config).__name__}")
        config.validate()
        config.features_ready()
        self.config = config
        self.input_specs: dict[str, FeatureSpec] = specs_from_shapes(config.input_features)
        self.action_spec: FeatureSpec = specs_from_shapes(config.output_features)[ACTION_KEY]
        self.input_normalizer = Normalizer(self.input_specs, config.normalization_mapping, stats)
        self.action_normalizer = Normalizer({ACTION_KEY: self.action_spec}, config.normalization_mapping, stats)

    # ----- feature helpers -------------------------------------------------------------------------------------

    @property
    def action_dim(self) -> int:
        return self.action_spec.shape[0]

    def input_keys(self, kind: FeatureKind) -> list[str]:
        return [k for k, s in self.input_specs.items() if s.kind is kind]

    @property
    def image_keys(self) -> list[str]:
        return self.input_keys(FeatureKind.IMAGE)

    @property
    def has_state(self) -> bool:
        return STATE_KEY in self.input_specs

    @property
    def has_env_state(self) -> bool:
        return ENV_STATE_KEY in self.input_specs

    # ----- dataset contract --------------------------------------------------------------------------------------

    @property
    def observation_delta_indices(self) -> list[int]:
        """Frame offsets of the observation window the policy reads, e.g. [-1, 0] for two steps."""
        return list(range(1 - self.config.n_obs_steps, 1))

    @property
    @abc.abstractmethod
    def action_delta_indices(self) -> list[int]:
        """Frame offsets of the action targets in a training sample."""

    def delta_indices(self) -> dict[str, list[int]]:
        """{dataset key: frame offsets} for every key the policy reads in training."""
        out = {key: self.observation_delta_indices for key in self.input_specs}
        out[ACTION_KEY] = self.action_delta_indices
        return out

    @property
    def chunk_length(self) -> int:
        """Length of `predict_chunk`'s output: future actions from the current step on."""
        return self.config.chunk_length()

    # ----- input preparation -------------------------------------------------------------------------------------

    def prepare_observations(self, batch: Mapping[str, Tensor], with_time: bool = True) -> dict[str, Tensor]:
        """Checked, float, normalized observations; (B, n_obs, *shape) if with_time else (B, *shape)."""
        out: dict[str, Tensor] = {}
        for key, spec in self.input_specs.items():
            if key not in batch:
                raise ValueError(
                    f"{self.name} policy: observation {key!r} missing from the input; it has {sorted(batch)}"
                )
            x = batch[key]
            if not isinstance(x, Tensor):
                raise ValueError(f"{self.name} policy: {key!r} must be a torch.Tensor, got {type(x).__name__}")
            lead = 2 if with_time else 1
            if x.ndim != lead + len(spec.shape) or tuple(x.shape[lead:]) != spec.shape or (
                with_time and x.shape[1] != self.config.n_obs_steps
            ):
                want = ("B", self.config.n_obs_steps) if with_time else ("B",)
                raise ValueError(
                    f"{self.name} policy: {key!r} has shape {tuple(x.shape)}, expected {want + spec.shape}"
                    + (" (images channel-first)" if spec.kind is FeatureKind.IMAGE else "")
                )
            if spec.kind is FeatureKind.IMAGE:
                x = to_float_image(x)
                if self.training:
                    x = color_jitter(random_shift(x, self.config.image_shift), self.config.image_color_jitter)
            elif not x.is_floating_point():
                x = x.to(torch.float32)
            out[key] = x
        return self.input_normalizer.normalize(out)

    def prepare_actions(self, batch: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Normalized action targets (B, T, A) and their padding mask (B, T) from a training batch."""
        if ACTION_KEY not in batch:
            raise ValueError(f"{self.name} policy: training batch has no {ACTION_KEY!r}; it has {sorted(batch)}")
        actions = batch[ACTION_KEY]
        want_t = len(self.action_delta_indices)
        if actions.ndim != 3 or actions.shape[1] != want_t or actions.shape[2] != self.action_dim:
            raise ValueError(
                f"{self.name} policy: {ACTION_KEY!r} has shape {tuple(actions.shape)}, expected (B, {want_t}, "
                f"{self.action_dim}) for action_delta_indices of length {want_t}"
            )
        pad_key = f"{ACTION_KEY}_is_pad"
        is_pad = batch.get(pad_key)
        if is_pad is None:
            is_pad = torch.zeros(actions.shape[:2], dtype=torch.bool, device=actions.device)
        elif tuple(is_pad.shape) != tuple(actions.shape[:2]):
            raise ValueError(f"{pad_key!r} has shape {tuple(is_pad.shape)}, expected {tuple(actions.shape[:2])}")
        normalized = self.action_normalizer.normalize({ACTION_KEY: actions.to(torch.float32)})[ACTION_KEY]
        return normalized, is_pad.to(torch.bool)

    # ----- the API ------------------------------------------------------------------------------------------------

    @abc.abstractmethod
    def compute_loss(self, batch: Mapping[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """Training loss on a collated dataset batch, and scalar logs as detached 0-dim tensors. The caller turns the
        logs into floats once per step: a float() in here would break a torch.compile graph and wait on the device
        once per value."""

    @abc.abstractmethod
    def predict_normalized_chunk(self, observations: dict[str, Tensor]) -> Tensor:
        """The network alone: normalized observations (B, n_obs, ...) -> normalized actions (B, chunk_length, A)."""

    @torch.no_grad()
    def predict_chunk(self, observations: Mapping[str, Tensor]) -> Tensor:
        """Raw observations with history (B, n_obs, ...) -> raw actions (B, chunk_length, A)."""
        chunk = self.predict_normalized_chunk(self.prepare_observations(observations))
        return self.action_normalizer.unnormalize({ACTION_KEY: chunk})[ACTION_KEY]

    def after_optimizer_step(self) -> None:
        """Hook the trainer calls after every optimizer step (EMA updates); no-op by default."""

    def load_pretrained_weights(self) -> None:
        """Load user-supplied backbone weights named in the config (called by make_policy); no-op by default."""

    def optim_param_groups(self) -> list[dict[str, Any]]:
        """AdamW parameter groups with this policy's learning-rate defaults (trainable parameters only)."""
        params = [p for p in self.parameters() if p.requires_grad]
        return [{"params": params, "lr": self.config.optimizer_lr, "weight_decay": self.config.optimizer_weight_decay}]
