"""Keeping NaN and inf out of the filters: a non-finite sample would poison their state for the
rest of the session, so the engine feeds them only the finite parts of each chunk and treats a
burst of non-finite samples as a gap."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from bci.acquire import Gap


@dataclass(frozen=True)
class FiniteSplit:
    """What :class:`FiniteInput` made of one chunk."""

    parts: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    """``(data, times)`` of each run of finite samples, in order (none, one or two)."""
    started: bool = False
    """Whether a burst started in this chunk."""
    ended: Gap | None = None
    """The burst that ended in this chunk (finite samples follow it), as the gap it leaves."""


class FiniteInput:
    """Splits incoming chunks into the samples the filters may read, following bursts of
    non-finite samples across chunks.

    Parameters
    ----------
    columns : slice | list of int
        The stream's columns the filters read (only these are checked for NaN and inf).
    stream : str
        The stream's name, for the :class:`~bci.acquire.Gap` a burst becomes.
    """

    def __init__(self, columns: slice | list[int], stream: str) -> None:
        self.columns, self.stream = columns, stream
        self._burst: tuple[float, int] | None = None
        """(newest finite sample before it, samples dropped so far) of a burst under way."""

    @property
    def in_burst(self) -> bool:
        """Whether a burst is under way (its end has not arrived yet)."""
        return self._burst is not None

    def __call__(self, data: np.ndarray, times: np.ndarray, newest_read: float) -> FiniteSplit:
        """Split one chunk.

        Parameters
        ----------
        data : array, shape (n_samples, n_channels)
            The chunk, as pulled.
        times : array, shape (n_samples,)
            Its timestamps, s.
        newest_read : float
            Timestamp of the newest sample the filters read before this chunk, s (-inf if none:
            a burst at the very start then starts at its own first sample).

        Returns
        -------
        FiniteSplit
            The finite parts, and whether a burst started or ended here.
        """
        finite = np.isfinite(data[:, self.columns]).all(axis=1)
        if self._burst is None and finite.all():  # the common case
            return FiniteSplit([(data, times)])
        bad = np.flatnonzero(~finite)
        parts = []
        started = self._burst is None
        if started:
            first = int(bad[0])
            if first:
                parts.append((data[:first], times[:first]))
            before = float(times[first - 1] if first else newest_read)
            self._burst = (before if np.isfinite(before) else float(times[first]), 0)
        else:
            first = 0
        tail = int(bad[-1]) + 1 if len(bad) else 0
        before, dropped = self._burst
        self._burst = (before, dropped + tail - first)
        if tail == len(times):  # the burst goes on into the next chunk
            return FiniteSplit(parts, started)
        self._burst = None
        parts.append((data[tail:], times[tail:]))
        ended = Gap(self.stream, before, float(times[tail]), dropped + tail - first)
        return FiniteSplit(parts, started, ended)
