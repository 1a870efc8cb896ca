"""Proportional policy (adaptive-DBS style): a biomarker or a decoder probability drives the
stimulation amplitude between a floor and a ceiling, with separate up and down ramp rates."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bci.control.ramp import RampedPolicy, RampLimiter, check_rate


@dataclass(frozen=True)
class ProportionalSettings:
    """Maps a probability or biomarker value onto an amplitude with ramp limits."""

    target_index: int
    """Column of the row that drives the amplitude: the class probability's column, or 0 for a
    one-element biomarker row."""
    p_low: float = 0.5
    """Value at which the amplitude leaves the floor (probability, or normalised biomarker)."""
    p_high: float = 0.9
    """Value at which the amplitude reaches the ceiling."""
    floor: float = 0.0
    """Lowest amplitude asked for (stimulator unit, e.g. mA)."""
    ceiling: float = 1.0
    """Highest amplitude asked for (stimulator unit)."""
    ramp_up_per_s: float = 0.5
    """Fastest rise asked for, unit/s."""
    ramp_down_per_s: float = 1.0
    """Fastest fall asked for, unit/s."""
    abstain_below: float = 0.0
    """Hold the amplitude while the row's largest value is below this probability (the decoder
    is unsure); only meaningful for probability rows; 0 never abstains."""

    def __post_init__(self) -> None:
        if isinstance(self.target_index, bool) or not isinstance(
            self.target_index, int | np.integer
        ):
            raise ValueError(f"target_index must be an integer >= 0, got {self.target_index!r}")
        if self.target_index < 0:
            raise ValueError(f"target_index must be an integer >= 0, got {self.target_index!r}")
        # a biomarker relative to its baseline may exceed 1; a probability row never reaches
        # a p_high above 1, which the protocol refuses for decoder input
        if not (0 <= self.p_low < self.p_high and math.isfinite(self.p_high)):
            raise ValueError(
                f"p_low and p_high must satisfy 0 <= p_low < p_high (finite), got p_low="
                f"{self.p_low}, p_high={self.p_high}."
            )
        if not 0 <= self.floor <= self.ceiling:
            raise ValueError(
                f"floor and ceiling must satisfy 0 <= floor <= ceiling, got floor={self.floor}, "
                f"ceiling={self.ceiling}."
            )
        if not 0 <= self.abstain_below <= 1:
            raise ValueError(f"abstain_below must be within [0, 1], got {self.abstain_below}.")
        check_rate("ramp_up_per_s", self.ramp_up_per_s)
        check_rate("ramp_down_per_s", self.ramp_down_per_s)


class ProportionalController(RampedPolicy):
    """Amplitude = floor + (ceiling − floor) · clip((p − p_low) / (p_high − p_low), 0, 1),
    approached no faster than the ramp rates; held where it is while the decoder abstains
    (its most probable class below ``abstain_below``).

    Parameters
    ----------
    settings : ProportionalSettings

    Notes
    -----
    The adaptive deep-brain-stimulation scheme (Little et al. 2013, Ann Neurol 74:449): the
    amplitude follows a biomarker between limits, rising and falling at separate rates. The
    engine passes either the decoder's probability row or a one-element biomarker row with
    ``target_index`` 0. A row holding a non-finite value changes nothing (the engine trips the
    governor on non-finite decisions).
    """

    def __init__(self, settings: ProportionalSettings) -> None:
        self.settings = settings
        self._ramp = RampLimiter(settings.ramp_up_per_s, settings.ramp_down_per_s, settings.floor)

    def reset(self, amplitude: float | None = None) -> None:
        """Start over from ``amplitude`` (default: the floor, as at the start of a block).

        After a watchdog recovery the engine passes the governor's actual output, so the
        policy ramps on from where the stimulator is rather than from the floor.
        """
        self._ramp.reset(self.settings.floor if amplitude is None else float(amplitude))

    def target(self, proba: np.ndarray) -> float:
        """The amplitude the policy aims at for one row.

        Parameters
        ----------
        proba : array, shape (n_classes,) or (1,)
            Class probabilities, or one biomarker value.

        Returns
        -------
        target : float
            Stimulator unit; nan when the driving value is not finite.
        """
        s = self.settings
        p = float(proba[s.target_index])
        level = min(max((p - s.p_low) / (s.p_high - s.p_low), 0.0), 1.0)
        return s.floor + (s.ceiling - s.floor) * level if np.isfinite(p) else float("nan")

    def __call__(self, proba: np.ndarray, time: float) -> float:
        """Requested amplitude after one decision.

        Parameters
        ----------
        proba : array, shape (n_classes,) or (1,)
            Class probabilities of the newest window, or one biomarker value.
        time : float
            Timestamp of the newest sample of that window, s.

        Returns
        -------
        amplitude : float
            Stimulator unit.
        """
        proba = np.asarray(proba, dtype=np.float64)
        if not np.all(np.isfinite(proba)):
            return self.amplitude
        if proba.max() < self.settings.abstain_below:
            return self._ramp.hold(time)
        return self._ramp(self.target(proba), time)
