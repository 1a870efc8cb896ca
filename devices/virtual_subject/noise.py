"""Stateful noise and event building blocks shared by the EEG and fNIRS generators.

Every block carries its state between calls so that generating ``n`` samples at once or in any
split of ``n`` gives the same signal: filters keep their ``zi``, random draws come from a
generator owned by one consumer, and event kernels are indexed by absolute sample number.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import signal

# Keys of the independent random streams drawn from one subject seed. A consumer owns its stream
# so that the order in which consumers draw (which depends on chunking) never matters. Adding a
# stream with a new key leaves every other stream unchanged.
STREAM_PARAMS = 0
STREAM_ANATOMY = 1
STREAM_EEG_NOISE = 2
STREAM_BLINKS = 3
STREAM_EMG = 4
STREAM_TRIALS = 5
STREAM_FNIRS_NOISE = 6
STREAM_FNIRS_MOTION = 7
STREAM_FNIRS_ANATOMY = 8


def rng_stream(seed: int, key: int) -> np.random.Generator:
    """Independent random generator number ``key`` of subject ``seed``.

    Parameters
    ----------
    seed : int
        Subject seed, >= 0.
    key : int
        Stream key, one of the ``STREAM_*`` constants.

    Returns
    -------
    rng : numpy.random.Generator
        Generator seeded by ``SeedSequence(seed, spawn_key=(key,))``.
    """
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(key,)))


def band_noise_sos(low_hz: float, high_hz: float, sfreq: float) -> np.ndarray:
    """4th-order Butterworth band-pass, scaled so unit white noise comes out with unit RMS.

    Parameters
    ----------
    low_hz, high_hz : float
        Pass band edges, Hz; ``high_hz`` is clipped below Nyquist.
    sfreq : float
        Sampling rate, Hz.

    Returns
    -------
    sos : array, shape (2, 6)
        Second-order sections.
    """
    high_hz = min(high_hz, 0.45 * sfreq)
    if not 0 < low_hz < high_hz:
        raise ValueError(f"band must satisfy 0 < low < high < 0.45*sfreq, got {low_hz}-{high_hz}")
    sos = signal.butter(2, [low_hz, high_hz], btype="bandpass", fs=sfreq, output="sos")
    return _unit_rms(sos)


def lowpass_noise_sos(cutoff_hz: float, sfreq: float) -> np.ndarray:
    """1st-order low-pass (Brownian-like drift below ``cutoff_hz``) with unit output RMS.

    Parameters
    ----------
    cutoff_hz : float
        Corner frequency, Hz.
    sfreq : float
        Sampling rate, Hz.

    Returns
    -------
    sos : array, shape (1, 6)
    """
    pole = math.exp(-2 * math.pi * cutoff_hz / sfreq)
    sos = np.array([[1.0 - pole, 0.0, 0.0, 1.0, -pole, 0.0]])
    return _unit_rms(sos)


def power_law_sos(
    exponent: float, sfreq: float, f_low: float = 0.3, per_decade: float = 2.0
) -> np.ndarray:
    """Pole-zero cascade whose power spectrum falls as 1/f^exponent above ``f_low``.

    Poles sit every ``1/per_decade`` decades and each is followed by a zero ``exponent/2`` of that
    spacing later, so the average slope is ``-10*exponent`` dB/decade (Keshner 1982; Kasdin 1995).
    One cascade filters every channel in a single ``sosfilt`` call.

    Parameters
    ----------
    exponent : float
        Aperiodic exponent, 0 < exponent <= 2.
    sfreq : float
        Sampling rate, Hz.
    f_low : float
        Frequency below which the spectrum turns flat, Hz.
    per_decade : float
        Pole-zero pairs per decade; 2 keeps the ripple under about 1 dB.

    Returns
    -------
    sos : array, shape (n_sections, 6)
        Scaled so that unit white noise gives unit RMS over 1–40 Hz.
    """
    if not 0 < exponent <= 2:
        raise ValueError(f"exponent must be in (0, 2], got {exponent}")
    spacing = 1.0 / per_decade
    n_pairs = max(1, math.ceil(math.log10(0.45 * sfreq / f_low) * per_decade))
    rows = []
    for k in range(n_pairs):
        f_pole = f_low * 10 ** (k * spacing)
        f_zero = f_pole * 10 ** (spacing * exponent / 2)
        pole = math.exp(-2 * math.pi * f_pole / sfreq)
        zero = math.exp(-2 * math.pi * min(f_zero, 0.49 * sfreq) / sfreq)
        rows.append([1.0, -zero, 0.0, 1.0, -pole, 0.0])
    sos = np.array(rows)
    freqs, response = signal.sosfreqz(sos, worN=8192, fs=sfreq)
    band = (freqs >= 1.0) & (freqs <= 40.0)
    # One-sided PSD of unit-variance white noise is 2/sfreq per Hz.
    band_var = np.trapezoid(np.abs(response[band]) ** 2 * 2 / sfreq, freqs[band])
    sos[0, :3] /= math.sqrt(band_var)
    return sos


def _unit_rms(sos: np.ndarray) -> np.ndarray:
    """Scale ``sos`` so that white noise of unit variance comes out with unit variance."""
    sos = np.array(sos, dtype=float)
    _, response = signal.sosfreqz(sos, worN=1 << 16)
    sos[0, :3] /= math.sqrt(np.mean(np.abs(response) ** 2))
    return sos


try:  # the compiled kernel behind scipy.signal.sosfilt; skipping sosfilt's argument handling
    # and axis juggling makes 10 ms chunks several times cheaper
    from scipy.signal._sosfilt import _sosfilt
except ImportError:  # pragma: no cover - a SciPy without it takes the public path
    _sosfilt = None


class StatefulSos:
    """Second-order-section filter over the columns of a chunk, state carried between calls.

    Parameters
    ----------
    sos : array, shape (n_sections, 6)
        Filter.
    n_columns : int
        Number of independent columns filtered.
    """

    def __init__(self, sos: np.ndarray, n_columns: int) -> None:
        self.sos = np.ascontiguousarray(sos, dtype=float)
        # (n_columns, n_sections, 2): the layout of the compiled kernel.
        self._zi = np.zeros((n_columns, self.sos.shape[0], 2))

    def set_output_state(self, previous_output: np.ndarray) -> None:
        """Start a single first-order section as if its last output were ``previous_output``,
        shape (n_columns,) (e.g. a stationary draw, for filters too slow to burn in)."""
        if self.sos.shape[0] != 1 or self.sos[0, 2] != 0 or self.sos[0, 5] != 0:
            raise RuntimeError("set_output_state needs a single first-order section")
        self._zi[:, 0, 0] = -self.sos[0, 4] * np.asarray(previous_output, dtype=float)
        self._zi[:, 0, 1] = 0.0

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Filter ``x``, shape (n_samples, n_columns), and return the same shape."""
        if x.shape[0] == 0:
            return np.zeros(x.shape)
        if _sosfilt is not None:
            y = np.array(x.T, dtype=float, order="C")
            _sosfilt(self.sos, y, self._zi)  # filters y in place and updates the state
            return y.T
        zi = np.moveaxis(self._zi, 0, -1)  # public layout (n_sections, 2, n_columns)
        y, zi = signal.sosfilt(self.sos, x, axis=0, zi=zi)
        self._zi = np.ascontiguousarray(np.moveaxis(zi, -1, 0))
        return y


