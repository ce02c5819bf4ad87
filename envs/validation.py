"""Constructor-argument checks for the envs: each bad value is a ValueError naming the argument and what it expects."""

from __future__ import annotations

import difflib
import math
import numbers
from typing import Any, Iterable, Sequence

import numpy as np

# Images above this side length would need framebuffers and per-step observation copies of hundreds of megabytes
# (4096 x 4096 x 3 bytes = 48 MiB per camera and step already); the GPU's own limit is often 16384.
MAX_IMAGE_SIDE = 4096


def did_you_mean(name: Any, choices: Iterable[str]) -> str:
    """' (did you mean 'x'?)' for the closest choice, or '' when nothing is close."""
    if not isinstance(name, str):
        return ""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""


def short_repr(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def is_real(value: Any) -> bool:
    """A real number: Python or NumPy int/float, never a bool, a string or a complex."""
    return isinstance(value, (numbers.Real, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def is_integer(value: Any) -> bool:
    return isinstance(value, (numbers.Integral, np.integer)) and not isinstance(value, (bool, np.bool_))


def check_choice(owner: str, arg: str, value: Any, choices: Sequence[str | None]) -> Any:
    # Compared by type first: `value in choices` would call == on an array and fail with an unrelated message.
    if value is None and None in choices:
        return None
    if not isinstance(value, str) or value not in choices:
        names = [c for c in choices if c is not None]
        raise ValueError(
            f"{owner}: {arg} must be one of {tuple(choices)}, got {short_repr(value)}{did_you_mean(value, names)}"
        )
    return value


def check_real(owner: str, arg: str, value: Any, *, minimum: float | None = None, strict: bool = True,
               maximum: float | None = None, reason: str = "") -> float:
    """A finite real number; `minimum` is exclusive when `strict`, inclusive otherwise; `maximum` is inclusive."""
    if not is_real(value):
        raise ValueError(f"{owner}: {arg} must be a real number, got {type(value).__name__} {short_repr(value)}")
    try:
        number = float(value)
    except OverflowError:  # a Python int beyond float64
        number = math.inf
    too_low = minimum is not None and (number <= minimum if strict else number < minimum)
    if not math.isfinite(number) or too_low or (maximum is not None and number > maximum):
        bounds = []
        if minimum is not None:
            bounds.append(f"{'>' if strict else '>='} {minimum:g}")
        if maximum is not None:
            bounds.append(f"<= {maximum:g}")
        expected = "finite" + (f" and {' and '.join(bounds)}" if bounds else "")
        raise ValueError(f"{owner}: {arg} must be {expected}{reason}, got {short_repr(value)}")
    return number


def check_int(owner: str, arg: str, value: Any, *, minimum: int, maximum: int | None = None, reason: str = "") -> int:
    if not is_integer(value):
        raise ValueError(f"{owner}: {arg} must be an integer, got {type(value).__name__} {short_repr(value)}")
    number = int(value)
    if number < minimum or (maximum is not None and number > maximum):
        span = f">= {minimum}" + (f" and <= {maximum}" if maximum is not None else "")
        raise ValueError(f"{owner}: {arg} must be {span}{reason}, got {number}")
    return number


def _is_sequence(value: Any) -> bool:
    """A list, tuple, 1-d array or Hydra ListConfig: sized and indexable; no text, no mapping (nor DictConfig)."""
    return (hasattr(value, "__len__") and hasattr(value, "__getitem__") and not hasattr(value, "items")
            and not isinstance(value, (str, bytes, bytearray)))


def check_pair(owner: str, arg: str, value: Any) -> tuple[Any, Any]:
    """Two items (a list, tuple, 1-d array or Hydra ListConfig); strings and mappings are refused."""
    if not _is_sequence(value):
        raise ValueError(f"{owner}: {arg} must be a (low, high) pair, got {type(value).__name__} {short_repr(value)}")
    if (isinstance(value, np.ndarray) and value.ndim != 1) or len(value) != 2:
        raise ValueError(f"{owner}: {arg} must be a (low, high) pair of 2 values, got {short_repr(value)}")
    return value[0], value[1]


def check_image_size(owner: str, value: Any) -> tuple[int, int]:
    """(height, width) as two positive integers; one integer n means a square n x n image."""
    if is_integer(value):
        value = (value, value)
    elif not _is_sequence(value):
        raise ValueError(
            f"{owner}: image_size must be (height, width) as two integers or one integer for a square image, got "
            f"{type(value).__name__} {short_repr(value)}"
        )
    if len(value) != 2 or not all(is_integer(v) for v in value):
        raise ValueError(f"{owner}: image_size must be (height, width) as two integers, got {short_repr(value)}")
    size = (int(value[0]), int(value[1]))
    if min(size) < 1:
        raise ValueError(f"{owner}: image_size must be positive, got {size}")
    if max(size) > MAX_IMAGE_SIDE:
        raise ValueError(
            f"{owner}: image_size {size} exceeds {MAX_IMAGE_SIDE} pixels per side; such images need framebuffers and "
            f"per-step copies of {size[0] * size[1] * 3 / 2**20:.0f} MiB per camera (render smaller and resize)"
        )
    return size


def check_camera_names(owner: str, value: Any) -> tuple[str, ...]:
    """A plain string is one camera; otherwise a sequence of distinct, non-empty names."""
    if isinstance(value, str):
        value = (value,)
    if not _is_sequence(value):
        raise ValueError(
            f"{owner}: cameras must be a camera name or a list of names, got {type(value).__name__} {short_repr(value)}"
        )
    names = tuple(value)
    bad = [n for n in names if not isinstance(n, str) or not n]
    if bad:
        raise ValueError(
            f"{owner}: cameras must be non-empty strings, got {short_repr(bad[0])} in {short_repr(list(names))}"
        )
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"{owner}: cameras lists {duplicates} more than once: {list(names)}")
    return names
