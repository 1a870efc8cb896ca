"""Ramp limiting shared by every amplitude policy: approach a target no faster than set rates."""

from __future__ import annotations

import math
from numbers import Real


def check_rate(name: str, value: object) -> float:
    """Return a ramp rate as a float, or raise if it is not a finite number > 0.

    Parameters
    ----------
    name : str
        The setting's name, for the error message.
    value : float
        The rate, stimulator unit/s.

    Returns
    -------
    rate : float
        ``value`` as a float.
    """
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number > 0 unit/s, got {value!r}")
    if value <= 0:
        raise ValueError(f"{name} must be a finite number > 0 unit/s, got {value!r}")
    return float(value)


class RampLimiter:
    """Follows a target amplitude, rising at most ``up_per_s`` and falling at most
    ``down_per_s`` per second of the time passed between calls.

    Parameters
    ----------
    up_per_s : float
        Fastest rise, stimulator unit/s (mA/s, %MSO/s), finite and > 0.
    down_per_s : float
        Fastest fall, stimulator unit/s, finite and > 0.
    value : float
        Amplitude to start from, stimulator unit.

    Notes
    -----
    The first call after construction or ``reset`` only starts the clock: no time has passed,
    so the value does not move. Time running backwards counts as no time.
    """

    def __init__(self, up_per_s: float, down_per_s: float, value: float = 0.0) -> None:
        self.up_per_s = check_rate("up_per_s", up_per_s)
        self.down_per_s = check_rate("down_per_s", down_per_s)
        self.reset(value)

    def reset(self, value: float) -> None:
        """Start over from ``value`` (stimulator unit) and forget the clock."""
        if not math.isfinite(value):
            raise ValueError(f"value must be a finite amplitude, got {value!r}")
        self.value = float(value)
        """The current amplitude, stimulator unit."""
        self._last_time: float | None = None

    def _elapsed(self, time: float) -> float:
        if not math.isfinite(time):
            raise ValueError(f"time must be a finite number of seconds, got {time!r}")
        dt = 0.0 if self._last_time is None else max(time - self._last_time, 0.0)
        self._last_time = float(time)
        return dt

    def hold(self, time: float) -> float:
        """Keep the value where it is, but let the clock run to ``time`` (s).

        A policy that holds (the decoder abstains, blanking) calls this, so the next ramp step
        counts from now rather than from the last time the value moved.
        """
        self._elapsed(time)
        return self.value

    def __call__(self, target: float, time: float) -> float:
        """Step towards ``target`` for the time since the previous call.

        Parameters
        ----------
        target : float
            Amplitude aimed at, stimulator unit. A non-finite target is ignored (``hold``).
        time : float
            Time of this step, s.

        Returns
        -------
        value : float
            The new amplitude, stimulator unit.
        """
        dt = self._elapsed(time)
        if not math.isfinite(target):
            return self.value
        step = target - self.value
        limit = (self.up_per_s if step > 0 else self.down_per_s) * dt
        self.value += min(max(step, -limit), limit)
        return self.value


class RampedPolicy:
    """Base of the amplitude policies: each steps its request through one :class:`RampLimiter`
    (``self._ramp``) and reports where it is."""

    _ramp: RampLimiter

    @property
    def amplitude(self) -> float:
        """The amplitude asked for last, stimulator unit."""
        return self._ramp.value
