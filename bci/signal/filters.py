"""Causal IIR filters that run chunk by chunk: Butterworth and notch.

Both are second-order-section (SOS) cascades with one filter state per channel. Streaming a
recording through a stage in any split gives exactly ``scipy.signal.sosfilt(stage.sos, x,
axis=0, zi=stage.initial_state(x[0]))``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import signal as sps

from bci.signal._checks import FloatArray, check_chunk, check_int_range, check_positive

FilterKind = Literal["bandpass", "highpass", "lowpass", "bandstop"]
_KINDS: tuple[str, ...] = ("bandpass", "highpass", "lowpass", "bandstop")
# Which cut-offs each kind needs: (needs low_hz, needs high_hz).
_NEEDS: dict[str, tuple[bool, bool]] = {
    "bandpass": (True, True),
    "bandstop": (True, True),
    "highpass": (True, False),
    "lowpass": (False, True),
}


class _SosStage:
    """Streaming SOS cascade with per-channel state, optionally seeded from the first sample."""

    def __init__(self, sos: FloatArray, seed_from_first: bool) -> None:
        self._sos = np.ascontiguousarray(sos, dtype=np.float64)
        self._seed_from_first = seed_from_first
        # The steady state for a unit step, per section; scaled by x[0] to seed each channel.
        self._zi_unit = sps.sosfilt_zi(self._sos)
        self._zi: FloatArray | None = None

    @property
    def sos(self) -> FloatArray:
        """array, shape (n_sections, 6): a copy of the filter's second-order sections."""
        return self._sos.copy()

    @property
    def zi(self) -> FloatArray | None:
        """array, shape (n_sections, 2, n_channels), or None before the first sample."""
        return self._zi

    def initial_state(self, first_sample: FloatArray) -> FloatArray:
        """Filter state that a stream starting with ``first_sample`` begins from.

        Parameters
        ----------
        first_sample : array, shape (n_channels,)
            The stream's first sample, in the stream's unit.

        Returns
        -------
        zi : array, shape (n_sections, 2, n_channels)
            The steady state for a constant input equal to ``first_sample`` when the
            settings' ``seed_from_first`` is true (no start-up transient), zeros otherwise.
            Pass it as ``zi`` to ``scipy.signal.sosfilt(sos, x, axis=0, zi=zi)``.
        """
        first = np.asarray(first_sample, dtype=np.float64)
        if first.ndim != 1:
            raise ValueError(
                f"first_sample must have shape (n_channels,), got an array of shape {first.shape}"
            )
        if not self._seed_from_first:
            return np.zeros((*self._zi_unit.shape, first.shape[0]))
        return self._zi_unit[:, :, np.newaxis] * first[np.newaxis, np.newaxis, :]

    def reset(self) -> None:
        """Forget the filter state; the next sample seeds it again."""
        self._zi = None

    def __call__(self, data: FloatArray, times: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Filter one chunk.

        Parameters
        ----------
        data : array, shape (n_samples, n_channels)
            Samples, any unit; the output has the same unit.
        times : array, shape (n_samples,), s
            LSL timestamps of the samples.

        Returns
        -------
        filtered : array, shape (n_samples, n_channels)
            The filtered samples.
        times : array, shape (n_samples,), s
            The same timestamps (IIR filters do not delay the time base).
        """
        data, times = check_chunk(data, times)
        if data.shape[0] == 0:
            return np.empty((0, data.shape[1])), times
        if self._zi is None or self._zi.shape[2] != data.shape[1]:
            # New stream or new channel layout: start from the steady state of this sample.
            self._zi = self.initial_state(data[0])
        filtered, self._zi = sps.sosfilt(self._sos, data, axis=0, zi=self._zi)
        return filtered, times


def _check_cutoff(name: str, value: float | None, nyquist: float) -> float:
    cutoff = check_positive(name, value, unit="Hz")
    if cutoff >= nyquist:
        raise ValueError(
            f"{name} must be > 0 and < sfreq/2 = {nyquist:g} Hz (the Nyquist frequency), "
            f"got {value!r}"
        )
    return cutoff


@dataclass(frozen=True, kw_only=True)
class ButterworthSettings:
    """Settings of a causal Butterworth filter (a new filter for new settings)."""

    kind: FilterKind
    """Filter type: ``"bandpass"``, ``"highpass"``, ``"lowpass"`` or ``"bandstop"``."""

    order: int = 4
    """Butterworth order, 1 to 10. Band filters (bandpass, bandstop) end up twice this order."""

    low_hz: float | None = None
    """Lower cut-off (-3 dB), Hz. Required for bandpass, bandstop and highpass; None otherwise."""

    high_hz: float | None = None
    """Upper cut-off (-3 dB), Hz. Required for bandpass, bandstop and lowpass; None otherwise."""

    sfreq: float
    """Sampling rate of the stream, Hz."""

    seed_from_first: bool = True
    """Seed the state from the first sample, so that a DC offset causes no start-up transient."""

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"kind must be one of {list(_KINDS)}, got {self.kind!r}")
        check_int_range("order", self.order, 1, 10)
        nyquist = check_positive("sfreq", self.sfreq, unit="Hz") / 2
        needs_low, needs_high = _NEEDS[self.kind]
        for name, value, needed in (
            ("low_hz", self.low_hz, needs_low),
            ("high_hz", self.high_hz, needs_high),
        ):
            if needed:
                if value is None:
                    raise ValueError(f"{name} is required for kind={self.kind!r}, got None")
                _check_cutoff(name, value, nyquist)
            elif value is not None:
                raise ValueError(f"{name} must be None for kind={self.kind!r}, got {value!r}")
        if needs_low and needs_high and self.low_hz >= self.high_hz:
            raise ValueError(
                f"low_hz must be < high_hz for kind={self.kind!r}, "
                f"got low_hz={self.low_hz!r}, high_hz={self.high_hz!r}"
            )


class ButterworthFilter(_SosStage):
    """Causal Butterworth filter, streamed chunk by chunk.

    Parameters
    ----------
    settings : ButterworthSettings
        Type, order, cut-offs and sampling rate.

    Notes
    -----
    Designed with ``scipy.signal.butter(..., output="sos")``. The state is per channel and
    resets when the number of channels changes; an empty chunk leaves it untouched.
    """

    def __init__(self, settings: ButterworthSettings) -> None:
        self.settings = settings
        cutoffs = [hz for hz in (settings.low_hz, settings.high_hz) if hz is not None]
        cutoff = cutoffs[0] if len(cutoffs) == 1 else cutoffs
        sos = sps.butter(
            settings.order, cutoff, btype=settings.kind, fs=settings.sfreq, output="sos"
        )
        super().__init__(sos, settings.seed_from_first)


@dataclass(frozen=True, kw_only=True)
class NotchSettings:
    """Settings of a causal notch filter for line noise and its harmonics."""

    freq_hz: float = 50.0
    """Line frequency, Hz (50 in Europe, 60 in the Americas)."""

    quality: float = 30.0
    """Quality factor Q = centre frequency / -3 dB bandwidth, unitless; the same Q is used at
    every harmonic, so the notch widens with frequency."""

    harmonics: int = 1
    """How many multiples of ``freq_hz`` to remove (1 = the fundamental only). Those at or
    above the Nyquist frequency are skipped."""

    sfreq: float
    """Sampling rate of the stream, Hz."""

    seed_from_first: bool = True
    """Seed the state from the first sample, so that a DC offset causes no start-up transient."""

    def __post_init__(self) -> None:
        nyquist = check_positive("sfreq", self.sfreq, unit="Hz") / 2
        _check_cutoff("freq_hz", self.freq_hz, nyquist)
        check_positive("quality", self.quality)
        check_int_range("harmonics", self.harmonics, 1)


class NotchFilter(_SosStage):
    """Causal notch filter (``scipy.signal.iirnotch`` per harmonic, cascaded as SOS).

    Parameters
    ----------
    settings : NotchSettings
        Line frequency, quality factor, number of harmonics and sampling rate.

    Notes
    -----
    One second-order section per harmonic below the Nyquist frequency. The state is per
    channel and resets when the number of channels changes; an empty chunk leaves it untouched.
    """

    def __init__(self, settings: NotchSettings) -> None:
        self.settings = settings
        nyquist = settings.sfreq / 2
        sections = []
        for k in range(1, settings.harmonics + 1):
            freq = k * settings.freq_hz
            if freq >= nyquist or math.isclose(freq, nyquist):
                break
            b, a = sps.iirnotch(freq, settings.quality, fs=settings.sfreq)
            sections.append(np.concatenate([b, a]))
        super().__init__(np.vstack(sections), settings.seed_from_first)

    @property
    def freqs_hz(self) -> tuple[float, ...]:
        """The notched frequencies, Hz, one per section."""
        return tuple(self.settings.freq_hz * k for k in range(1, self.sos.shape[0] + 1))