class Envelope:
    """First-order lag toward piecewise-constant targets: smooth on/offsets of rhythm changes.

    Parameters
    ----------
    initial : array, shape (n_columns,)
        Starting value of every column (also its first target).
    time_constant_s : float
        Lag shared by all columns, s.
    sfreq : float
        Sampling rate, Hz.
    """

    def __init__(self, initial: np.ndarray, time_constant_s: float, sfreq: float) -> None:
        self.target = np.array(initial, dtype=float)
        self.value = self.target.copy()
        self._decay = math.exp(-1.0 / (time_constant_s * sfreq))
        self._powers = self._decay ** np.arange(1, 1025)[:, None]

    def __call__(self, n_samples: int) -> np.ndarray:
        """Envelope for the next ``n_samples`` samples, shape (n_samples, n_columns)."""
        gap = self.value - self.target
        if not np.any(np.abs(gap) > 1e-12):
            # Settled (most of the time): skip the arithmetic. Settling is judged on values
            # that do not depend on chunking beyond rounding, so chunks agree to ~1e-12.
            self.value = self.target.copy()
            return np.broadcast_to(self.target, (n_samples, self.target.size))
        if n_samples > self._powers.shape[0]:
            self._powers = self._decay ** np.arange(1, n_samples + 1)[:, None]
        # Closed form of y[n] = a·y[n-1] + (1 − a)·target for a constant target.
        out = self.target + gap * self._powers[:n_samples]
        if n_samples:
            self.value = out[-1].copy()
        return out


@dataclass
class _Kernel:
    start: int
    waveform: np.ndarray  # (length,) or (length, n_channels)
    spatial: np.ndarray | None  # (n_channels,) when waveform is 1-D


