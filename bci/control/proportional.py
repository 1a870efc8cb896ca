"""Proportional policy: a class probability drives the stimulation amplitude between limits."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ProportionalSettings:
    """Maps a probability onto an amplitude with ramp limits (adaptive-DBS style)."""

    target_index: int
    """Column of the probability that drives the amplitude."""
    p_low: float = 0.5
    """Probability at which the amplitude leaves the floor."""
    p_high: float = 0.9
    """Probability at which the amplitude reaches the ceiling."""
    floor: float = 0.0
    """Lowest amplitude asked for (stimulator unit, e.g. mA)."""
    ceiling: float = 1.0
    """Highest amplitude asked for (stimulator unit)."""
    ramp_up_per_s: float = 0.5
    """Fastest rise asked for, unit/s."""
    ramp_down_per_s: float = 1.0
    """Fastest fall asked for, unit/s."""
    abstain_below: float = 0.0
    """Hold the amplitude while the most probable class is below this probability (the decoder
    is unsure); 0 never abstains."""

    def __post_init__(self) -> None:
        if not 0 <= self.p_low < self.p_high <= 1:
            raise ValueError(
                f"p_low and p_high must satisfy 0 <= p_low < p_high <= 1, got p_low="
                f"{self.p_low}, p_high={self.p_high}."
            )
        if not 0 <= self.floor <= self.ceiling:
            raise ValueError(
                f"floor and ceiling must satisfy 0 <= floor <= ceiling, got floor={self.floor}, "
                f"ceiling={self.ceiling}."
            )
        if not 0 <= self.abstain_below <= 1:
            raise ValueError(f"abstain_below must be within [0, 1], got {self.abstain_below}.")
        if self.ramp_up_per_s <= 0 or self.ramp_down_per_s <= 0:
            raise ValueError(
                f"ramp_up_per_s and ramp_down_per_s must be > 0 unit/s, got "
                f"{self.ramp_up_per_s}, {self.ramp_down_per_s}."
            )


class ProportionalController:
    """Amplitude = floor + (ceiling − floor) · clip((p − p_low) / (p_high − p_low), 0, 1),
    approached no faster than the ramp rates; held where it is while the decoder abstains
    (its most probable class below ``abstain_below``).

    Parameters
    ----------
    settings : ProportionalSettings
    """

    def __init__(self, settings: ProportionalSettings) -> None:
        self.settings = settings
        self.reset()

    def reset(self, amplitude: float | None = None) -> None:
        """Start over from ``amplitude`` (default: the floor, as at the start of a block).

        After a watchdog recovery the engine passes the governor's actual output, so the
        policy ramps on from where the stimulator is rather than from the floor.
        """
        self.amplitude = self.settings.floor if amplitude is None else float(amplitude)
        self._last_time: float | None = None

    def target(self, proba: np.ndarray) -> float:
        """The amplitude the policy aims at for one row of probabilities."""
        s = self.settings
        p = float(proba[s.target_index])
        level = min(max((p - s.p_low) / (s.p_high - s.p_low), 0.0), 1.0)
        return s.floor + (s.ceiling - s.floor) * level

    def __call__(self, proba: np.ndarray, time: float) -> float:
        """Requested amplitude after one decision.

        Parameters
        ----------
        proba : array, shape (n_classes,)
            Class probabilities of the newest window.
        time : float
            Timestamp of the newest sample of that window, s.
        """
        s = self.settings
        target = self.target(proba)
        if not np.isfinite(target):
            return self.amplitude  # the engine trips the governor on non-finite decisions
        dt = 0.0 if self._last_time is None else max(time - self._last_time, 0.0)
        self._last_time = time
        if proba.max() < s.abstain_below:
            return self.amplitude
        step = target - self.amplitude
        limit = (s.ramp_up_per_s if step > 0 else s.ramp_down_per_s) * dt
        self.amplitude += float(np.clip(step, -limit, limit))
        return self.amplitude
