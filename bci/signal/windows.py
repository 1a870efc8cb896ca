"""Sliding windows over a stream, emitted whenever a hop completes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bci.signal._checks import FloatArray, check_chunk, check_positive


@dataclass(frozen=True)
class SlidingWindowSettings:
    """Settings of a sliding window."""

    length_s: float
    """Window length, s; rounded to the nearest whole number of samples (at least 1)."""

    hop_s: float
    """Time between the ends of consecutive windows, s; rounded to whole samples (at least 1).
    A hop longer than the window leaves gaps between windows."""

    sfreq: float
    """Sampling rate of the stream, Hz."""

    def __post_init__(self) -> None:
        check_positive("length_s", self.length_s, unit="s")
        check_positive("hop_s", self.hop_s, unit="s")
        check_positive("sfreq", self.sfreq, unit="Hz")
        for name, value in (("length_s", self.length_s), ("hop_s", self.hop_s)):
            if round(value * self.sfreq) < 1:
                raise ValueError(
                    f"{name} must be at least one sample (1/sfreq = {1 / self.sfreq:g} s), "
                    f"got {value!r}"
                )

    @property
    def n_length(self) -> int:
        """Window length, samples."""
        return round(self.length_s * self.sfreq)

    @property
    def n_hop(self) -> int:
        """Hop, samples."""
        return round(self.hop_s * self.sfreq)


class SlidingWindow:
    """Cut a stream into overlapping (or gapped) windows, chunk-invariantly.

    The first window ends at the ``n_length``-th sample seen, and a new one ends every
    ``n_hop`` samples after that, whatever the chunk boundaries.

    Parameters
    ----------
    settings : SlidingWindowSettings
        Window length, hop and sampling rate.

    Notes
    -----
    Keeps a preallocated ring buffer of the last ``n_length`` samples. The buffer and the
    sample count reset when the number of channels changes (or on :meth:`reset`); an empty
    chunk leaves them untouched.
    """

    def __init__(self, settings: SlidingWindowSettings) -> None:
        self.settings = settings
        self.n_length = settings.n_length
        """Window length, samples."""
        self.n_hop = settings.n_hop
        """Hop, samples."""
        self._ring: FloatArray | None = None
        self._n_seen = 0

    @property
    def n_seen(self) -> int:
        """Samples seen since the last reset."""
        return self._n_seen

    def reset(self) -> None:
        """Forget the buffered samples; the next window needs ``n_length`` new samples."""
        self._ring = None
        self._n_seen = 0

    def _window_ends(self, n_samples: int) -> range:
        """Global indices of the windows' newest samples that fall in the next chunk."""
        first_end = self.n_length - 1
        start = self._n_seen
        if start <= first_end:
            k0 = 0
        else:
            k0 = -(-(start - first_end) // self.n_hop)  # ceil division
        return range(first_end + k0 * self.n_hop, start + n_samples, self.n_hop)

    def _copy_from_ring(self, ring: FloatArray, out: FloatArray, first: int, stop: int) -> None:
        """Copy buffered samples with global indices [first, stop) into ``out``."""
        n = self.n_length
        lo, hi = first % n, (stop - 1) % n + 1
        if lo < hi:
            out[:] = ring[lo:hi]
        else:  # the span wraps around the end of the ring
            out[: n - lo] = ring[lo:]
            out[n - lo :] = ring[:hi]

    def _store(self, ring: FloatArray, data: FloatArray) -> None:
        """Write the newest ``min(n_samples, n_length)`` samples of a chunk into the ring."""
        n = self.n_length
        keep = data[-n:]
        first = self._n_seen + data.shape[0] - keep.shape[0]
        lo = first % n
        n_head = min(keep.shape[0], n - lo)
        ring[lo : lo + n_head] = keep[:n_head]
        ring[: keep.shape[0] - n_head] = keep[n_head:]

    def __call__(self, data: FloatArray, times: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Add one chunk; return the windows it completes.

        Parameters
        ----------
        data : array, shape (n_samples, n_channels)
            Samples, any unit.
        times : array, shape (n_samples,), s
            LSL timestamps.

        Returns
        -------
        windows : array, shape (n_windows, n_length, n_channels)
            Each completed window, oldest sample first; n_windows may be 0.
        end_times : array, shape (n_windows,), s
            The timestamp of each window's newest sample.
        """
        data, times = check_chunk(data, times)
        n_samples, n_channels = data.shape
        if n_samples == 0:
            return np.empty((0, self.n_length, n_channels)), np.empty(0)
        ring = self._ring
        if ring is None or ring.shape[1] != n_channels:
            ring = self._ring = np.zeros((self.n_length, n_channels))
            self._n_seen = 0
        ends = self._window_ends(n_samples)
        windows = np.empty((len(ends), self.n_length, n_channels))
        end_times = np.empty(len(ends))
        for i, end in enumerate(ends):
            first = end - self.n_length + 1  # global index of the window's oldest sample
            n_old = max(0, self._n_seen - first)
            if n_old:
                self._copy_from_ring(ring, windows[i, :n_old], first, self._n_seen)
            local_end = end - self._n_seen + 1
            windows[i, n_old:] = data[local_end - (self.n_length - n_old) : local_end]
            end_times[i] = times[local_end - 1]
        self._store(ring, data)
        self._n_seen += n_samples
        return windows, end_times
