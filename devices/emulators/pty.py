"""A serial device on a pseudo-terminal: the driver opens :attr:`PtyEmulator.port` with pyserial,
the emulator answers on the master side from its own thread."""

from __future__ import annotations

import json
import os
import select
import threading
import time
import tty
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class EmulatorEvent:
    """Something the emulated device did (output on/off, auto-disarm, an error reply)."""

    time: float
    """``time.monotonic()`` when it happened, s."""
    kind: str
    detail: str


class PtyEmulator(ABC):
    """Base of the device emulators: a pty, a reader thread and an event log.

    Subclasses implement :meth:`_on_bytes` (bytes the driver sent) and :meth:`_on_tick` (called
    at least every ``tick_s``, for the device's timeouts) and answer with :meth:`send`.

    Parameters
    ----------
    on_event : callable, optional
        Called with every :class:`EmulatorEvent` (``bci emulate`` prints them).
    tick_s : float
        Longest time between two :meth:`_on_tick` calls, s.
    """

    name = "device"

    def __init__(self, on_event: Callable[[EmulatorEvent], None] | None = None,
                 tick_s: float = 0.005) -> None:  # fmt: skip
        self.on_event = on_event
        self.tick_s = tick_s
        self.events: list[EmulatorEvent] = []
        self.port: str | None = None
        self._master = self._slave = -1
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> str:
        """Open the pty and start answering; returns the port path for the driver."""
        if self._thread is not None:
            raise RuntimeError(f"{type(self).__name__} already started; call stop() first.")
        self._master, self._slave = os.openpty()
        tty.setraw(self._master)
        tty.setraw(self._slave)
        # the emulator keeps the slave open too, so the master never reads EIO when a driver
        # closes the port or dies: a real device stays powered when the host goes away
        self.port = os.ttyname(self._slave)
        self._stop.clear()
        self._thread = threading.Thread(target=self._serve, name=f"{self.name}-emulator",
                                        daemon=True)  # fmt: skip
        self._thread.start()
        return self.port

    def stop(self) -> None:
        """Stop answering and close the pty; idempotent."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None
        for fd in (self._master, self._slave):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._master = self._slave = -1

    def unplug(self) -> None:
        """Pull the cable: the pty goes away and the driver's next read or write fails."""
        self.event("unplugged", "port closed by the emulator")
        self.stop()

    def __enter__(self) -> PtyEmulator:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def event(self, kind: str, detail: str = "") -> None:
        """Log an event and pass it to ``on_event``."""
        item = EmulatorEvent(time.monotonic(), kind, detail)
        with self._lock:
            self.events.append(item)
        if self.on_event is not None:
            self.on_event(item)

    def events_of(self, kind: str) -> list[EmulatorEvent]:
        """The logged events of one kind."""
        with self._lock:
            return [e for e in self.events if e.kind == kind]

    def send(self, data: bytes) -> None:
        """Answer the driver."""
        os.write(self._master, data)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([self._master], [], [], self.tick_s)
                now = time.monotonic()
                if ready:
                    data = os.read(self._master, 4096)
                    if data:
                        self._on_bytes(data, now)
                self._on_tick(now)
            except OSError:
                if not self._stop.is_set():
                    self.event("error", "pty closed")
                return

    @abstractmethod
    def _on_bytes(self, data: bytes, now: float) -> None: ...

    @abstractmethod
    def _on_tick(self, now: float) -> None: ...


def print_event(event: EmulatorEvent) -> None:
    """``bci emulate``'s event printer: one JSON object per line, flushed."""
    line = {"t": round(event.time, 4), "kind": event.kind, "detail": event.detail}
    print(json.dumps(line), flush=True)
