"""The stimulator base class: one explicit lifecycle for simulated and hardware stimulators."""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass

import pylsl

from bci.safety.ceilings import HARD_CEILINGS

HOST_DEADMAN_S = 0.25
"""A driver's keep-alive feeds its device only while the host's loop is alive (it polled or
wrote within this long): a hung engine then lets the device's own watchdog zero the output
(tES: 0.5 s) or the driver disarm it (TMS), well within 1 s."""


class StimulatorError(RuntimeError):
    """The stimulator failed or stopped answering (port closed, error reply, read-back
    mismatch). The engine latches its emergency stop and ends the session on it."""


@dataclass(frozen=True)
class StimCommand:
    """One command as written to a stimulator."""

    amplitude: float
    """mA (tES, pulse trains; signed for tDCS) or %MSO (TMS)."""
    frequency_hz: float
    """tACS / pulse-train frequency, Hz."""
    pulses: int
    """Pulses delivered by this command (TMS pulse, or a tACS phase reset): 0 or 1."""
    write_time: float
    """``pylsl.local_clock()`` when the write completed, s."""
    sample_time: float
    """Timestamp of the newest input sample behind the command, s."""


class Stimulator(ABC):
    """``connect`` → ``start`` → ``write``... → ``stop`` → ``disconnect``; a context manager.

    Only the safety governor's output reaches :meth:`write`. ``stop`` always leaves the output at
    zero (TMS: disarmed); ``disconnect`` also releases the device (remote control off, port
    closed) and never raises, so every exit path leaves the device safe.

    Subclasses implement ``_connect``, ``_write`` and ``_disconnect`` and may override ``_start``
    (e.g. arm, start a keep-alive) and ``_stop``. A background thread of a driver reports a
    failure through :meth:`_fail`; the engine sees it at its next :meth:`poll` or write.
    """

    modality: str = "tdcs"

    def __init__(self) -> None:
        self._connected = False
        self._started = False
        self._fault: StimulatorError | None = None
        self._host_seen = time.monotonic()
        self._reset()

    def _reset(self) -> None:
        self.last: StimCommand | None = None
        self.n_commands = 0
        self.n_pulses = 0

    @property
    def connected(self) -> bool:
        """Whether :meth:`connect` succeeded and :meth:`disconnect` has not run."""
        return self._connected

    def connect(self) -> Stimulator:
        """Open the device; output at zero."""
        if self._connected:
            raise RuntimeError(
                f"{type(self).__name__} is already connected; call disconnect() first."
            )
        self._fault = None
        self._connect()
        self._connected = True
        return self

    def start(self) -> None:
        """Accept commands from now on."""
        if not self._connected:
            raise RuntimeError(f"{type(self).__name__} is not connected; call connect() first.")
        self._reset()
        self._start()
        self._started = True

    def poll(self) -> None:
        """Raise the :class:`StimulatorError` a driver's background thread met, if any.

        Cheap; the engine calls it every loop iteration, which also tells the driver's
        keep-alive that the host is alive (:data:`HOST_DEADMAN_S`).
        """
        self._host_seen = time.monotonic()
        if self._fault is not None:
            raise self._fault

    def telemetry(self) -> dict:
        """The device's latest measurements (current, impedance, faults); empty if none."""
        return {}

    def write(self, amplitude: float, frequency_hz: float, pulses: int, sample_time: float):
        """Send one command; returns the :class:`StimCommand` with its write time.

        Raises
        ------
        StimulatorError
            The device failed; the output state is unknown, stop and disconnect.
        """
        if not self._started:
            raise RuntimeError(f"{type(self).__name__} is not started; call start() first.")
        self.poll()
        ceiling = HARD_CEILINGS[self.modality].max_amplitude
        # the governor already enforces this; the driver refuses it again as a last line
        if not (math.isfinite(amplitude) and abs(amplitude) <= ceiling):
            raise ValueError(
                f"amplitude {amplitude!r} is not finite or above the {self.modality} hard "
                f"ceiling of {ceiling}; nothing was written."
            )
        if not (math.isfinite(frequency_hz) and frequency_hz >= 0 and pulses in (0, 1)):
            raise ValueError(
                f"frequency_hz must be finite and >= 0 and pulses 0 or 1, got "
                f"{frequency_hz!r}, {pulses!r}; nothing was written."
            )
        delivered = self._write(amplitude, frequency_hz, pulses)
        pulses = pulses if delivered is None else delivered
        command = StimCommand(amplitude, frequency_hz, pulses, pylsl.local_clock(), sample_time)
        self.last = command
        self.n_commands += 1
        self.n_pulses += pulses
        return command

    def stop(self) -> None:
        """Output to zero (TMS: disarm); idempotent. Raises :class:`StimulatorError` if the
        device cannot confirm it."""
        if self._started:
            self._started = False
            self._stop()

    def disconnect(self) -> None:
        """Stop if needed and release the device; idempotent, never raises on a dead device
        (a failure to stop is what the device's own watchdog is for)."""
        try:
            self.stop()
        except StimulatorError:
            pass
        finally:
            if self._connected:
                self._connected = False
                self._disconnect()

    def __enter__(self) -> Stimulator:
        self.connect()
        try:
            self.start()
        except BaseException:
            self.disconnect()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.disconnect()

    def _fail(self, error: StimulatorError) -> None:
        """Record a background thread's failure for the next :meth:`poll`."""
        if self._fault is None:
            self._fault = error

    def _host_alive(self) -> bool:
        """Whether the host polled or wrote within :data:`HOST_DEADMAN_S` (keep-alive threads
        stop feeding an active device otherwise)."""
        return time.monotonic() - self._host_seen < HOST_DEADMAN_S

    def _start(self) -> None:
        """Device-specific start (arm, keep-alive); default nothing."""
        return None

    def _stop(self) -> None:
        """Device-specific stop; default: write zero."""
        self._write(0.0, 0.0, 0)

    @abstractmethod
    def _connect(self) -> None: ...

    @abstractmethod
    def _write(self, amplitude: float, frequency_hz: float, pulses: int) -> int | None:
        """Send one command; return the pulses actually delivered (None: as asked)."""

    @abstractmethod
    def _disconnect(self) -> None:
        """Release the device and close the port; must not raise."""
