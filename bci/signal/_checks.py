"""Validation helpers shared by the signal stages.

Settings are checked once, when they are built, so that a bad protocol fails before a session
starts; chunks are checked cheaply on every call (shape only, no copies).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Integral, Real

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]


def check_positive(name: str, value: object, *, unit: str = "") -> float:
    """Return ``value`` as a float, or raise if it is not a finite number > 0."""
    suffix = f" {unit}" if unit else ""
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number > 0{suffix}, got {value!r}")
    if value <= 0:
        raise ValueError(f"{name} must be a finite number > 0{suffix}, got {value!r}")
    return float(value)


def check_int_range(name: str, value: object, low: int, high: int | None = None) -> int:
    """Return ``value`` as an int, or raise if it is not an integer in [low, high]."""
    allowed = f"an integer from {low} to {high}" if high is not None else f"an integer >= {low}"
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    if value < low or (high is not None and value > high):
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    return int(value)


def check_names(name: str, values: Sequence[str]) -> tuple[str, ...]:
    """Return channel names as a tuple of str, or raise if empty, not str, or duplicated."""
    if isinstance(values, str):
        raise ValueError(f"{name} must be a sequence of channel names, got the string {values!r}")
    names = tuple(values)
    bad = [v for v in names if not isinstance(v, str)]
    if bad:
        raise ValueError(f"{name} must hold channel names (str), got {bad!r}")
    duplicated = sorted({v for v in names if names.count(v) > 1})
    if duplicated:
        raise ValueError(f"{name} must not repeat a channel name, got {duplicated} twice or more")
    return names


def missing_names_error(name: str, missing: Sequence[str], available: Sequence[str]) -> ValueError:
    """Build the error for channel names that a stream does not have."""
    return ValueError(
        f"{name} names channels that are not in the stream: {list(missing)}; "
        f"available channels: {list(available)}"
    )


def check_chunk(data: FloatArray, times: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Check a chunk's shapes; return both as float64 arrays (no copy when already float64).

    Parameters
    ----------
    data : array, shape (n_samples, n_channels)
        The samples.
    times : array, shape (n_samples,), s
        Their timestamps.
    """
    data = np.asarray(data, dtype=np.float64)
    times = np.asarray(times, dtype=np.float64)
    if data.ndim != 2:
        raise ValueError(
            f"data must have shape (n_samples, n_channels), got an array of shape {data.shape}"
        )
    if times.shape != (data.shape[0],):
        raise ValueError(
            f"times must have shape (n_samples,) = ({data.shape[0]},) to match data, "
            f"got {times.shape}"
        )
    return data, times


def check_n_channels(n_expected: int, data: FloatArray, what: str) -> None:
    """Raise if a chunk does not have the number of channels that a stage was built for."""
    if data.shape[-1] != n_expected:
        raise ValueError(
            f"data has {data.shape[-1]} channels but this {what} was built for "
            f"{n_expected} channels; build a new stage for the new channel layout"
        )