class KernelOverlay:
    """Sum of transient waveforms (blinks, bursts, pulses) that may span many chunks.

    Parameters
    ----------
    n_channels : int
        Width of the rendered output.
    """

    def __init__(self, n_channels: int) -> None:
        self.n_channels = n_channels
        self._kernels: list[_Kernel] = []

    def add(self, start: int, waveform: np.ndarray, spatial: np.ndarray | None = None) -> None:
        """Add a waveform starting at absolute sample ``start``.

        ``waveform`` is shape (length,) with ``spatial`` shape (n_channels,), or shape
        (length, n_channels) with ``spatial`` None.
        """
        self._kernels.append(_Kernel(int(start), np.asarray(waveform, dtype=float), spatial))

    def __call__(self, first: int, n_samples: int) -> np.ndarray | None:
        """Overlay for absolute samples ``first``..``first+n_samples-1``; None when empty."""
        if not self._kernels:
            return None
        out = np.zeros((n_samples, self.n_channels))
        stop = first + n_samples
        keep = []
        for kernel in self._kernels:
            end = kernel.start + kernel.waveform.shape[0]
            lo, hi = max(kernel.start, first), min(end, stop)
            if lo < hi:
                piece = kernel.waveform[lo - kernel.start : hi - kernel.start]
                if kernel.spatial is not None:
                    piece = np.multiply.outer(piece, kernel.spatial)
                out[lo - first : hi - first] += piece
            if end > stop:
                keep.append(kernel)
        self._kernels = keep
        return out


class PoissonTimes:
    """Marked Poisson process drawn lazily, so that chunking never changes it.

    Each event carries ``n_marks`` uniform random numbers (drawn together with its time) from
    which the consumer derives its size, duration or side; drawing them later would interleave
    differently with the times depending on how the stream is chunked.

    Parameters
    ----------
    rate_per_s : float
        Mean event rate, events/s; 0 disables the process.
    rng : numpy.random.Generator
        Generator owned by this process alone.
    n_marks : int
        Uniform marks per event.
    """

    def __init__(self, rate_per_s: float, rng: np.random.Generator, n_marks: int = 0) -> None:
        self.rate = float(rate_per_s)
        self.rng = rng
        self.n_marks = n_marks
        self._next = self._draw(0.0)

    def _draw(self, after_s: float) -> tuple[float, np.ndarray]:
        if self.rate <= 0:
            return math.inf, np.empty(0)
        return after_s + self.rng.exponential(1.0 / self.rate), self.rng.random(self.n_marks)

    def until(self, end_s: float) -> list[tuple[float, np.ndarray]]:
        """Pop every event before ``end_s``, as (time s, marks) pairs."""
        events = []
        while self._next[0] < end_s:
            events.append(self._next)
            self._next = self._draw(self._next[0])
        return events


def sample_at(time_s: float, sfreq: float) -> int:
    """Index of the first sample at or after ``time_s`` (s since sample 0)."""
    # The small tolerance keeps ``k / sfreq`` itself mapping to sample ``k`` despite rounding.
    return max(0, math.ceil(time_s * sfreq - 1e-6))


class ScheduledStream:
    """Sample clock plus a queue of state changes applied at exact sample numbers.

    Subclasses implement ``_render(m)``, which produces ``m`` samples with the control state held
    constant; ``generate`` splits every request at scheduled changes, so the output depends only
    on when changes are due, never on how the request was chunked.

    Parameters
    ----------
    sfreq : float
        Sampling rate, Hz.
    n_outputs : int
        Number of output channels.
    """

    def __init__(self, sfreq: float, n_outputs: int) -> None:
        self.sfreq = float(sfreq)
        self.n_samples = 0
        """Samples generated so far (index of the next sample)."""
        self._n_outputs = n_outputs
        self._events: list[tuple[int, int, Callable[[], None]]] = []
        self._counter = itertools.count()

    @property
    def time(self) -> float:
        """Time of the next sample, s since sample 0."""
        return self.n_samples / self.sfreq

    def schedule(self, time_s: float, action: Callable[[], None]) -> None:
        """Run ``action`` just before generating the first sample at or after ``time_s`` (or
        before the next sample if that one is already out)."""
        sample = max(sample_at(time_s, self.sfreq), self.n_samples)
        heapq.heappush(self._events, (sample, next(self._counter), action))

    def generate(self, n_samples: int) -> np.ndarray:
        """Generate the next ``n_samples`` samples, shape (n_samples, n_outputs)."""
        if isinstance(n_samples, bool) or not isinstance(n_samples, int | np.integer):
            raise TypeError(f"n_samples must be an int, got {type(n_samples).__name__}")
        if n_samples < 0:
            raise ValueError(f"n_samples must be >= 0, got {n_samples}")
        out = np.empty((n_samples, self._n_outputs))
        done = 0
        while True:
            while self._events and self._events[0][0] <= self.n_samples:
                heapq.heappop(self._events)[2]()
            if done == n_samples:
                return out
            block = n_samples - done
            if self._events:
                block = min(block, self._events[0][0] - self.n_samples)
            out[done : done + block] = self._render(block)
            done += block
            self.n_samples += block

    __call__ = generate

    def _render(self, m: int) -> np.ndarray:
        raise NotImplementedError
