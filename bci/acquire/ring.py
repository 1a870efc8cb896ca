"""A preallocated ring buffer of samples and their timestamps."""

from __future__ import annotations

import numpy as np


class RingBuffer:
    """Fixed-capacity ring of the newest samples, allocated once.

    Parameters
    ----------
    capacity : int
        Number of samples kept.
    n_channels : int
        Number of channels.
    dtype : numpy dtype
        Sample type (``float64`` by default).
    """

    def __init__(self, capacity: int, n_channels: int, dtype=np.float64) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1 sample, got {capacity}.")
        if n_channels < 1:
            raise ValueError(f"n_channels must be >= 1, got {n_channels}.")
        self._data = np.zeros((capacity, n_channels), dtype=dtype)
        self._times = np.zeros(capacity)
        self._capacity = capacity
        self._head = 0  # index where the next sample goes
        self.n_written = 0
        """Samples written since creation (never wraps)."""

    @property
    def capacity(self) -> int:
        """Number of samples the ring holds."""
        return self._capacity

    @property
    def n_channels(self) -> int:
        """Number of channels."""
        return self._data.shape[1]

    def __len__(self) -> int:
        return min(self.n_written, self._capacity)

    def write(self, data: np.ndarray, times: np.ndarray) -> None:
        """Append samples, overwriting the oldest when full.

        Parameters
        ----------
        data : array, shape (n_samples, n_channels)
            New samples.
        times : array, shape (n_samples,)
            Their timestamps, s.
        """
        n = len(times)
        if n == 0:
            return
        if data.shape != (n, self.n_channels):
            raise ValueError(
                f"data must have shape ({n}, {self.n_channels}) to match times and the buffer, "
                f"got {data.shape}."
            )
        if n >= self._capacity:  # only the newest `capacity` samples survive
            data, times = data[-self._capacity :], times[-self._capacity :]
            self._data[:] = data
            self._times[:] = times
            self._head = 0
        else:
            end = self._head + n
            if end <= self._capacity:
                self._data[self._head : end] = data
                self._times[self._head : end] = times
            else:
                first = self._capacity - self._head
                self._data[self._head :] = data[:first]
                self._times[self._head :] = times[:first]
                self._data[: n - first] = data[first:]
                self._times[: n - first] = times[first:]
            self._head = end % self._capacity
        self.n_written += n

    def latest(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Copy of the newest ``n`` samples, oldest first.

        Parameters
        ----------
        n : int
            Number of samples; at most ``len(self)``.

        Returns
        -------
        data : array, shape (n, n_channels)
        times : array, shape (n,)
        """
        if not 0 <= n <= len(self):
            raise ValueError(f"n must be between 0 and the {len(self)} samples held, got {n}.")
        idx = (np.arange(self._head - n, self._head)) % self._capacity
        return self._data[idx], self._times[idx]

    def between(self, t_start: float, t_stop: float) -> tuple[np.ndarray, np.ndarray]:
        """Copy of the held samples with ``t_start <= time < t_stop``, oldest first."""
        data, times = self.latest(len(self))
        keep = (times >= t_start) & (times < t_stop)
        return data[keep], times[keep]

    def clear(self) -> None:
        """Forget every sample (the memory stays allocated)."""
        self._head = 0
        self.n_written = 0
