"""An emulated Magstim 200² on a pseudo-terminal, answering the serial remote-control protocol
as the device does, with its 1 s disarm watchdog, its error replies and injectable faults."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from devices.emulators.pty import EmulatorEvent, PtyEmulator
from devices.stimulators.magstim import PARAMETER_DIGITS, MagstimStatus, crc, frame

FRAME_LENGTHS = {ord("Q"): 3, ord("R"): 3, ord("J"): 3, ord("E"): 3, ord("@"): 5}
"""Message length with its CRC, by command byte."""

PARTIAL_FRAME_S = 0.05
"""A partial message older than this is dropped, as a UART inter-byte timeout would, s."""


class MagstimEmulator(PtyEmulator):
    """A Magstim 200²: remote control, power, arm/ready/fire and the silence watchdog.

    Modelled: ``Q@`` ``R@`` ``J@`` ``@nnn`` ``EB`` ``EH`` ``EA`` with CRC-checked messages and
    replies; replies carry the status byte as it was before the command (remote bit excepted);
    every command except ``Q@`` is refused with a state conflict until remote control is on;
    the device is ready ``ready_delay_s`` after arming, a power change or a pulse; with no
    accepted command for ``watchdog_s`` while armed it disarms and drops remote control.
    Simplified: recharge time does not depend on power, there is no coil temperature, no
    Rapid² commands (rTMS, version) and no RTS quick-fire.

    Parameters
    ----------
    on_event : callable, optional
        Called with every :class:`EmulatorEvent`.
    ready_delay_s : float
        Charging time after arming, a power change or a pulse, s.
    watchdog_s : float
        Silence while armed after which the device disarms itself, s.
    coil_present, error_present : bool
        Status bits the device reports (a driver must refuse to run without a coil or with
        an error).
    reply_delay_s : float
        Fault: every reply is sent this late, s.
    power_readback_offset : int
        Fault: ``J@`` reports the power plus this, %MSO.
    silent : bool
        Fault: the device ignores everything it receives (a dead UART); settable at run time.
    tick_s : float
        Longest time between two watchdog checks, s.
    """

    name = "magstim"

    def __init__(self, on_event: Callable[[EmulatorEvent], None] | None = None, *,
                 ready_delay_s: float = 0.2, watchdog_s: float = 1.0, coil_present: bool = True,
                 error_present: bool = False, reply_delay_s: float = 0.0,
                 power_readback_offset: int = 0, silent: bool = False,
                 tick_s: float = 0.005) -> None:  # fmt: skip
        for name, value in (("ready_delay_s", ready_delay_s), ("watchdog_s", watchdog_s),
                            ("reply_delay_s", reply_delay_s)):  # fmt: skip
            if not value >= 0:
                raise ValueError(f"{name} must be >= 0 s, got {value!r}.")
        super().__init__(on_event=on_event, tick_s=tick_s)
        self.ready_delay_s = ready_delay_s
        self.watchdog_s = watchdog_s
        self.coil_present = coil_present
        self.error_present = error_present
        self.reply_delay_s = reply_delay_s
        self.power_readback_offset = power_readback_offset
        self.silent = silent
        # the test thread reads and faults the device while the pty thread runs it
        self._device = threading.RLock()
        self._remote = False
        self._power = 30
        self._armed = False
        self._ready_at = 0.0
        self._last_accepted = 0.0
        self._fire_times: list[float] = []
        self._buffer = bytearray()
        self._buffer_since = 0.0
        self._pending: list[tuple[float, bytes]] = []
        self.n_messages = 0
        """Well-formed messages received (any command, accepted or refused)."""

    # -- what a test can see and do ----------------------------------------------------------

    @property
    def armed(self) -> bool:
        """Armed (charging or ready)."""
        return self._armed

    @property
    def ready(self) -> bool:
        """Armed and charged: a fire now delivers a pulse."""
        with self._device:
            return self._is_ready(time.monotonic())

    @property
    def remote(self) -> bool:
        """Under remote control."""
        return self._remote

    @property
    def power(self) -> int:
        """Power setting, %MSO."""
        return self._power

    @property
    def pulses(self) -> int:
        """Pulses fired."""
        return len(self._fire_times)

    @property
    def fire_times(self) -> list[float]:
        """``time.monotonic()`` of every pulse, s."""
        with self._device:
            return list(self._fire_times)

    @property
    def replies_pending(self) -> int:
        """Replies held back by ``reply_delay_s`` and not sent yet."""
        with self._device:
            return len(self._pending)

    def trip(self, reason: str = "coil over temperature") -> None:
        """The device disarms itself (over-temperature, front panel)."""
        with self._device:
            self._disarm("disarmed", reason)

    # -- the device --------------------------------------------------------------------------

    def _on_bytes(self, data: bytes, now: float) -> None:
        with self._device:
            if self.silent:
                return
            if not self._buffer:
                self._buffer_since = now
            self._buffer += data
            while self._buffer:
                length = FRAME_LENGTHS.get(self._buffer[0])
                if length is None:
                    # the length of an unknown command is unknown too: resynchronise on the
                    # next message
                    self._invalid(f"unknown command {bytes(self._buffer[:1])!r}")
                    self._buffer.clear()
                    return
                if len(self._buffer) < length:
                    return
                message = bytes(self._buffer[:length])
                del self._buffer[:length]
                self._buffer_since = now
                self.n_messages += 1
                self._handle(message, now)

    def _on_tick(self, now: float) -> None:
        with self._device:
            while self._pending and self._pending[0][0] <= now:
                self.send(self._pending.pop(0)[1])
            if self._buffer and now - self._buffer_since > PARTIAL_FRAME_S:
                self._buffer.clear()
            if self._armed and now - self._last_accepted > self.watchdog_s:
                self._disarm("auto-disarm", f"no command for {self.watchdog_s:g} s")
                self._set_remote(False)

    def _handle(self, message: bytes, now: float) -> None:
        if crc(message[:-1]) != message[-1]:
            self._invalid(f"bad CRC on {message!r}")
            return
        command, key = message[:1], message[:2]
        if not self._remote and command != b"Q":
            self._refuse(command, "S", f"{key!r} before remote control (Q@)")
            return
        prior = self._status(now)
        data = b""
        if command == b"Q":
            self._set_remote(True)
            prior = self._status(now)
        elif command == b"R":
            self._set_remote(False)
            self._disarm("disarmed", "remote control released")
            prior &= 0x7F
        elif command == b"J":
            readback = self._power + self.power_readback_offset
            data = b"%03d" % readback + b"0" * (PARAMETER_DIGITS - 3)
        elif command == b"@":
            digits = message[1:4]
            if not digits.isdigit() or int(digits) > 100:
                self._refuse(command, "?", f"power {digits!r} out of range 000-100")
                return
            if int(digits) != self._power:
                self._power = int(digits)
                self.event("power", f"{self._power}% MSO")
                if self._armed:
                    self._ready_at = now + self.ready_delay_s
        elif key == b"EB":
            if self._armed or not self.coil_present:
                why = "already armed" if self._armed else "no coil"
                self._refuse(command, "S", f"EB: {why}")
                return
            self._armed, self._ready_at = True, now + self.ready_delay_s
            self.event("armed", f"{self._power}% MSO")
        elif key == b"EH":
            if not self._is_ready(now):
                why = "not armed" if not self._armed else "still charging"
                self._refuse(command, "S", f"EH: {why}")
                return
            self._fire_times.append(now)
            self._ready_at = now + self.ready_delay_s
            self.event("fired", f"{self._power}% MSO")
        elif key == b"EA":
            self._disarm("disarmed", "EA")
        else:
            self._invalid(f"unknown command {key!r}")
            return
        self._last_accepted = now
        self._reply(frame(command + bytes([prior]) + data), now)

    def _status(self, now: float) -> int:
        ready = self._is_ready(now)
        return MagstimStatus(
            standby=not self._armed, armed=self._armed, ready=ready,
            coil_present=self.coil_present, error_present=self.error_present,
            remote=self._remote,
        ).to_byte()  # fmt: skip

    def _is_ready(self, now: float) -> bool:
        return self._armed and now >= self._ready_at

    def _set_remote(self, on: bool) -> None:
        if on != self._remote:
            self._remote = on
            self.event("remote-on" if on else "remote-off")

    def _disarm(self, kind: str, why: str) -> None:
        if self._armed:
            self._armed = False
            self.event(kind, why)

    def _invalid(self, why: str) -> None:
        self.event("error-reply", f"? invalid command: {why}")
        self._reply(b"?", time.monotonic())

    def _refuse(self, command: bytes, code: str, why: str) -> None:
        kind = "state conflict" if code == "S" else "invalid data"
        self.event("error-reply", f"{code} {kind}: {why}")
        self._reply(frame(command + code.encode()), time.monotonic())

    def _reply(self, data: bytes, now: float) -> None:
        if self.reply_delay_s > 0:
            self._pending.append((now + self.reply_delay_s, data))
        else:
            self.send(data)
