"""Mapping between env observations (gym-aloha keys) and dataset keys (LeRobot names)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .format import IMAGE_PREFIX

STATE_KEYS = {"agent_pos": "observation.state", "environment_state": "observation.environment_state"}


def observation_to_dataset(observation: Mapping[str, Any], channel_first: bool = True) -> dict[str, np.ndarray]:
    """One env observation (possibly batched along a leading axis) as dataset keys.

    "agent_pos" -> "observation.state", "environment_state" -> "observation.environment_state" (float32),
    "pixels"[cam] (H, W, 3) -> "observation.images.<cam>" uint8, (3, H, W) when ``channel_first``.
    A bare "pixels" array (gym-pusht style) becomes "observation.image", as LeRobot names it.
    """
    out: dict[str, np.ndarray] = {}
    for env_key, ds_key in STATE_KEYS.items():
        if env_key in observation:
            out[ds_key] = np.asarray(observation[env_key], np.float32)
    pixels = observation.get("pixels")
    if pixels is not None:
        cams = pixels.items() if isinstance(pixels, Mapping) else [(None, pixels)]
        for cam, img in cams:
            img = np.asarray(img)
            if img.dtype != np.uint8 or img.ndim < 3 or img.shape[-1] != 3:
                raise ValueError(f"camera {cam!r}: expected uint8 (..., H, W, 3) pixels, got {img.dtype} {img.shape}")
            key = "observation.image" if cam is None else f"{IMAGE_PREFIX}{cam}"
            out[key] = np.moveaxis(img, -1, -3) if channel_first else img
    if not out:
        raise ValueError(f"observation has none of {list(STATE_KEYS)} or 'pixels'; keys: {list(observation)}")
    return out
