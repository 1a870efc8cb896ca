"""Phase-locked trigger: fires a pulse at a chosen phase of an ongoing rhythm (mu/alpha).

Causal phase estimators: ``"echt"``, the endpoint-corrected Hilbert transform (Schreglmann et
al. 2021, Nat Commun 12:363: window FFT, negative frequencies zeroed, times a causal 2nd-order
Butterworth band-pass's response, inverse FFT, newest sample); ``"ar"``, AR forward prediction
(Zrenner et al. 2018, Brain Stimul 11:374: zero-phase band-pass, drop the distorted edges,
Yule-Walker fit, predict past the edge, Hilbert transform, read the present). Each estimator's
own phase error on clean sinusoids, and the upstream filters' phase, are taken back out at the
estimated frequency. Cosine phase in degrees: 0° peak, ±180° trough.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Literal

import numpy as np
from scipy import signal as sps

PhaseMethod = Literal["echt", "ar"]
MontageKind = Literal["laplacian", "single"]
_METHODS = ("echt", "ar")
_ECHT_ORDER = 2  # Schreglmann et al. 2021's causal band-pass: short delay, little to correct
_AR_MAX_RATE_HZ = 500.0  # Zrenner 2018 fit the AR model at 500 Hz; higher rates only add cost
_FREQ_SPAN_S = 0.02  # phase slope span for the instantaneous frequency: a fifth of a 10 Hz cycle
_CALIBRATION_HOP_S = 0.01  # the engine's typical chunk interval


def _number(name: str, value: object, low: float, high: float, unit="", integer=False) -> float:
    kind = Integral if integer else Real
    if isinstance(value, bool) or not isinstance(value, kind) or not low <= value <= high:
        what = "an integer" if integer else "a number"
        raise ValueError(f"{name} must be {what} within [{low:g}, {high:g}]{unit}, got {value!r}")
    return float(value)


@dataclass(frozen=True, kw_only=True)
class PhaseTriggerSettings:
    """How the trigger estimates phase and when it fires."""

    sfreq: float
    """Sampling rate of the signal, Hz."""
    band_hz: tuple[float, float] = (8.0, 13.0)
    """Band of the rhythm, Hz (mu/alpha by default); 0 < low < high < sfreq/2."""
    method: PhaseMethod = "echt"
    """Phase estimator: ``"echt"`` (endpoint-corrected Hilbert) or ``"ar"`` (AR prediction)."""
    window_s: float = 0.5
    """Signal length each estimate uses, s; at least two cycles of the band's low edge."""
    target_deg: float = 180.0
    """Phase to fire at, degrees of cosine phase (0 peak, ±180 trough)."""
    power_percentile: float = 50.0
    """Fire only while the band amplitude is above this percentile of the baseline's, 0–100
    (0 opens the gate without ``calibrate``)."""
    refractory_s: float = 1.0
    """Least time between two pulses, s, >= 0."""
    max_lateness_deg: float = 20.0
    """Latest a pulse may come after the target phase and still fire, degrees, (0, 180]."""
    upstream_sos: tuple[tuple[float, ...], ...] = ()
    """Second-order sections of the causal filters the signal went through before the trigger
    (the engine's notch and band-pass; see ``pipeline_sos``); their phase at the estimated frequency
    is taken back out. Empty: none."""
    ar_order: int = 30
    """AR model order (``"ar"``), at the AR rate (<= 500 Hz)."""
    ar_edge_s: float = 0.064
    """Edge dropped after zero-phase filtering and predicted instead (``"ar"``), s."""

    def __post_init__(self) -> None:
        nyquist = _number("sfreq", self.sfreq, 1.0, 1e6, " Hz") / 2
        band = tuple(self.band_hz)
        valid = len(band) == 2 and all(isinstance(b, Real) for b in band)
        if not valid or not 0 < band[0] < band[1] < nyquist:
            raise ValueError(
                f"band_hz must satisfy 0 < low < high < sfreq/2 = {nyquist:g} Hz, "
                f"got {self.band_hz!r}"
            )
        object.__setattr__(self, "band_hz", (float(band[0]), float(band[1])))
        if self.method not in _METHODS:
            raise ValueError(f"method must be one of {list(_METHODS)}, got {self.method!r}")
        _number("window_s", self.window_s, 2.0 / band[0], 60.0, " s (two cycles of low)")
        _number("target_deg", self.target_deg, -360.0, 360.0, " degrees")
        _number("power_percentile", self.power_percentile, 0.0, 100.0)
        _number("refractory_s", self.refractory_s, 0.0, 3600.0, " s")
        _number("max_lateness_deg", self.max_lateness_deg, 1e-9, 180.0, " degrees")
        sos = np.asarray(self.upstream_sos, dtype=np.float64)
        if sos.size and (sos.ndim != 2 or sos.shape[1] != 6 or not np.all(np.isfinite(sos))):
            raise ValueError(f"upstream_sos must be finite, shape (n, 6), got shape {sos.shape}")
        _number("ar_order", self.ar_order, 2, 100, integer=True)
        _number("ar_edge_s", self.ar_edge_s, 0.0, self.window_s / 4, " s (a quarter window)")

    @property
    def n_samples(self) -> int:
        """Samples in one estimation window."""
        return round(self.window_s * self.sfreq)


