"""LSL inlets that pull into preallocated buffers, correct clock offsets and account for gaps."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pylsl

from bci.acquire.ring import RingBuffer

_NUMPY_DTYPES = {
    pylsl.cf_float32: np.float32,
    pylsl.cf_double64: np.float64,
    pylsl.cf_int32: np.int32,
    pylsl.cf_int16: np.int16,
    pylsl.cf_int8: np.int8,
    pylsl.cf_int64: np.int64,
}


@dataclass(frozen=True)
class InletSettings:
    """How an inlet buffers and judges its stream."""

    buffer_s: float = 30.0
    """Seconds of newest samples kept in the ring buffer (irregular streams: 1 sample/s)."""
    max_chunk_s: float = 1.0
    """Largest pull, s of data; more waiting is pulled on the next call."""
    gap_min_s: float = 0.025
    """A jump of more than this between consecutive timestamps of a regular stream, beyond one
    sample period, counts as a gap, s. Above LSL chunking jitter on loopback and LAN."""
    open_timeout_s: float = 5.0
    """How long ``connect`` waits for the stream to open, s."""


@dataclass(frozen=True)
class Gap:
    """Samples missing between two consecutive pulls of a regular stream."""

    stream: str
    """Name of the stream."""
    start: float
    """Timestamp of the last sample before the gap, s."""
    stop: float
    """Timestamp of the first sample after it, s."""
    missing: int
    """Samples missing at the nominal rate."""

    @property
    def duration_s(self) -> float:
        """Length of the gap, s."""
        return self.stop - self.start


class Inlet:
    """A numeric LSL inlet with a preallocated ring buffer on the local clock.

    Timestamps are corrected for the sender's clock offset by liblsl (``proc_clocksync``), so
    every inlet of a session lives on ``pylsl.local_clock()``. A source that disappears and comes
    back with the same source id is reconnected by liblsl; the missing stretch is reported as a
    :class:`Gap`.

    Parameters
    ----------
    info : pylsl.StreamInfo
        The resolved stream.
    settings : InletSettings
        Buffering and gap settings.
    """

    def __init__(self, info: pylsl.StreamInfo, settings: InletSettings | None = None) -> None:
        if info.channel_format() == pylsl.cf_string:
            raise TypeError(f"Stream {info.name()!r} carries strings; use MarkerInlet for it.")
        self.info = info
        self.settings = settings or InletSettings()
        self._inlet: pylsl.StreamInlet | None = None
        rate = info.nominal_srate()
        chunk = int(np.ceil(self.settings.max_chunk_s * rate)) if rate > 0 else 1024
        self._max_chunk = max(chunk, 1)
        self._raw = np.zeros(
            (self._max_chunk, info.channel_count()), _NUMPY_DTYPES[info.channel_format()]
        )
        self._data = np.zeros((self._max_chunk, info.channel_count()))
        capacity = int(self.settings.buffer_s * rate) if rate > 0 else int(self.settings.buffer_s)
        self.buffer = RingBuffer(max(capacity, 1), info.channel_count())
        self._reset()

    def _reset(self) -> None:
        self.n_samples = 0
        """Samples received since connect."""
        self.newest_time = np.nan
        """Timestamp of the newest sample, s (local clock)."""
        self.first_time = np.nan
        """Timestamp of the first sample since connect, s (local clock)."""
        self.last_arrival = np.nan
        """``local_clock()`` when samples last arrived, s."""
        self.gaps: list[Gap] = []
        """Every gap seen since connect."""
        self._unreported = 0
        self.buffer.clear()

    # lifecycle -----------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        """Whether ``connect`` was called (and ``disconnect`` not since)."""
        return self._inlet is not None

    def connect(self) -> Inlet:
        """Open the stream; returns self so it can be used as a context manager."""
        if self._inlet is not None:
            raise RuntimeError(
                f"Inlet {self.name!r} is already connected; call disconnect() first."
            )
        self._inlet = pylsl.StreamInlet(
            self.info,
            max_buflen=max(int(self.settings.buffer_s), 1),
            max_chunklen=0,
            recover=True,
            processing_flags=pylsl.proc_clocksync,
        )
        self._inlet.open_stream(timeout=self.settings.open_timeout_s)
        # the resolved info lacks <desc>; the inlet's full info carries the channel labels
        self.info = self._inlet.info(timeout=self.settings.open_timeout_s)
        self._reset()
        self.last_arrival = pylsl.local_clock()
        return self

    def disconnect(self) -> None:
        """Close the stream (idempotent)."""
        if self._inlet is not None:
            self._inlet.close_stream()
            self._inlet = None

    def discard_pending(self) -> int:
        """Drop what arrived so far and restart the counts: the session starts now.

        Returns
        -------
        n_dropped : int
            Samples discarded.
        """
        dropped = self._check_connected("discard_pending()").flush()
        self._reset()
        self.last_arrival = pylsl.local_clock()
        return dropped

    def __enter__(self) -> Inlet:
        return self.connect()

    def __exit__(self, *exc) -> None:
        self.disconnect()

    def _check_connected(self, what: str) -> pylsl.StreamInlet:
        if self._inlet is None:
            raise RuntimeError(
                f"Inlet {self.name!r} is not connected; call connect() before {what}."
            )
        return self._inlet

    # metadata ------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        """Stream name."""
        return self.info.name()

    @property
    def sfreq(self) -> float:
        """Nominal sampling rate, Hz (0 for irregular streams)."""
        return self.info.nominal_srate()

    @property
    def n_channels(self) -> int:
        """Number of channels."""
        return self.info.channel_count()

    @property
    def ch_names(self) -> tuple[str, ...]:
        """Channel labels from the stream's metadata, or ``ch0, ch1, ...`` when it has none."""
        labels = self.info.get_channel_labels()
        if not labels or len(labels) != self.n_channels or any(label is None for label in labels):
            return tuple(f"ch{i}" for i in range(self.n_channels))
        return tuple(labels)

    @property
    def ch_types(self) -> tuple[str | None, ...]:
        """Channel types from the stream's metadata (None where a channel has none)."""
        types = self.info.get_channel_types()
        if not types or len(types) != self.n_channels:
            return (None,) * self.n_channels
        return tuple(types)

    def clock_offset(self, timeout_s: float = 1.0) -> float:
        """Offset of the sender's clock to ours, s (liblsl already applies it to timestamps)."""
        return self._check_connected("clock_offset()").time_correction(timeout=timeout_s)

    # data ----------------------------------------------------------------------------------
    def pull(self, timeout_s: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """Pull what has arrived, waiting up to ``timeout_s`` for the first sample.

        Returns
        -------
        data : array, shape (n_samples, n_channels)
            The new samples as float64. A view of a reused buffer: valid until the next pull.
        times : array, shape (n_samples,)
            Their timestamps on the local clock, s.
        """
        inlet = self._check_connected("pull()")
        _, times = inlet.pull_chunk(
            timeout=timeout_s, max_samples=self._max_chunk, dest_obj=self._raw, min_samples=1
        )
        n = len(times)
        if n == 0:
            return self._data[:0], np.empty(0)
        times = np.asarray(times)
        data = self._data[:n]
        np.copyto(data, self._raw[:n], casting="unsafe")
        self._account(times)
        self.buffer.write(data, times)
        return data, times

    def _account(self, times: np.ndarray) -> None:
        if self.sfreq > 0 and self.n_samples:
            period = 1.0 / self.sfreq
            jump = times[0] - self.newest_time
            if jump - period > self.settings.gap_min_s:
                missing = round(float(jump) * self.sfreq) - 1
                self.gaps.append(Gap(self.name, float(self.newest_time), float(times[0]), missing))
        if not self.n_samples:
            self.first_time = times[0]
        self.n_samples += len(times)
        self.newest_time = times[-1]
        self.last_arrival = pylsl.local_clock()

    def seconds_since_data(self, now: float | None = None) -> float:
        """Time since samples last arrived, s."""
        return (pylsl.local_clock() if now is None else now) - self.last_arrival

    def new_gaps(self) -> list[Gap]:
        """Gaps seen since the previous call."""
        fresh = self.gaps[self._unreported :]
        self._unreported = len(self.gaps)
        return fresh

    @property
    def srate_measured(self) -> float:
        """Rate of the samples received, Hz, over the time they cover (gaps excluded)."""
        span = self.newest_time - self.first_time
        if self.sfreq > 0:
            span -= sum(gap.duration_s - 1.0 / self.sfreq for gap in self.gaps)
        return (self.n_samples - 1) / span if self.n_samples > 1 and span > 0 else float("nan")

    @property
    def n_missing(self) -> int:
        """Samples missing over all gaps."""
        return sum(gap.missing for gap in self.gaps)


class MarkerInlet:
    """An inlet for irregular string streams (cues, events), first channel only.

    Parameters
    ----------
    info : pylsl.StreamInfo
        The resolved string stream.
    """

    def __init__(self, info: pylsl.StreamInfo, open_timeout_s: float = 5.0) -> None:
        if info.channel_format() != pylsl.cf_string:
            raise TypeError(f"Stream {info.name()!r} is numeric; use Inlet for it.")
        self.info = info
        self._open_timeout_s = open_timeout_s
        self._inlet: pylsl.StreamInlet | None = None

    def connect(self) -> MarkerInlet:
        """Open the stream."""
        if self._inlet is not None:
            raise RuntimeError(f"Marker inlet {self.info.name()!r} is already connected.")
        self._inlet = pylsl.StreamInlet(
            self.info, recover=True, processing_flags=pylsl.proc_clocksync
        )
        self._inlet.open_stream(timeout=self._open_timeout_s)
        self.info = self._inlet.info(timeout=self._open_timeout_s)
        return self

    def disconnect(self) -> None:
        """Close the stream (idempotent)."""
        if self._inlet is not None:
            self._inlet.close_stream()
            self._inlet = None

    def __enter__(self) -> MarkerInlet:
        return self.connect()

    def __exit__(self, *exc) -> None:
        self.disconnect()

    def pull(self, timeout_s: float = 0.0) -> list[tuple[float, str]]:
        """Markers that arrived, as ``(timestamp, text)`` on the local clock, oldest first."""
        if self._inlet is None:
            raise RuntimeError(
                f"Marker inlet {self.info.name()!r} is not connected; call connect() before pull()."
            )
        samples, times = self._inlet.pull_chunk(timeout=timeout_s)
        return [(float(t), str(s[0])) for s, t in zip(samples, times, strict=True)]
