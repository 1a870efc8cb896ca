"""The stimulator base class: one explicit lifecycle for simulated and hardware stimulators."""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass

import pylsl

from bci.safety.ceilings import HARD_CEILINGS
from bci.safety.command import GovernedCommand, is_latest

HOST_DEADMAN_S = 0.25
"""A driver's keep-alive feeds its device only while the host's loop is alive (it polled or
wrote within this long): a hung engine then lets the device's own watchdog zero the output
(tES: 0.5 s) or the driver disarm it (TMS), well within 1 s."""


class StimulatorError(RuntimeError):
    """The stimulator failed or stopped answering (port closed, error reply, read-back
    mismatch). The engine latches its emergency stop and ends the session on it."""


class CommandRefused(StimulatorError):
    """The driver refused a command beyond the session limits it holds, or one that is not its
    governor's; nothing was written. The governor should never make one: the engine treats it
    as a failure (emergency stop, session ends)."""


_TOLERANCE = 1e-9


@dataclass(frozen=True)
class SessionLimits:
    """The session limits a driver enforces itself, behind the governor (defence in depth)."""

    max_amplitude: float
    """Largest |amplitude| (mA, or %MSO for TMS)."""
    frequency_hz: float | None = None
    """The only non-zero frequency allowed, Hz (0: none; None: not checked here)."""
    max_step: float = math.inf
    """Largest change away from zero in one command (the governor's slew step), unit."""
    ramp_s: float = 0.0
    """The time a device that ramps by itself should take over any one change, s (tES: the
    governor's longest step time, so the device never steps and a step the governor allows
    moves at no more than the session slew)."""
    min_pulse_interval_s: float = 0.0
    """Shortest time between two pulses, by the governor's clock, s."""

    @classmethod
    def from_governor(cls, settings) -> SessionLimits:
        """The driver's share of a :class:`GovernorSettings`."""
        slewed = settings.slewed
        return cls(
            max_amplitude=settings.max_amplitude, frequency_hz=settings.frequency_hz,
            max_step=settings.max_slew_per_s * settings.max_step_s if slewed else math.inf,
            ramp_s=settings.max_step_s if slewed else 0.0,
            min_pulse_interval_s=settings.min_pulse_interval_s,
        )  # fmt: skip

    def refusal(self, command: GovernedCommand, last: StimCommand | None,
                last_pulse_at: float | None) -> str | None:  # fmt: skip
        """Why ``command`` is beyond these limits after ``last``; None when it is within."""
        amplitude, before = command.amplitude, (last.amplitude if last is not None else 0.0)
        if abs(amplitude) > self.max_amplitude + _TOLERANCE:
            return f"|amplitude| {abs(amplitude):g} above the session limit {self.max_amplitude:g}"
        if self.frequency_hz is not None and command.frequency_hz not in (0.0, self.frequency_hz):
            return f"frequency {command.frequency_hz:g} Hz, the session's is {self.frequency_hz:g}"
        toward_zero = min(0.0, before) <= amplitude <= max(0.0, before)  # a fall is always safe
        # through zero (tDCS polarity), only the part beyond zero is a rise: the governor counts
        # its step from its own output, which a hold may have lowered below the last write
        rise = abs(amplitude) if amplitude * before < 0 else abs(amplitude - before)
        if not toward_zero and rise > self.max_step * (1 + 1e-6) + _TOLERANCE:
            return (f"a step of {rise:g} (from {before:g} to {amplitude:g}); "
                    f"the session slew allows {self.max_step:g} per command")  # fmt: skip
        if (command.pulses and last_pulse_at is not None
                and command.decided_at - last_pulse_at < self.min_pulse_interval_s - 1e-6):
            return (f"a pulse {command.decided_at - last_pulse_at:.3f} s after the previous one; "
                    f"the session allows one every {self.min_pulse_interval_s:g} s")  # fmt: skip
        return None


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

    def __init__(self, limits: SessionLimits | None = None) -> None:
        self.limits = limits or SessionLimits(HARD_CEILINGS[self.modality].max_amplitude)
        """What this driver refuses beyond (default: the hard ceiling only; a session's
        stimulator always gets the session's limits, :func:`open_stimulator`)."""
        self._connected = False
        self._started = False
        self._fault: StimulatorError | None = None
        self._host_seen = time.monotonic()
        self._reset()

    def _reset(self) -> None:
        self.last: StimCommand | None = None
        self.n_commands = 0
        self.n_pulses = 0
        self._governor: int | None = None
        """The governor whose commands this driver takes (the first one it is given)."""
        self._written_seq = 0
        self._last_pulse_at: float | None = None

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

    def write(self, command: GovernedCommand, sample_time: float) -> StimCommand:
        """Send one command the governor made; returns the :class:`StimCommand` with its write
        time.

        Raises
        ------
        TypeError
            ``command`` is not a :class:`GovernedCommand` (only the governor makes those).
        CommandRefused
            The command is not this session's governor's, is stale, or is beyond the session
            limits this driver holds; nothing was written.
        StimulatorError
            The device failed; the output state is unknown, stop and disconnect.
        """
        if not self._started:
            raise RuntimeError(f"{type(self).__name__} is not started; call start() first.")
        if type(command) is not GovernedCommand:
            raise TypeError(f"a stimulator takes only the governor's commands (GovernedCommand), "
                            f"got {type(command).__name__}; nothing was written.")  # fmt: skip
        self.poll()
        self._check(command)
        delivered = self._write(command.amplitude, command.frequency_hz, command.pulses)
        pulses = command.pulses if delivered is None else delivered
        written = StimCommand(command.amplitude, command.frequency_hz, pulses, pylsl.local_clock(),
                              sample_time)  # fmt: skip
        self.last = written
        self.n_commands += 1
        self.n_pulses += pulses
        if command.pulses:
            self._last_pulse_at = command.decided_at
        return written

    def _check(self, command: GovernedCommand) -> None:
        """Refuse a command from another governor, a stale one, or one beyond the limits."""
        if self._governor is None:
            self._governor = command.issuer
        reason = None
        if command.issuer != self._governor:
            reason = "it comes from another governor than this session's"
        elif command.seq <= self._written_seq or not is_latest(command):
            reason = (f"it is not the command its governor issued last (command {command.seq}; "
                      f"{self._written_seq} was written already): a stale or altered copy")
        elif abs(command.amplitude) > HARD_CEILINGS[self.modality].max_amplitude:
            reason = f"|amplitude| {abs(command.amplitude):g} is above the hard ceiling"
        elif command.frequency_hz < 0 or command.pulses not in (0, 1):
            reason = (f"frequency_hz must be >= 0 and pulses 0 or 1, got "
                      f"{command.frequency_hz:g}, {command.pulses}")  # fmt: skip
        else:
            reason = self.limits.refusal(command, self.last, self._last_pulse_at)
        if reason is not None:
            raise CommandRefused(f"{type(self).__name__} refused a command: {reason}; nothing "
                                 "was written. This is a fault of the software above the driver: "
                                 "the session stops.")  # fmt: skip
        self._written_seq = command.seq

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
