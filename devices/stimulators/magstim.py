"""A Magstim 200² TMS stimulator over its serial remote-control protocol.

The protocol (as documented by the open-source MagPy library): every message is ASCII command
bytes followed by one CRC byte, ``~sum(bytes) & 0xFF``; the device answers with the command byte
echoed, an instrument status byte, any data digits, and a CRC over the reply. ``Q@`` takes remote
control, ``R@`` releases it, ``@nnn`` sets the power (%MSO, three digits), ``J@`` reads the
parameters, ``EB`` arms, ``EH`` fires and ``EA`` disarms. The status byte in a reply is the state
*before* the command, except for the remote-control bit of ``Q@``/``R@``. The device disarms
itself after 1 s without a valid command, so a keep-alive ``Q@`` goes out while started.
"""

from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import astuple, dataclass

import serial

from devices.stimulators.base import HOST_DEADMAN_S, SessionLimits, Stimulator, StimulatorError

PORT_HINT = "check the cable and set --set stimulator.port=..."

COMMAND_NAMES = {b"Q@": "enable remote control", b"R@": "release remote control",
                 b"J@": "read parameters", b"EB": "arm", b"EH": "fire",
                 b"EA": "disarm"}  # fmt: skip
"""What each two-byte command does, for error messages; ``@nnn`` is "set power"."""

PARAMETER_DIGITS = 9
"""200² ``J@`` data: power (3 ASCII digits) then 6 digits the 200² leaves at zero."""


def crc(message: bytes) -> int:
    """The Magstim checksum of ``message``: the inverted low byte of the sum of its bytes."""
    return ~sum(message) & 0xFF


def frame(message: bytes) -> bytes:
    """``message`` with its CRC byte appended, ready for the wire."""
    return message + bytes([crc(message)])


def describe(message: bytes) -> str:
    """``"EH (fire)"``: a command as the error messages name it."""
    if message[:1] == b"@":
        return f"{message.decode('ascii', 'replace')} (set power)"
    return f"{message[:2].decode('ascii', 'replace')} ({COMMAND_NAMES.get(message[:2], '?')})"


@dataclass(frozen=True)
class MagstimStatus:
    """The instrument status byte; the fields are its bits, bit 0 first."""

    standby: bool = True
    armed: bool = False
    ready: bool = False
    """Charged: a fire command now delivers a pulse."""
    coil_present: bool = True
    replace_coil: bool = False
    error_present: bool = False
    error_type: bool = False
    remote: bool = False
    """Under remote (serial) control."""

    @classmethod
    def from_byte(cls, value: int) -> MagstimStatus:
        """Decode a status byte (0–255)."""
        return cls(*(bool(value >> bit & 1) for bit in range(8)))

    def to_byte(self) -> int:
        """Encode as the status byte."""
        return sum(int(bit) << n for n, bit in enumerate(astuple(self)))

    @property
    def energised(self) -> bool:
        """Armed or ready (some firmware clears the armed bit once ready)."""
        return self.armed or self.ready


class MagstimRefused(StimulatorError):
    """The device answered with an error reply (invalid command, invalid data, state conflict).

    Attributes
    ----------
    code : str
        ``"?"`` invalid command or CRC, ``"data"`` invalid data, ``"S"`` state conflict.
    """

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


REFUSALS = {"?": "invalid command or bad checksum (?)",
            "data": "data out of range or not valid (?)",
            "S": "command conflicts with the current state (S)"}  # fmt: skip


