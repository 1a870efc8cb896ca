"""Dual-threshold policy with hysteresis (Medtronic Summit RC+S style adaptive stimulation):
stimulation switches on after a biomarker stays above an upper threshold and off after it stays
below a lower one, holding its state in between."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from numbers import Integral, Real

import numpy as np

from bci.control.ramp import RampedPolicy, RampLimiter, check_rate

STATE_ON = "on"
STATE_OFF = "off"


def _finite(name: str, value: object, minimum: float | None = None) -> float:
    ok = not isinstance(value, bool) and isinstance(value, Real) and math.isfinite(value)
    if not ok or (minimum is not None and value < minimum):
        bound = "" if minimum is None else f" >= {minimum:g}"
        raise ValueError(f"{name} must be a finite number{bound}, got {value!r}")
    return float(value)


def _count(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


@dataclass(frozen=True, kw_only=True)
class DualThresholdSettings:
    """Thresholds, counts, blanking and amplitudes of a dual-threshold policy."""

    lower: float
    """Termination threshold, biomarker unit: stimulation stops after the value stays below it."""
    upper: float
    """Onset threshold, biomarker unit (>= ``lower``): stimulation starts after the value stays
    above it."""
    onset_windows: int = 1
    """Consecutive decisions above ``upper`` that switch stimulation on, >= 1."""
    termination_windows: int = 1
    """Consecutive decisions below ``lower`` that switch stimulation off, >= 1."""
    blanking_s: float = 0.0
    """After each state change the biomarker is ignored for this long (the stimulation artifact
    and the brain's response would otherwise re-trigger the detector), s, >= 0."""
    on_amplitude: float
    """Amplitude asked for in the ``on`` state, stimulator unit (mA, %MSO), >= 0."""
    off_amplitude: float = 0.0
    """Amplitude asked for in the ``off`` state, stimulator unit, >= 0."""
    ramp_up_per_s: float = 0.5
    """Fastest rise asked for, unit/s."""
    ramp_down_per_s: float = 1.0
    """Fastest fall asked for, unit/s."""
    value_index: int = 0
    """Column of the row compared with the thresholds: 0 for a one-element biomarker row, the
    class column for a probability row."""

    def __post_init__(self) -> None:
        lower = _finite("lower", self.lower)
        upper = _finite("upper", self.upper)
        if lower > upper:
            raise ValueError(f"lower must be <= upper, got lower={lower}, upper={upper}")
        _count("onset_windows", self.onset_windows, 1)
        _count("termination_windows", self.termination_windows, 1)
        _count("value_index", self.value_index, 0)
        _finite("blanking_s", self.blanking_s, 0.0)
        _finite("on_amplitude", self.on_amplitude, 0.0)
        _finite("off_amplitude", self.off_amplitude, 0.0)
        check_rate("ramp_up_per_s", self.ramp_up_per_s)
        check_rate("ramp_down_per_s", self.ramp_down_per_s)

    @classmethod
    def from_baseline(
        cls,
        values: np.ndarray,
        lower_percentile: float,
        upper_percentile: float,
        **rest: object,
    ) -> DualThresholdSettings:
        """Settings whose thresholds are percentiles of a baseline recording of the biomarker.

        Parameters
        ----------
        values : array, shape (n_values,)
            Biomarker values of the baseline (one per decision); non-finite values are skipped.
        lower_percentile, upper_percentile : float
            Percentiles (0–100, lower <= upper) that become ``lower`` and ``upper``.
        **rest
            The other settings (``on_amplitude`` is required).

        Returns
        -------
        settings : DualThresholdSettings
        """
        lo = _finite("lower_percentile", lower_percentile, 0.0)
        hi = _finite("upper_percentile", upper_percentile, 0.0)
        if not lo <= hi <= 100:
            raise ValueError(
                f"lower_percentile and upper_percentile must satisfy 0 <= lower <= upper <= 100, "
                f"got lower_percentile={lower_percentile}, upper_percentile={upper_percentile}"
            )
        values = np.asarray(values, dtype=np.float64).ravel()
        values = values[np.isfinite(values)]
        if values.size < 2:
            raise ValueError(
                f"values must hold at least 2 finite baseline values, got {values.size}"
            )
        lower, upper = np.percentile(values, [lo, hi])
        return cls(lower=float(lower), upper=float(upper), **rest)

    def with_thresholds(self, lower: float, upper: float) -> DualThresholdSettings:
        """A copy with new thresholds (settings are frozen; build a new controller with it)."""
        return replace(self, lower=lower, upper=upper)


class DualThresholdController(RampedPolicy):
    """Switches between an ``off`` and an ``on`` amplitude with hysteresis and blanking.

    Parameters
    ----------
    settings : DualThresholdSettings

    Notes
    -----
    As the Summit RC+S adaptive mode: in the ``off`` state, ``onset_windows`` consecutive
    decisions with the value above ``upper`` switch it on; in the ``on`` state,
    ``termination_windows`` consecutive decisions below ``lower`` switch it off; values between
    the thresholds reset the count and hold the state. During ``blanking_s`` after a change the
    counts do not advance. The output ramps towards the state's amplitude at the ramp rates.
    A row holding a non-finite value changes nothing.
    """

    def __init__(self, settings: DualThresholdSettings) -> None:
        self.settings = settings
        self._ramp = RampLimiter(
            settings.ramp_up_per_s, settings.ramp_down_per_s, settings.off_amplitude
        )
        self.n_changes = 0
        """State changes since the controller was built (``reset`` does not clear it)."""
        self.reset()

    @property
    def state(self) -> str:
        """``"on"`` or ``"off"``."""
        return self._state

    def reset(self, amplitude: float | None = None) -> None:
        """Start over in the ``off`` state from ``amplitude`` (default ``off_amplitude``).

        After a watchdog recovery the engine passes the governor's actual output: the policy
        ramps on from there, and switches on again only after ``onset_windows`` fresh decisions.
        """
        self._ramp.reset(self.settings.off_amplitude if amplitude is None else float(amplitude))
        self._state = STATE_OFF
        self._count = 0
        self._changed_at: float | None = None

    def __call__(self, row: np.ndarray, time: float) -> float:
        """Requested amplitude after one decision.

        Parameters
        ----------
        row : array, shape (n_values,)
            The biomarker value (shape (1,)) or the class probabilities of the newest window.
        time : float
            Timestamp of the newest sample of that window, s.

        Returns
        -------
        amplitude : float
            Stimulator unit.
        """
        s = self.settings
        row = np.asarray(row, dtype=np.float64)
        if not np.all(np.isfinite(row)):
            return self.amplitude
        blanked = self._changed_at is not None and time - self._changed_at < s.blanking_s
        if not blanked:
            value = float(row[s.value_index])
            if self._state == STATE_OFF:
                self._count = self._count + 1 if value > s.upper else 0
                if self._count >= s.onset_windows:
                    self._switch(STATE_ON, time)
            else:
                self._count = self._count + 1 if value < s.lower else 0
                if self._count >= s.termination_windows:
                    self._switch(STATE_OFF, time)
        target = s.on_amplitude if self._state == STATE_ON else s.off_amplitude
        return self._ramp(target, time)

    def _switch(self, state: str, time: float) -> None:
        self._state = state
        self._count = 0
        self._changed_at = time
        self.n_changes += 1
