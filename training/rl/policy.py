"""An SB3 policy as a vector-env policy callable: raw Dict observations in, actions in physical units out."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch

from training.rl.environments import ObservationLayout
from training.rl.normalization import ObservationNormalizer


class SB3VectorPolicy:
    """Flattens the batched Dict observation (checkpoint's layout), normalizes it (VecNormalize statistics) and
    returns SB3's deterministic action, rescaled from the policy's [-1, 1] range to the env's bounds by SB3.

    Stateless, so it needs no per-episode reset.
    """

    def __init__(self, policy, layout: ObservationLayout, normalizer: ObservationNormalizer,
                 deterministic: bool = True) -> None:
        self.policy = policy
        self.layout = layout
        self.normalizer = normalizer
        self.deterministic = deterministic

    def __call__(self, observations: Mapping[str, Any]) -> np.ndarray:
        x = self.normalizer(self.layout.flatten(observations))
        with torch.no_grad():
            actions, _ = self.policy.predict(x, deterministic=self.deterministic)
        return np.asarray(actions)
