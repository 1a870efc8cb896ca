"""The GUI's view of a session's LSL streams: found in the background as they appear, pulled
without blocking into preallocated buffers on the GUI thread.

The console must never slow the loop, nor freeze when a stream is missing: resolving and opening
streams (which block) happen on a worker thread; the GUI thread only pulls with ``timeout=0``.
"""

from __future__ import annotations

import threading
from collections import deque

import pylsl

from bci.acquire import Inlet, InletSettings, MarkerInlet
from bci.streams import stream_names

NUMERIC = ("eeg", "nirs", "decoder", "stim", "latency")
"""Keys of the numeric streams of a session (``stream_names``)."""
MARKERS = ("cues", "events", "info")
"""Keys of its string streams."""
_RESOLVE_EVERY_S = 1.0
_IRREGULAR_ROWS = 20_000
"""Rows kept of an irregular stream (decisions every 10 ms: over 3 minutes)."""


class MarkerHistory:
    """A string stream's newest markers, ``(timestamp, text)``, oldest first.

    Parameters
    ----------
    inlet : MarkerInlet
        Connected.
    keep : int
        How many markers to keep.
    """

    def __init__(self, inlet: MarkerInlet, keep: int = 2000) -> None:
        self.inlet = inlet
        self.markers: deque[tuple[float, str]] = deque(maxlen=keep)
        self.n_received = 0

    @property
    def name(self) -> str:
        return self.inlet.info.name()

    def pull(self) -> list[tuple[float, str]]:
        """What arrived since the last pull (also appended to :attr:`markers`)."""
        fresh = self.inlet.pull(0.0)
        self.markers.extend(fresh)
        self.n_received += len(fresh)
        return fresh

    def close(self) -> None:
        self.inlet.disconnect()


class SessionFeeds:
    """Every stream of a session, by its prefix, connected as it appears.

    Parameters
    ----------
    prefix : str
        The session's stream-name prefix (``[session] prefix``).
    names : dict, optional
        Stream names overriding ``stream_names(prefix)`` by key (``eeg``, ``nirs``: a session
        on an amplifier's own streams, or a replayed recording).
    buffer_s : float
        Seconds of numeric history kept per stream.
    """

    def __init__(self, prefix: str, names: dict[str, str] | None = None,
                 buffer_s: float = 30.0) -> None:  # fmt: skip
        self.names = {**stream_names(prefix), **(names or {})}
        self.buffer_s = buffer_s
        self.numeric: dict[str, Inlet] = {}
        """Connected numeric streams by key."""
        self.markers: dict[str, MarkerHistory] = {}
        """Connected string streams by key."""
        self.fresh: dict[str, list[tuple[float, str]]] = {key: [] for key in MARKERS}
        """Markers that arrived at the last :meth:`poll`, by key."""
        self._ready: list[tuple[str, object]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._resolve, name="gui-resolve", daemon=True)
        self._thread.start()

    def feed(self, key: str) -> Inlet | MarkerHistory | None:
        """The connected stream ``key`` (``eeg``, ``cues``...), or None while it is not there."""
        if key not in self.names:
            raise KeyError(f"no stream {key!r} in a session; one of {sorted(self.names)}")
        return self.numeric.get(key) or self.markers.get(key)

    def _resolve(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                have = {key for key, _ in self._ready} | self.numeric.keys() | self.markers.keys()
            for key, name in self.names.items():
                if key in have or self._stop.is_set():
                    continue
                found = pylsl.resolve_byprop("name", name, 1, 0.2)
                if not found:
                    continue
                try:
                    feed = self._open(key, found[0])
                except (RuntimeError, TypeError, pylsl.util.LostError, TimeoutError):
                    continue  # gone again, or not what a session publishes: try later
                with self._lock:
                    self._ready.append((key, feed))
            self._stop.wait(_RESOLVE_EVERY_S)

    def _open(self, key: str, info: pylsl.StreamInfo):
        if key in MARKERS:
            return MarkerHistory(MarkerInlet(info).connect())
        # an irregular stream's buffer is counted in samples: keep a few minutes of decisions
        buffer = self.buffer_s if info.nominal_srate() > 0 else _IRREGULAR_ROWS
        return Inlet(info, InletSettings(buffer_s=buffer)).connect()

    def poll(self) -> None:
        """Take the streams that were found, then pull every stream (never blocks)."""
        with self._lock:
            ready, self._ready = self._ready, []
        for key, feed in ready:
            (self.markers if key in MARKERS else self.numeric)[key] = feed
        for feed in self.numeric.values():
            feed.pull(0.0)
        for key in MARKERS:
            history = self.markers.get(key)
            self.fresh[key] = history.pull() if history is not None else []

    def close(self) -> None:
        """Stop looking for streams and close every inlet."""
        self._stop.set()
        self._thread.join(timeout=2.0)
        with self._lock:
            ready, self._ready = self._ready, []
        for _, feed in ready:
            feed.close() if isinstance(feed, MarkerHistory) else feed.disconnect()
        for feed in self.numeric.values():
            feed.disconnect()
        for history in self.markers.values():
            history.close()
        self.numeric, self.markers = {}, {}