@dataclass(frozen=True)
class PhaseDecision:
    """The trigger's reading of one window."""

    phase_deg: float
    """Cosine phase of the band at the newest sample, degrees in (-180, 180]."""
    frequency_hz: float
    """Instantaneous frequency, Hz (the band's centre when the estimate is unreliable)."""
    amplitude: float
    """Band amplitude at the newest sample, signal unit."""
    gate_open: bool
    """Whether the amplitude is above the calibrated gate."""
    fire_at: float
    """Predicted time of the next target-phase crossing, s on the samples' clock; nan while the
    gate is closed or within the refractory period."""


def _analytic_response(sfreq: float, band: tuple[float, float], n: int) -> np.ndarray:
    """FFT-domain ECHT response: one-sided (×2) spectrum times the causal band-pass's response."""
    b, a = sps.butter(_ECHT_ORDER, band, btype="bandpass", fs=sfreq)
    return _one_sided(n) * sps.freqz(b, a, np.abs(np.fft.fftfreq(n, 1.0 / sfreq)), fs=sfreq)[1]


def _one_sided(n: int) -> np.ndarray:
    """FFT weights that make an analytic signal (as ``scipy.signal.hilbert``): 1, 2…2, 1, 0…0."""
    weights = np.where(np.arange(n) < (n + 1) // 2, 2.0, 0.0)
    weights[0] = 1.0
    if n % 2 == 0:
        weights[n // 2] = 1.0
    return weights


class PhaseTrigger:
    """Causal phase estimate, amplitude gate, next-crossing prediction and refractory period.

    Parameters
    ----------
    settings : PhaseTriggerSettings

    Notes
    -----
    Responses, filter matrices and phase corrections are computed once, here (tens of ms): a
    call costs a few FFTs and no filter design.
    """

    def __init__(self, settings: PhaseTriggerSettings) -> None:
        self.settings = s = settings
        self._n = s.n_samples
        low, high = s.band_hz
        self._centre = (low + high) / 2
        self._grid = np.linspace(low, high, 256)
        if s.method == "echt":
            self._response = _analytic_response(s.sfreq, s.band_hz, self._n)
            self._rate = s.sfreq
        else:
            self._q = max(1, math.ceil(s.sfreq / _AR_MAX_RATE_HZ - 1e-9))
            self._rate = s.sfreq / self._q
            self._edge = max(1, round(s.ar_edge_s * self._rate))
            n_fit = (self._n - 1) // self._q + 1 - 2 * self._edge
            if n_fit < 3 * s.ar_order:
                raise ValueError(
                    f"window_s={s.window_s} leaves {n_fit} samples for the AR fit after the "
                    f"edges; need >= 3·ar_order = {3 * s.ar_order}: lengthen window_s"
                )
            # Zero-phase band-pass (forward-backward, Gustafsson's initial conditions: the
            # fewest edge transients on a short window) is linear in the window: one matrix,
            # already decimated and without the edges.
            b, a = sps.butter(2, s.band_hz, btype="bandpass", fs=s.sfreq)
            rows = np.arange(self._n - 1, -1, -self._q)[::-1][self._edge : -self._edge]
            self._past = sps.filtfilt(b, a, np.eye(self._n), axis=0, method="gust")[rows]
            lags = np.arange(s.ar_order)
            self._toeplitz = np.abs(lags[:, np.newaxis] - lags)  # Yule-Walker matrix indices
            self._one_sided = _one_sided(4 * self._edge)
        self._span = max(2, round(_FREQ_SPAN_S * self._rate))
        self._lag_rad = self._own_lag()
        if s.upstream_sos:
            upstream = sps.sosfreqz(np.asarray(s.upstream_sos), worN=self._grid, fs=s.sfreq)[1]
            self._lag_rad += np.unwrap(np.angle(upstream))
        self._threshold = 0.0 if s.power_percentile == 0 else math.nan
        self._last_fired: float | None = None

    @property
    def threshold(self) -> float:
        """Amplitude gate, signal unit; nan (gate closed) until ``calibrate``."""
        return self._threshold

    @property
    def n_samples(self) -> int:
        """Samples the trigger needs per call (``window_s`` · ``sfreq``)."""
        return self._n

    def reset(self) -> None:
        """Forget the last pulse (the refractory period); the calibration is kept."""
        self._last_fired = None

    def estimate(self, window: np.ndarray) -> tuple[float, float, float]:
        """Phase, frequency and amplitude of the band at the newest sample.

        Parameters
        ----------
        window : array, shape (n_samples,)
            The newest ``n_samples`` of the signal (longer windows are cut to them).

        Returns
        -------
        phase_deg : float
            Cosine phase, degrees in (-180, 180].
        frequency_hz : float
            Instantaneous frequency, Hz.
        amplitude : float
            Band amplitude, signal unit.
        """
        z, freq = self._raw(self._check(window))
        low, high = self.settings.band_hz
        if not low <= freq <= high:
            freq = self._centre  # a phase slip or no rhythm: fall back to the band's centre
        phase = float(np.angle(z)) - float(np.interp(freq, self._grid, self._lag_rad))
        phase_deg = 180.0 - (180.0 - math.degrees(phase)) % 360.0
        return phase_deg, freq, float(abs(z))

    def _raw(self, x: np.ndarray) -> tuple[complex, float]:
        """Uncorrected analytic value at the present, and the frequency, Hz."""
        z, present = self._analytic(x)
        tail = z[present - self._span + 1 : present + 1]
        # Mean phase advance per sample, weighted by amplitude (no unwrapping needed).
        step = float(np.angle(np.sum(tail[1:] * np.conj(tail[:-1]))))
        return complex(z[present]), step * self._rate / (2 * math.pi)

    def _own_lag(self) -> np.ndarray:
        """Phase error on clean sinusoids, rad, on ``_grid`` by the frequency estimated for them:
        mostly the ECHT's causal filter phase, or the ring of the AR path's zero-phase filter at
        its edge that pulls the prediction to the band's centre. Known, so taken back out."""
        t = np.arange(self._n) / self.settings.sfreq
        starts = np.linspace(0, 2 * np.pi, 4, endpoint=False)
        estimated, bias = [], []
        for f in np.linspace(self._grid[0], self._grid[-1], 21):
            raw = [self._raw(np.cos(2 * np.pi * f * t + start)) for start in starts]
            truth = np.exp(1j * (2 * np.pi * f * t[-1] + starts))
            bias.append(np.angle(np.sum([z for z, _ in raw] / truth)))
            estimated.append(np.mean([freq for _, freq in raw]))
        order = np.argsort(estimated)
        return np.interp(self._grid, np.array(estimated)[order], np.unwrap(bias)[order])

    def _check(self, window: np.ndarray, name: str = "window") -> np.ndarray:
        x = np.asarray(window, dtype=np.float64)
        if x.ndim != 1 or x.shape[0] < self._n:
            raise ValueError(f"{name} must be 1-D with >= {self._n} samples, got shape {x.shape}")
        return x[-self._n :] if name == "window" else x

    def _analytic(self, x: np.ndarray) -> tuple[np.ndarray, int]:
        """Analytic signal of the band and the index of the present in it."""
        if self.settings.method == "echt":
            return np.fft.ifft(np.fft.fft(x) * self._response), self._n - 1
        past = self._past @ x
        p, edge = self.settings.ar_order, self._edge
        # Biased autocorrelation: the Yule-Walker model it gives is always stable.
        r = np.correlate(past, past, mode="full")[past.size - 1 : past.size + p] / past.size
        if not r[0] > 0:
            return np.zeros(2 * edge, dtype=complex), edge - 1
        coeffs = np.linalg.solve(r[self._toeplitz], r[1 : p + 1])
        denominator = np.concatenate(([1.0], -coeffs))
        # lfilter's state after the past outputs, with zero input from here on (as lfiltic).
        state = np.correlate(coeffs, past[: -p - 1 : -1], mode="full")[p - 1 :]
        # Predict one edge past the present, so that the present sits mid-way through the
        # Hilbert window and away from the transform's own end effects.
        predicted = sps.lfilter([1.0], denominator, np.zeros(2 * edge), zi=state)[0]
        stitched = np.concatenate((past[-2 * edge :], predicted))
        return np.fft.ifft(np.fft.fft(stitched) * self._one_sided), stitched.size - edge - 1

    def calibrate(self, baseline: np.ndarray) -> float:
        """Set the amplitude gate from a baseline recording.

        Parameters
        ----------
        baseline : array, shape (n_samples,)
            Resting signal, at least ``n_samples`` long (tens of seconds are typical).

        Returns
        -------
        threshold : float
            The gate, signal unit: the ``power_percentile`` of the baseline's band amplitudes.

        Notes
        -----
        The amplitudes come from the live estimator slid over the baseline every 10 ms, so the
        percentile is of the very quantity the gate compares (a zero-phase envelope would not).
        """
        x = self._check(baseline, "baseline")
        hop = max(1, round(_CALIBRATION_HOP_S * self.settings.sfreq))
        windows = np.lib.stride_tricks.sliding_window_view(x, self._n)[::hop]
        amplitudes = [self.estimate(w)[2] for w in windows if np.all(np.isfinite(w))]
        if not amplitudes:
            raise ValueError("baseline holds no window of finite samples; record it again")
        self._threshold = float(np.percentile(amplitudes, self.settings.power_percentile))
        return self._threshold

    def __call__(self, window: np.ndarray, newest_time: float) -> PhaseDecision:
        """Read the newest window and predict the next target-phase crossing.

        Parameters
        ----------
        window : array, shape (n_samples,)
            The newest samples of the 1-D signal, ending at ``newest_time``.
        newest_time : float
            Time of the window's last sample, s.

        Returns
        -------
        decision : PhaseDecision
            All nan and a closed gate when the window holds a non-finite sample.
        """
        x = self._check(window)
        if not (np.all(np.isfinite(x)) and math.isfinite(newest_time)):  # nothing to act on
            return PhaseDecision(math.nan, math.nan, math.nan, False, math.nan)
        phase, freq, amplitude = self.estimate(x)
        gate_open = bool(amplitude >= self._threshold)  # nan threshold: closed
        s = self.settings
        # Degrees still to go to the target; a crossing up to max_lateness_deg ago counts as
        # now-due rather than a whole cycle away.
        ahead = (s.target_deg - phase + s.max_lateness_deg) % 360.0 - s.max_lateness_deg
        fire_at = newest_time + ahead / (360.0 * freq)
        if not gate_open or self._refractory(fire_at):
            fire_at = math.nan
        return PhaseDecision(phase, freq, amplitude, gate_open, fire_at)

    def should_fire(self, decision: PhaseDecision, now: float) -> bool:
        """Whether to pulse now: ``fire_at <= now <= fire_at + max_lateness_deg / (360 f)``
        and the refractory period is over.

        Parameters
        ----------
        decision : PhaseDecision
            The newest decision (re-check it on every loop iteration, new data or not).
        now : float
            Current time on the samples' clock, s.
        """
        if not math.isfinite(decision.fire_at) or self._refractory(now):
            return False
        late = now - decision.fire_at
        return 0.0 <= late <= self.settings.max_lateness_deg / (360.0 * decision.frequency_hz)

    def _refractory(self, time: float) -> bool:
        last = self._last_fired
        return last is not None and time - last < self.settings.refractory_s

    def fired(self, time: float) -> None:
        """Record a delivered pulse at ``time`` (s); the refractory period starts there."""
        if not math.isfinite(time):
            raise ValueError(f"time must be a finite number of seconds, got {time!r}")
        self._last_fired = float(time)


def montage_weights(picks: Sequence[str], kind: MontageKind = "laplacian") -> np.ndarray:
    """Spatial weights that turn the picked channels into the trigger's 1-D signal.

    Parameters
    ----------
    picks : sequence of str
        Channel names, the centre electrode first (e.g. C3, FC1, FC5, CP1, CP5).
    kind : {"laplacian", "single"}
        ``"laplacian"``: the centre minus the mean of the others (Hjorth; Zrenner 2018's C3
        Laplacian); ``"single"``: the centre alone.

    Returns
    -------
    weights : array, shape (n_picks,)
        ``signal = window @ weights`` for a window of shape (n_samples, n_picks).
    """
    names = [] if isinstance(picks, str) else list(picks)
    if not names or not all(isinstance(n, str) for n in names) or len(set(names)) != len(names):
        raise ValueError(f"picks must be distinct channel names, centre first, got {picks!r}")
    weights = np.zeros(len(names))
    weights[0] = 1.0
    if kind == "laplacian":
        if len(names) < 2:
            raise ValueError(f"picks must name the centre and >= 1 neighbour, got {picks!r}")
        weights[1:] = -1.0 / (len(names) - 1)
    elif kind != "single":
        raise ValueError(f"kind must be 'laplacian' or 'single', got {kind!r}")
    return weights


def pipeline_sos(stages: Sequence[object]) -> tuple[tuple[float, ...], ...]:
    """Second-order sections of every causal IIR stage, for ``upstream_sos``.

    Parameters
    ----------
    stages : sequence of stage, or a Pipeline
        Stages with an ``sos`` attribute (``ButterworthFilter``, ``NotchFilter``) contribute
        their sections; the others (picking, referencing) do not change phase and are skipped.
    """
    stages = getattr(stages, "stages", stages)
    sections = [row for stage in stages if hasattr(stage, "sos") for row in stage.sos]
    return tuple(tuple(float(v) for v in row) for row in sections)
