"""Decoder-class mapping: each decoded class asks for its own amplitude, gated by confidence."""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Real

import numpy as np

from bci.control.ramp import RampedPolicy, RampLimiter, check_rate


@dataclass(frozen=True, kw_only=True)
class ClassMapSettings:
    """One amplitude per decoder class, a confidence gate and ramp limits."""

    amplitudes: tuple[float, ...]
    """Amplitude asked for when each class wins, stimulator unit (mA, %MSO), >= 0, in the
    decoder's probability-column order; at least two."""
    abstain_below: float = 0.0
    """Keep the current target while the winning class's probability is below this; 0 never
    abstains."""
    ramp_up_per_s: float = 0.5
    """Fastest rise asked for, unit/s."""
    ramp_down_per_s: float = 1.0
    """Fastest fall asked for, unit/s."""

    def __post_init__(self) -> None:
        amplitudes = tuple(self.amplitudes)
        bad = [
            a
            for a in amplitudes
            if isinstance(a, bool) or not isinstance(a, Real) or not math.isfinite(a) or a < 0
        ]
        if len(amplitudes) < 2 or bad:
            raise ValueError(
                f"amplitudes must hold one finite amplitude >= 0 per class (at least 2), "
                f"got {self.amplitudes!r}"
            )
        object.__setattr__(self, "amplitudes", tuple(float(a) for a in amplitudes))
        if not 0 <= self.abstain_below <= 1:
            raise ValueError(f"abstain_below must be within [0, 1], got {self.abstain_below!r}")
        check_rate("ramp_up_per_s", self.ramp_up_per_s)
        check_rate("ramp_down_per_s", self.ramp_down_per_s)


class ClassMapController(RampedPolicy):
    """Target = ``amplitudes[argmax(row)]`` when the decoder is confident, approached at the
    ramp rates; while it abstains the previous target is kept.

    Parameters
    ----------
    settings : ClassMapSettings

    Notes
    -----
    The policy starts (and ``reset()`` restarts) at the lowest of ``amplitudes`` and holds there
    until the first confident decision. A row holding a non-finite value changes nothing.
    """

    def __init__(self, settings: ClassMapSettings) -> None:
        self.settings = settings
        self._ramp = RampLimiter(
            settings.ramp_up_per_s, settings.ramp_down_per_s, min(settings.amplitudes)
        )
        self.reset()

    @property
    def target(self) -> float:
        """The amplitude the policy is heading for, stimulator unit."""
        return self._target

    def reset(self, amplitude: float | None = None) -> None:
        """Start over from ``amplitude`` (default the lowest class amplitude) and hold it until
        the next confident decision."""
        start = min(self.settings.amplitudes) if amplitude is None else float(amplitude)
        self._ramp.reset(start)
        self._target = start

    def __call__(self, row: np.ndarray, time: float) -> float:
        """Requested amplitude after one decision.

        Parameters
        ----------
        row : array, shape (n_classes,)
            Class probabilities of the newest window, in the decoder's column order.
        time : float
            Timestamp of the newest sample of that window, s.

        Returns
        -------
        amplitude : float
            Stimulator unit.
        """
        amplitudes = self.settings.amplitudes
        row = np.asarray(row, dtype=np.float64)
        if row.shape != (len(amplitudes),):
            raise ValueError(
                f"row must have shape ({len(amplitudes)},), one probability per class of "
                f"amplitudes, got shape {row.shape}"
            )
        if not np.all(np.isfinite(row)):
            return self.amplitude
        if row.max() >= self.settings.abstain_below:
            self._target = amplitudes[int(np.argmax(row))]
        return self._ramp(self._target, time)
