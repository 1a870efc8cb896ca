"""Range checks shared by the frozen parameter and settings classes."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")


def check_ranges(obj: Any, ranges: Mapping[str, tuple[float, float]]) -> None:
    """Raise ``ValueError`` naming the field and value for every field outside its range.

    Parameters
    ----------
    obj : dataclass instance
        Object whose fields are checked.
    ranges : mapping of str to (float, float)
        Field name to inclusive ``(low, high)`` bounds.
    """
    for name, (low, high) in ranges.items():
        value = getattr(obj, name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(
                f"{type(obj).__name__}.{name} must be a number, got {type(value).__name__}"
            )
        if not (math.isfinite(value) and low <= value <= high):
            raise ValueError(
                f"{type(obj).__name__}.{name} must be between {low} and {high}, got {value}"
            )


def clipped(cls: type[T], ranges: Mapping[str, tuple[float, float]], values: dict) -> T:
    """Build ``cls(**values)`` with every ranged value clipped into its range.

    Draws from unbounded distributions (normal, log-normal) are truncated this way so that every
    drawn subject stays physiologically plausible.
    """
    bounded = {}
    for name, value in values.items():
        if name in ranges:
            low, high = ranges[name]
            value = min(max(float(value), low), high)
        bounded[name] = value
    return cls(**bounded)
