"""Electrical artifacts that ongoing transcranial stimulation adds to the EEG.

tDCS adds a DC offset, tACS a sinusoid at the stimulation frequency and a pulse train one
spike per pulse; each is largest next to the stimulation electrodes
(``stimulation.artifact_spread``). Waveforms are computed from absolute sample numbers so they
are continuous across chunks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .stimulation import (
    PULSE_ARTIFACT_UV_PER_MA,
    TACS_ARTIFACT_UV_PER_MA,
    TDCS_ARTIFACT_UV_PER_MA,
    artifact_spread,
)


@dataclass(frozen=True)
class _Active:
    start: int
    amplitude_ma: float
    frequency_hz: float
    spread: np.ndarray


class StimArtifacts:
    """The artifacts of the stimulation currently running, one state per modality.

    Parameters
    ----------
    positions : array, shape (n_channels, 3)
        Electrode positions, m.
    sfreq : float
        Sampling rate, Hz.
    """

    def __init__(self, positions: np.ndarray, sfreq: float) -> None:
        self._positions = positions
        self._sfreq = sfreq
        self._active: dict[str, _Active] = {}

    def set(
        self,
        modality: str,
        start: int,
        amplitude_ma: float,
        frequency_hz: float,
        anode: str | None,
        cathode: str | None,
    ) -> None:
        """Replace the ``modality`` state from absolute sample ``start`` on (0 mA stops it)."""
        periodic = modality in ("tacs", "pulse_train")
        if amplitude_ma == 0 or (periodic and frequency_hz <= 0):
            self._active.pop(modality, None)
            return
        spread = artifact_spread(self._positions, anode, cathode)
        self._active[modality] = _Active(start, amplitude_ma, frequency_hz, spread)

    def __call__(self, index: np.ndarray) -> np.ndarray | None:
        """Artifact at absolute samples ``index``, shape (len(index), n_channels), µV; None when
        no stimulation is running."""
        if not self._active:
            return None
        out = np.zeros((index.size, self._positions.shape[0]))
        for modality, state in self._active.items():
            rel = index - state.start
            if modality == "tdcs":
                wave = np.full(index.size, TDCS_ARTIFACT_UV_PER_MA * state.amplitude_ma)
            elif modality == "tacs":
                cycles = np.mod(rel * (state.frequency_hz / self._sfreq), 1.0)
                wave = TACS_ARTIFACT_UV_PER_MA * state.amplitude_ma * np.sin(2 * math.pi * cycles)
            else:  # pulse_train: one-sample spike whenever a new period starts
                period = np.floor(rel * (state.frequency_hz / self._sfreq))
                previous = np.floor((rel - 1) * (state.frequency_hz / self._sfreq))
                fired = (period != previous) | (rel == 0)
                wave = PULSE_ARTIFACT_UV_PER_MA * abs(state.amplitude_ma) * fired
            out += np.multiply.outer(wave, state.spread)
        return out