class MagstimStimulator(Stimulator):
    """A Magstim 200² under remote control: sets the power, arms, fires single pulses.

    ``write(amplitude, 0, pulses)``: amplitude is %MSO, rounded to an integer. Above zero the
    device is set to that power (read back and verified) and armed; ``pulses=1`` then fires if
    the device is charged, else skips (returns 0 and counts :attr:`n_skipped`). Zero disarms.

    Parameters
    ----------
    port : str
        Serial port, e.g. ``/dev/ttyUSB0`` or ``COM3``.
    max_power_pct : float
        Highest power this driver will set, %MSO (0–100]; the governor's limit is lower.
    baudrate : int
        Serial speed; the Magstim uses 9600.
    reply_timeout_s : float
        Longest wait for a reply, s.
    keepalive_s : float
        A keep-alive goes out when nothing was sent for this long, s (≤ 0.5; the device
        disarms after 1 s of silence).
    limits : SessionLimits | None
        The session's limits, refused beyond by the driver itself (default the hard ceiling).
    """

    modality = "tms"

    def __init__(self, port: str, max_power_pct: float = 100.0, baudrate: int = 9600,
                 reply_timeout_s: float = 0.3, keepalive_s: float = 0.3,
                 limits: SessionLimits | None = None) -> None:  # fmt: skip
        if not 0 < max_power_pct <= 100:
            raise ValueError(f"max_power_pct must be within (0, 100] %MSO, got {max_power_pct!r}.")
        if not 0 < reply_timeout_s <= 5:
            raise ValueError(f"reply_timeout_s must be within (0, 5] s, got {reply_timeout_s!r}.")
        if not 0 < keepalive_s <= 0.5:
            raise ValueError(f"keepalive_s must be within (0, 0.5] s (the Magstim disarms after "
                             f"1 s of silence), got {keepalive_s!r}.")  # fmt: skip
        self.port = port
        self.max_power_pct = float(max_power_pct)
        self.baudrate = baudrate
        self.reply_timeout_s = reply_timeout_s
        self.keepalive_s = keepalive_s
        self._serial: serial.Serial | None = None
        # one lock for the port and the device state: a command and its reply never interleave
        # with the keep-alive's
        self._lock = threading.Lock()
        self._keepalive: threading.Thread | None = None
        self._keepalive_stop = threading.Event()
        self._last_sent = -math.inf
        self._power: int | None = None
        self._armed = False
        self.status = MagstimStatus()
        """The latest status byte the device sent (its state before that command)."""
        super().__init__(limits)

    def _reset(self) -> None:
        super()._reset()
        self.n_skipped = 0
        """Fire requests skipped because the device was still charging."""

    def telemetry(self) -> dict:
        """The device's latest status bits, its power (%MSO) and the skipped pulses."""
        status = self.status
        return {"power_pct": self._power, "armed": status.energised, "ready": status.ready,
                "coil_present": status.coil_present, "error_present": status.error_present,
                "remote": status.remote, "n_skipped": self.n_skipped}  # fmt: skip

    # -- lifecycle ---------------------------------------------------------------------------

    def _connect(self) -> None:
        port = serial.Serial()
        port.port, port.baudrate = self.port, self.baudrate
        port.timeout = port.write_timeout = self.reply_timeout_s
        # RTS is the quick-fire trigger line on Magstim trigger cables, and pyserial raises it
        # on open unless told otherwise
        port.rts = False
        if os.name == "posix":
            port.exclusive = True  # a second program on the port would steal replies
        try:
            port.open()
        except (OSError, ValueError) as error:
            raise StimulatorError(
                f"cannot open the Magstim port {self.port}: {error}; {PORT_HINT}"
            ) from error
        self._serial, self._armed = port, False
        try:
            with self._lock:
                status = self._query_status()
                self._power = self._read_power()
            if not status.coil_present or status.error_present:
                problem = "no coil" if not status.coil_present else "an error (status bit 5)"
                raise StimulatorError(
                    f"Magstim on {self.port} reports {problem}; connect the coil, clear the "
                    "fault on the front panel, then connect again."
                )
        except BaseException:
            self._release()
            raise

    def _start(self) -> None:
        self._keepalive_stop.clear()
        self._keepalive = threading.Thread(target=self._keep_alive, name="magstim-keepalive",
                                           daemon=True)  # fmt: skip
        self._keepalive.start()

    def _stop(self) -> None:
        try:
            with self._lock:
                self._transact(b"EA")
                self._armed = False
                status = self._query_status()
            if status.energised:
                raise StimulatorError(
                    f"Magstim on {self.port} still reports armed after EA (disarm); press "
                    "disarm on its front panel."
                )
        finally:
            self._end_keepalive()

    def _disconnect(self) -> None:
        self._end_keepalive()
        self._release()  # never raises

    # -- commands ----------------------------------------------------------------------------

    def _write(self, amplitude: float, frequency_hz: float, pulses: int) -> int:
        if amplitude < 0 or amplitude > self.max_power_pct:
            raise ValueError(
                f"amplitude {amplitude!r} %MSO is outside 0..max_power_pct "
                f"({self.max_power_pct:g}); nothing was written."
            )
        if frequency_hz != 0:
            raise ValueError(
                f"frequency_hz must be 0 for single-pulse Magstim TMS, got {frequency_hz!r}; "
                "nothing was written."
            )
        power = min(round(amplitude), math.floor(self.max_power_pct))
        with self._lock:
            if power == 0:
                if self._armed or self.status.energised:
                    self._transact(b"EA")
                    self._armed = False
                return 0
            if power != self._power:
                self._set_power(power)
            if not self._armed:
                self._armed = True  # before EB: a timed-out EB may still have armed it
                self._transact(b"EB")
            return self._fire() if pulses else 0

    def _set_power(self, power: int) -> None:
        self._transact(b"@%03d" % power)
        readback = self._read_power()
        self._power = readback
        if readback != power:
            if self._armed:
                self._transact(b"EA")
                self._armed = False
            raise StimulatorError(
                f"Magstim on {self.port} reads back {readback} %MSO after being set to {power} "
                "%MSO; it was disarmed and nothing fired. Check the device before continuing."
            )

    def _fire(self) -> int:
        try:
            self._transact(b"EH")
        except MagstimRefused as refused:
            if refused.code != "S":
                raise
            # the device refuses a fire while it recharges and while disarmed; only the first
            # is a normal skip
            if self._query_status().energised:
                self.n_skipped += 1
                return 0
            self._armed = False
            raise StimulatorError(
                f"Magstim refused EH (fire): state conflict — not armed (it disarmed itself: "
                f"coil temperature, front panel or watchdog). Stop the session and check "
                f"{self.port}."
            ) from refused
        return 1

    def _query_status(self) -> MagstimStatus:
        self._transact(b"Q@")
        return self.status

    def _read_power(self) -> int:
        data = self._transact(b"J@")[2:]
        if len(data) != PARAMETER_DIGITS or not data.isdigit():
            raise StimulatorError(
                f"Magstim on {self.port} sent malformed parameters {data!r} to J@ (read "
                "parameters); is it a 200² (a Rapid² answers differently)?"
            )
        return int(data[:3])

    def _transact(self, message: bytes) -> bytes:
        """Send one command and return the checked reply without its CRC (caller holds the
        lock)."""
        if self._serial is None:
            raise StimulatorError(f"Magstim port {self.port} is closed; connect() first.")
        what = describe(message)
        try:
            waiting = self._serial.in_waiting
            if waiting:
                # a late reply to an earlier, timed-out command must not pass for this one's
                self._serial.read(waiting)
            self._last_sent = time.monotonic()
            self._serial.write(frame(message))
            reply = self._read(1, what)
            if reply == b"?":
                raise MagstimRefused(f"Magstim refused {what}: {REFUSALS['?']}.", "?")
            reply += self._read(1, what)
            # a valid status under remote control has bit 7 set, so it never reads as ? or S
            if reply[1:] in (b"?", b"S"):
                reply += self._read(1, what)
                code = "S" if reply[1:2] == b"S" else "data"
                self._check_crc(reply, what)
                raise MagstimRefused(f"Magstim refused {what}: {REFUSALS[code]}.", code)
            length = 2 + PARAMETER_DIGITS + 1 if message[:1] == b"J" else 3
            reply += self._read(length - 2, what)
        except OSError as error:  # serial.SerialException is an OSError
            raise StimulatorError(
                f"Magstim port {self.port} closed or failed during {what}: {error}. The device "
                f"disarms itself within 1 s; {PORT_HINT}, then start a new session."
            ) from error
        self._check_crc(reply, what)
        if reply[0] != message[0]:
            raise StimulatorError(
                f"Magstim on {self.port} answered {reply[:1]!r} to {what}; the link is out of "
                "step. Stop the session and reconnect."
            )
        self.status = MagstimStatus.from_byte(reply[1])
        return reply[:-1]

    def _read(self, n: int, what: str) -> bytes:
        data = self._serial.read(n)
        if len(data) < n:
            raise StimulatorError(
                f"Magstim on {self.port} did not answer {what} within {self.reply_timeout_s:g} "
                f"s; {PORT_HINT} and that the stimulator is on."
            )
        return data

    def _check_crc(self, reply: bytes, what: str) -> None:
        if crc(reply[:-1]) != reply[-1]:
            raise StimulatorError(
                f"Magstim on {self.port} sent a reply to {what} with a bad checksum "
                f"({reply!r}); check the cable and the baud rate ({self.baudrate})."
            )

    # -- keep-alive and shutdown -------------------------------------------------------------

    def _keep_alive(self) -> None:
        while True:
            due = self._last_sent + self.keepalive_s
            if self._keepalive_stop.wait(max(0.0, due - time.monotonic())):
                return
            with self._lock:
                # the engine may have sent something while this thread waited for the lock
                if time.monotonic() < self._last_sent + self.keepalive_s:
                    continue
                try:
                    if self._armed and not self._host_alive():
                        # a hung engine must not leave the coil armed on our keep-alive
                        self._fail(StimulatorError(
                            f"the engine stopped answering for over {HOST_DEADMAN_S} s; the "
                            f"Magstim on {self.port} was disarmed. Check the engine's load."
                        ))  # fmt: skip
                        self._transact(b"EA")
                        self._armed = False
                    status = self._query_status()
                except StimulatorError as error:
                    self._fail(StimulatorError(f"Magstim keep-alive failed: {error}"))
                    return
                except Exception as error:
                    # a thread that dies quietly would leave the engine firing without a
                    # keep-alive; the engine stops on this at its next poll
                    self._fail(StimulatorError(f"Magstim keep-alive crashed: {error!r}"))
                    raise
            if status.error_present:
                self._fail(StimulatorError(
                    f"Magstim on {self.port} reports an error (status error bit); stimulation "
                    "stopped. Clear the fault on the front panel."))  # fmt: skip
                return

    def _end_keepalive(self) -> None:
        self._keepalive_stop.set()
        thread, self._keepalive = self._keepalive, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=2 * self.reply_timeout_s + 1)

    def _release(self) -> None:
        """Disarm, hand control back to the front panel and close the port; never raises."""
        if self._serial is None:
            return
        with self._lock:
            for message in (b"EA", b"R@"):
                try:
                    self._transact(message)
                except StimulatorError:
                    # a dead link or a refusal: releasing must not raise, and the device
                    # disarms itself after 1 s without a command
                    break
            self._armed = False
            port, self._serial = self._serial, None
        try:
            port.close()
        except OSError:
            pass  # the port is already gone; nothing is left to release
