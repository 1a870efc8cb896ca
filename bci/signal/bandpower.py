"""Band-power features from windows: Hann-windowed periodogram, mean PSD per band."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import signal as sps

from bci.signal._checks import FloatArray, check_n_channels, check_names, check_positive

# The smallest positive float64: a flat channel's zero power gives a finite log feature.
_POWER_FLOOR = float(np.finfo(np.float64).tiny)


def _check_band(name: str, band: object, sfreq: float) -> tuple[float, float]:
    nyquist = sfreq / 2
    allowed = f"a pair (low_hz, high_hz) with 0 <= low_hz < high_hz <= sfreq/2 = {nyquist:g} Hz"
    try:
        low, high = (float(edge) for edge in band)  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be {allowed}, got {band!r}") from None
    if not (math.isfinite(low) and math.isfinite(high) and 0 <= low < high <= nyquist):
        raise ValueError(f"{name} must be {allowed}, got {band!r}")
    return low, high


@dataclass(frozen=True)
class BandPowerSettings:
    """Settings of band-power features."""

    bands: tuple[tuple[float, float], ...]
    """Frequency bands, each (low_hz, high_hz) in Hz, both edges included, e.g.
    ``((8.0, 12.0), (13.0, 30.0))`` for mu and beta."""

    sfreq: float
    """Sampling rate of the windows, Hz."""

    log: bool = True
    """Return log10 of the power (features closer to Gaussian) rather than the power."""

    def __post_init__(self) -> None:
        sfreq = check_positive("sfreq", self.sfreq, unit="Hz")
        if isinstance(self.bands, str) or not isinstance(self.bands, Sequence):
            raise ValueError(
                f"bands must be a sequence of (low_hz, high_hz) pairs, got {self.bands!r}"
            )
        if len(self.bands) == 0:
            raise ValueError("bands must hold at least one (low_hz, high_hz) pair, got none")
        bands = tuple(_check_band(f"bands[{i}]", b, sfreq) for i, b in enumerate(self.bands))
        object.__setattr__(self, "bands", bands)


def _band_weights(
    n_length: int, sfreq: float, bands: tuple[tuple[float, float], ...]
) -> tuple[FloatArray, FloatArray]:
    """Taper and the matrix that turns squared rfft magnitudes into mean PSD per band.

    Returns
    -------
    taper : array, shape (n_length,)
        Periodic Hann window (as ``scipy.signal.periodogram`` uses).
    weights : array, shape (n_freqs, n_bands)
        One-sided density scaling times 1/(number of bins in the band) for in-band bins.
    """
    taper = sps.get_window("hann", n_length)
    freqs = np.fft.rfftfreq(n_length, 1 / sfreq)
    # One-sided PSD: every bin but DC (and Nyquist for even lengths) carries both halves.
    scale = np.full(freqs.shape, 2 / (sfreq * np.sum(taper**2)))
    scale[0] /= 2
    if n_length % 2 == 0:
        scale[-1] /= 2
    weights = np.zeros((freqs.shape[0], len(bands)))
    for b, (low, high) in enumerate(bands):
        in_band = (freqs >= low) & (freqs <= high)
        n_bins = int(in_band.sum())
        if n_bins == 0:
            raise ValueError(
                f"band ({low:g}, {high:g}) Hz holds no frequency bin of a {n_length}-sample "
                f"window (resolution {sfreq / n_length:g} Hz); widen the band or lengthen "
                "the window"
            )
        weights[in_band, b] = scale[in_band] / n_bins
    return taper, weights


def _mean_band_psd(windows: FloatArray, taper: FloatArray, weights: FloatArray) -> FloatArray:
    """Mean PSD per band, shape (n_windows, n_channels, n_bands), unit²/Hz."""
    centred = windows - windows.mean(axis=1, keepdims=True)
    centred *= taper[np.newaxis, :, np.newaxis]
    spectrum = np.fft.rfft(centred, axis=1)
    power = spectrum.real**2 + spectrum.imag**2  # (n_windows, n_freqs, n_channels)
    return np.matmul(power.transpose(0, 2, 1), weights)


def band_power(window: FloatArray, sfreq: float, band: tuple[float, float]) -> FloatArray:
    """Mean power spectral density of one window in one band.

    Parameters
    ----------
    window : array, shape (n_length, n_channels) or (n_length,), V
        One window of samples.
    sfreq : float
        Sampling rate, Hz.
    band : tuple of float
        (low_hz, high_hz), both edges included.

    Returns
    -------
    power : array, shape (n_channels,) or (), V²/Hz
        Mean of the one-sided Hann-windowed periodogram (mean removed first, density
        scaling, as ``scipy.signal.periodogram(window, sfreq, window="hann", axis=0)``)
        over the bins in the band.
    """
    sfreq = check_positive("sfreq", sfreq, unit="Hz")
    low_high = _check_band("band", band, sfreq)
    samples = np.asarray(window, dtype=np.float64)
    if samples.ndim not in (1, 2) or samples.shape[0] == 0:
        raise ValueError(
            "window must have shape (n_length, n_channels) or (n_length,) with n_length >= 1, "
            f"got an array of shape {samples.shape}"
        )
    as_2d = samples.reshape(samples.shape[0], -1)
    taper, weights = _band_weights(samples.shape[0], sfreq, (low_high,))
    power = _mean_band_psd(as_2d[np.newaxis], taper, weights)[0, :, 0]
    return power if samples.ndim == 2 else power[0]


class BandPower:
    """Band-power features of each window.

    Parameters
    ----------
    settings : BandPowerSettings
        Bands, sampling rate, and whether to take log10.
    ch_names : sequence of str, optional
        The windows' channels; when given, the stage names its features in ``ch_names_out``
        and checks every input's channel count.

    Notes
    -----
    Features are ordered channel-major: feature ``c * n_bands + b`` is channel ``c`` in band
    ``b``. Stateless apart from a cache of the spectral weights for the last window length.
    """

    def __init__(self, settings: BandPowerSettings, ch_names: Sequence[str] | None = None) -> None:
        self.settings = settings
        self._ch_names = None if ch_names is None else check_names("ch_names", ch_names)
        self.ch_names_out: tuple[str, ...] | None = None
        """Feature names ``"<channel> <low>-<high> Hz"``, or None without ``ch_names``."""
        if self._ch_names is not None:
            self.ch_names_out = tuple(
                f"{ch} {low:g}-{high:g} Hz" for ch in self._ch_names for low, high in settings.bands
            )
        self._n_length = -1
        self._taper = np.empty(0)
        self._weights = np.empty((0, 0))

    def __call__(self, windows: FloatArray, times: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Compute the features of a batch of windows.

        Parameters
        ----------
        windows : array, shape (n_windows, n_length, n_channels), V
            Windows, oldest sample first (as :class:`SlidingWindow` emits them).
        times : array, shape (n_windows,), s
            Timestamp of each window's newest sample.

        Returns
        -------
        features : array, shape (n_windows, n_channels * n_bands)
            Mean PSD per channel and band, V²/Hz, or its log10 when ``settings.log``.
        times : array, shape (n_windows,), s
            The same timestamps.
        """
        windows = np.asarray(windows, dtype=np.float64)
        times = np.asarray(times, dtype=np.float64)
        if windows.ndim != 3:
            raise ValueError(
                "windows must have shape (n_windows, n_length, n_channels), "
                f"got an array of shape {windows.shape}"
            )
        if times.shape != (windows.shape[0],):
            raise ValueError(
                f"times must have shape (n_windows,) = ({windows.shape[0]},), got {times.shape}"
            )
        if self._ch_names is not None:
            check_n_channels(len(self._ch_names), windows, "BandPower")
        n_windows, n_length, n_channels = windows.shape
        n_features = n_channels * len(self.settings.bands)
        if n_windows == 0:
            return np.empty((0, n_features)), times
        if n_length != self._n_length:
            self._taper, self._weights = _band_weights(
                n_length, self.settings.sfreq, self.settings.bands
            )
            self._n_length = n_length
        features = _mean_band_psd(windows, self._taper, self._weights).reshape(
            n_windows, n_features
        )
        if self.settings.log:
            np.maximum(features, _POWER_FLOOR, out=features)
            np.log10(features, out=features)
        return features, times
