"""Feature specs: which dataset keys a policy reads and writes, their per-step shapes and their kind."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

STATE_KEY = "observation.state"
ENV_STATE_KEY = "observation.environment_state"
IMAGE_PREFIX = "observation.images."
ACTION_KEY = "action"


class FeatureKind(str, Enum):
    STATE = "state"
    IMAGE = "image"
    ACTION = "action"


@dataclass(frozen=True)
class FeatureSpec:
    """One feature as a policy sees it: per-step shape (images channel-first: (C, H, W))."""

    key: str
    shape: tuple[int, ...]
    kind: FeatureKind

    @property
    def size(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


def feature_kind(key: str) -> FeatureKind:
    """Kind of a dataset key; raises for keys no policy consumes."""
    if key == ACTION_KEY:
        return FeatureKind.ACTION
    if key.startswith(IMAGE_PREFIX) and len(key) > len(IMAGE_PREFIX):
        return FeatureKind.IMAGE
    if key in (STATE_KEY, ENV_STATE_KEY):
        return FeatureKind.STATE
    raise ValueError(
        f"feature key {key!r} is not a policy feature: expected {STATE_KEY!r}, {ENV_STATE_KEY!r}, "
        f"'{IMAGE_PREFIX}<camera>' or {ACTION_KEY!r}"
    )


def is_policy_input_key(key: str) -> bool:
    try:
        return feature_kind(key) is not FeatureKind.ACTION
    except ValueError:
        return False


def make_spec(key: str, shape: Sequence[int]) -> FeatureSpec:
    """Validated spec: state/action must be 1-D, images (C, H, W) with C in {1, 3}."""
    kind = feature_kind(key)
    try:
        shape_t = tuple(int(d) for d in shape)
    except (TypeError, ValueError) as err:
        raise ValueError(f"feature {key!r}: shape must be a list of ints, got {shape!r}") from err
    if any(d <= 0 for d in shape_t):
        raise ValueError(f"feature {key!r}: shape {shape_t} has a non-positive dimension")
    if kind is FeatureKind.IMAGE:
        if len(shape_t) != 3 or shape_t[0] not in (1, 3):
            raise ValueError(
                f"image feature {key!r}: shape must be channel-first (C, H, W) with C in (1, 3), got {shape_t}"
            )
    elif len(shape_t) != 1:
        raise ValueError(f"{kind.value} feature {key!r}: shape must be 1-D (dim,), got {shape_t}")
    return FeatureSpec(key, shape_t, kind)


def specs_from_shapes(shapes: Mapping[str, Sequence[int]]) -> dict[str, FeatureSpec]:
    return {key: make_spec(key, shape) for key, shape in shapes.items()}


def _dataset_feature_shape(key: str, value: Any) -> tuple[int, ...]:
    """Per-step shape of one dataset feature entry, images converted to channel-first.

    Accepts a bare shape or a LeRobot info.json style entry {"shape": [...], "names": [...]}; LeRobot stores
    image shapes as (H, W, C) with names ["height", "width", "channels"], our tensors are (C, H, W).
    """
    names = None
    if isinstance(value, Mapping):
        if "shape" not in value:
            raise ValueError(f"dataset feature {key!r} has no 'shape' entry: {dict(value)!r}")
        names = value.get("names")
        shape = tuple(int(d) for d in value["shape"])
    elif hasattr(value, "shape") and not isinstance(value, (list, tuple)):
        shape = tuple(int(d) for d in value.shape)
    else:
        shape = tuple(int(d) for d in value)
    if feature_kind(key) is not FeatureKind.IMAGE or len(shape) != 3:
        return shape
    if isinstance(names, Sequence) and not isinstance(names, str) and len(names) == 3:
        lowered = [str(n).lower() for n in names]
        if lowered[-1] in ("channel", "channels", "c"):
            return (shape[2], shape[0], shape[1])
        if lowered[0] in ("channel", "channels", "c"):
            return shape
    if shape[0] in (1, 3):
        return shape
    if shape[-1] in (1, 3):
        return (shape[2], shape[0], shape[1])
    raise ValueError(f"image feature {key!r}: cannot tell the channel axis of shape {shape}")


def policy_features_from_dataset(features: Mapping[str, Any]) -> tuple[dict[str, list[int]], dict[str, list[int]]]:
    """(input_features, output_features) as {key: shape} from a dataset's feature table.

    Keys the policies do not consume (timestamp, indices, rewards, ...) are skipped.
    """
    inputs: dict[str, list[int]] = {}
    outputs: dict[str, list[int]] = {}
    for key, value in features.items():
        if key == ACTION_KEY:
            outputs[key] = list(_dataset_feature_shape(key, value))
        elif is_policy_input_key(key):
            inputs[key] = list(_dataset_feature_shape(key, value))
    if ACTION_KEY not in outputs:
        raise ValueError(f"dataset features have no {ACTION_KEY!r} entry; found {sorted(features)}")
    if not inputs:
        raise ValueError(
            f"dataset features have no observation entry ({STATE_KEY!r}, {ENV_STATE_KEY!r} or "
            f"'{IMAGE_PREFIX}<camera>'); found {sorted(features)}"
        )
    return inputs, outputs
