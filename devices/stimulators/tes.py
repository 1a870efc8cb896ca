"""Driver for open-hardware tES current stimulators (tDCS/tACS) speaking the NeuroLoop tES serial
protocol, version 1 (``docs/tes_serial_protocol.md``, framing in ``tes_protocol``)."""

from __future__ import annotations

import struct
import threading
import time

import pylsl
import serial

from bci.safety.ceilings import HARD_CEILINGS
from devices.stimulators.base import SessionLimits, Stimulator, StimulatorError
from devices.stimulators.tes_protocol import (
    IMPEDANCE_OPEN,
    PAYLOADS,
    PROTOCOL_VERSION,
    SAFE_OFF_S,
    WATCHDOG_S,
    Cmd,
    Err,
    Frame,
    FrameDecoder,
    State,
    encode_frame,
    fault_names,
)

_FAULT_HINTS = {
    "over-current": "check the electrodes and leads for a short",
    "impedance-high": "rewet the sponges and press the electrodes firmly on",
    "compliance-limit": "impedance too high for this current: rewet the sponges",
    "watchdog": "the host sent nothing for 500 ms (engine stalled or cable dropped)",
}
_NAK_HINTS = {
    Err.BAD_CRC: "the line corrupts frames: check the cable",
    Err.UNKNOWN_COMMAND: "the firmware does not speak protocol v1",
    Err.BAD_LENGTH: "the firmware does not speak protocol v1",
    Err.OUT_OF_RANGE: "the device's own limits refuse it: lower the protocol's limits",
    Err.WRONG_STATE: "the device is not in the state the command needs (a latched fault?)",
    Err.HARDWARE_FAULT: "the device reports a hardware fault: power-cycle it and check it",
}


class TesStimulator(Stimulator):
    """A tDCS/tACS current stimulator on a serial port (protocol v1).

    Heartbeats from a background thread keep the device's 500 ms watchdog fed while the output
    is on, and read its telemetry; a fault bit, an electrode impedance above
    ``max_impedance_ohm`` or a dead port is raised at the engine's next :meth:`poll`. If this
    process dies, the device's watchdog turns the output off.

    Parameters
    ----------
    port : str
        Serial port, e.g. ``/dev/ttyACM0``.
    modality : str
        ``tdcs`` (frequency always 0) or ``tacs`` (0.1–150 Hz).
    baudrate : int
        Line speed, baud (8N1).
    reply_timeout_s : float
        Longest wait for a command's reply, s.
    heartbeat_s : float
        Heartbeat period, s; at most a third of the device's 500 ms watchdog.
    max_impedance_ohm : float
        Electrode impedance above which a running session fails, Ω.
    limits : SessionLimits | None
        The session's limits: refused beyond by the driver, and the device's own ramp is set to
        ``limits.ramp_s`` so the hardware never steps either (default: the hard ceiling and
        no device ramp).
    """

    TELEMETRY_EVERY = 3
    """Every this many heartbeats is a GET_TELEMETRY instead."""
    STOPPED_UA = 50
    """|measured current| at or below which the output counts as off after STOP, µA."""

    def __init__(self, port: str, modality: str = "tdcs", baudrate: int = 115200,
                 reply_timeout_s: float = 0.2, heartbeat_s: float = 0.1,
                 max_impedance_ohm: float = 20000,
                 limits: SessionLimits | None = None) -> None:  # fmt: skip
        if modality not in ("tdcs", "tacs"):
            raise ValueError(f"modality must be 'tdcs' or 'tacs', got {modality!r}.")
        if not (0 < heartbeat_s <= WATCHDOG_S / 3 and reply_timeout_s > 0 < max_impedance_ohm):
            raise ValueError(
                f"heartbeat_s must be in (0, {WATCHDOG_S / 3:.3f}] s (the device's watchdog is "
                f"{WATCHDOG_S} s), reply_timeout_s and max_impedance_ohm > 0; got "
                f"{heartbeat_s!r}, {reply_timeout_s!r}, {max_impedance_ohm!r}."
            )
        self.port, self.modality, self.baudrate = port, modality, baudrate
        self.reply_timeout_s, self.heartbeat_s = reply_timeout_s, heartbeat_s
        self.max_impedance_ohm = max_impedance_ohm
        self.identity: dict = {}
        """HELLO's answer: protocol, firmware, n_channels, max_dc_ma, max_ac_ma, min_freq_hz,
        max_freq_hz, compliance_v."""
        self._who = f"tES stimulator on {port}"  # how every error names the device
        self._serial: serial.Serial | None = None
        self._lock = threading.Lock()  # one transaction on the port at a time
        self._decoder = FrameDecoder()
        self._seq = self._amplitude_ua = self._frequency_mhz = 0
        self._telemetry: dict = {}
        self._heartbeat: threading.Thread | None = None
        self._halt = threading.Event()
        super().__init__(limits)

    def _connect(self) -> None:
        try:
            self._serial = serial.Serial(self.port, self.baudrate, timeout=0.01,
                                         write_timeout=self.reply_timeout_s)  # fmt: skip
        except (serial.SerialException, OSError, ValueError) as exc:
            raise StimulatorError(
                f"cannot open the tES stimulator port {self.port!r} ({exc}): "
                "check the cable and --set stimulator.port=..."
            ) from exc
        self._decoder = FrameDecoder()
        try:
            self._identify()
            # STOP clears a fault latched in an earlier session. The device ramps every change
            # over the governor's longest step time: a step the governor allows then moves at
            # no more than the session slew on the hardware too, and no change is ever a jump
            # (an E-stop's zero takes that long; the device's STOP safe-off takes 100 ms)
            ramp_ms = round(self.limits.ramp_s * 1000)
            for cmd, value in ((Cmd.STOP, None), (Cmd.SET_RAMP, ramp_ms),
                               (Cmd.SET_AMPLITUDE, 0), (Cmd.SET_FREQUENCY, 0)):  # fmt: skip
                self._command(cmd, value)
            self._amplitude_ua = self._frequency_mhz = 0
        except BaseException:
            self._close()
            raise

    def _start(self) -> None:
        if (state := self._command(Cmd.START)[0]) != State.RUNNING:
            raise StimulatorError(f"{self._who} is {State(state).name} after START: check it.")
        self._read_telemetry()
        self._halt.clear()
        self._heartbeat = threading.Thread(target=self._heartbeat_loop, daemon=True,
                                           name=f"tes-heartbeat-{self.port}")  # fmt: skip
        self._heartbeat.start()

    def _write(self, amplitude: float, frequency_hz: float, pulses: int) -> int:
        ua, mhz = round(amplitude * 1000), round(frequency_hz * 1000)
        if self.modality == "tdcs" and mhz != 0:
            raise ValueError(f"tdcs needs frequency_hz 0, got {frequency_hz!r}; nothing written.")
        if self.modality == "tacs" and not (100 <= mhz <= 150_000 or mhz == ua == 0):
            raise ValueError(f"tacs needs frequency_hz in 0.1–150 (0 only with amplitude 0), "
                             f"got {frequency_hz!r}; nothing written.")  # fmt: skip
        if self.modality == "tacs" and ua == 0:
            # a sine ramping down keeps its frequency: dropping to 0 Hz at once would drive the
            # ramp (limits.ramp_s) as DC. At zero the frequency means nothing; it stays set.
            mhz = self._frequency_mhz
        steps = [(Cmd.SET_AMPLITUDE, ua)] if ua != self._amplitude_ua else []
        if mhz != self._frequency_mhz:
            # never drive the new amplitude at the old frequency (0 → 1 mA at 0 → 10 Hz must
            # not pass through 1 mA DC): a rise follows the frequency change, a fall precedes it
            rising = abs(ua) > abs(self._amplitude_ua)
            steps.insert(0 if rising else len(steps), (Cmd.SET_FREQUENCY, mhz))
        for cmd, value in steps:
            self._check_health(*self._command(cmd, value))
            if cmd == Cmd.SET_AMPLITUDE:
                self._amplitude_ua = ua
            else:
                self._frequency_mhz = mhz
        delivered = 0
        # a phase reset means nothing to DC or to a sine at rest: nothing is delivered then
        if pulses == 1 and self.modality == "tacs" and self._frequency_mhz and self._amplitude_ua:
            self._check_health(*self._command(Cmd.PHASE_RESET))
            delivered = 1
        self.poll()
        return delivered

    def _stop(self) -> None:
        self._stop_heartbeat()
        self._command(Cmd.SET_AMPLITUDE, 0)
        self._amplitude_ua = 0
        if (state := self._command(Cmd.STOP)[0]) != State.IDLE:
            raise StimulatorError(f"{self._who} is {State(state).name} after STOP: switch it "
                                  "off by hand.")  # fmt: skip
        deadline = time.monotonic() + SAFE_OFF_S + self.reply_timeout_s
        while abs(ua := self._read_telemetry()[2]) > self.STOPPED_UA:
            if time.monotonic() > deadline:
                raise StimulatorError(f"{self._who} still measures {ua / 1000:.3f} mA after "
                                      "STOP: remove the electrodes and switch it off.")  # fmt: skip

    def _disconnect(self) -> None:
        self._stop_heartbeat()
        if self._serial is not None:
            try:
                self._command(Cmd.STOP)
            except StimulatorError:
                pass  # a dead device is what its watchdog is for
        self._close()

    def telemetry(self) -> dict:
        """Latest readings: current_ma (signed DC, or AC peak), impedance_ohm (inf: open),
        compliance_v, faults (list of str), state (str), time (``pylsl.local_clock()``, s)."""
        return dict(self._telemetry)

    def _identify(self) -> None:
        fields = struct.unpack(PAYLOADS[Cmd.IDENT], self._transact(Cmd.HELLO, b"", Cmd.IDENT))
        version, major, minor, patch, n_channels, *limits = fields
        names = ("max_dc_ma", "max_ac_ma", "min_freq_hz", "max_freq_hz", "compliance_v")
        scaled = {name: value / 1000 for name, value in zip(names, limits, strict=True)}
        firmware = f"{major}.{minor}.{patch}"
        self.identity = dict(protocol=version, firmware=firmware, n_channels=n_channels, **scaled)
        if version != PROTOCOL_VERSION:
            raise StimulatorError(f"{self._who} speaks protocol v{version}, not "
                                  f"v{PROTOCOL_VERSION}: update its firmware.")  # fmt: skip
        # the device's own limit is the last line behind the governor: it must not be looser
        for kind, limit in (("tdcs", limits[0] / 1000), ("tacs", limits[1] / 1000)):
            if limit > (ceiling := HARD_CEILINGS[kind].max_amplitude):
                raise StimulatorError(
                    f"{self._who} (firmware {firmware}) limits {kind} at "
                    f"{limit:g} mA, above the {ceiling:g} mA hard ceiling: flash firmware that "
                    f"limits at ≤ {ceiling:g} mA."
                )

    def _command(self, cmd: Cmd, value: int | None = None) -> tuple[int, int]:
        """Send a request answered by ACK; returns the device's (state, fault bits)."""
        payload = b"" if value is None else struct.pack(PAYLOADS[cmd], value)
        reply = self._transact(cmd, payload, Cmd.ACK)
        echoed, state, faults = struct.unpack(PAYLOADS[Cmd.ACK], reply)
        if echoed != cmd:
            raise StimulatorError(f"{self._who} acknowledged {echoed:#04x} for {cmd.name}: "
                                  "reconnect it.")  # fmt: skip
        return state, faults

    def _read_telemetry(self) -> tuple[int, int, int, float]:
        """GET_TELEMETRY; returns (state, fault bits, measured µA, impedance Ω)."""
        reply = self._transact(Cmd.GET_TELEMETRY, b"", Cmd.TELEMETRY)
        state, faults, ua, ohm, mv = struct.unpack(PAYLOADS[Cmd.TELEMETRY], reply)
        ohm = float("inf") if ohm == IMPEDANCE_OPEN else float(ohm)
        self._telemetry = dict(current_ma=ua / 1000, impedance_ohm=ohm, compliance_v=mv / 1000,
                               faults=fault_names(faults), state=State(state).name.lower(),
                               time=pylsl.local_clock())  # fmt: skip
        return state, faults, ua, ohm

    def _transact(self, cmd: Cmd, payload: bytes, expect: Cmd) -> bytes:
        """One request and its reply under the port lock; returns the reply's payload."""
        with self._lock:
            if self._serial is None:
                raise StimulatorError(f"{self._who}: port closed; call connect() first.")
            self._seq = (self._seq + 1) & 0xFF
            frame = encode_frame(self._seq, cmd, payload)
            for attempt in range(2):
                try:
                    self._serial.write(frame)
                    reply = self._read_reply(self._seq)
                except (serial.SerialException, OSError) as exc:
                    raise StimulatorError(
                        f"{self._who}: the port failed during {cmd.name} ({exc}): check the USB "
                        f"cable and power; the device's watchdog turns the output off within "
                        f"{WATCHDOG_S + SAFE_OFF_S:g} s."
                    ) from exc
                if reply is None:
                    raise StimulatorError(
                        f"no reply from the {self._who} to {cmd.name} within "
                        f"{self.reply_timeout_s:g} s: check it is on, the cable, the baud rate "
                        f"({self.baudrate}) and --set stimulator.port=..."
                    )
                if reply.cmd != Cmd.NAK:
                    break
                error = Err(struct.unpack(PAYLOADS[Cmd.NAK], reply.payload)[1])
                # a corrupted request is safe to resend once: every command is idempotent
                # except PHASE_RESET, and a second reset a few ms later is harmless
                if error != Err.BAD_CRC or attempt:
                    value = f" {struct.unpack(PAYLOADS[cmd], payload)[0]}" if payload else ""
                    raise StimulatorError(f"{self._who} refused {cmd.name}{value}: "
                                          f"{error.name} — {_NAK_HINTS[error]}.")  # fmt: skip
            if reply.cmd != expect:
                raise StimulatorError(f"{self._who} answered {cmd.name} with {reply.cmd:#04x}, "
                                      f"not {expect.name}: is it on protocol v1?")  # fmt: skip
            return reply.payload

    def _read_reply(self, seq: int) -> Frame | None:
        deadline = time.monotonic() + self.reply_timeout_s
        while (now := time.monotonic()) < deadline:
            for frame in self._decoder.feed(self._serial.read(self._serial.in_waiting or 1), now):
                # replies to earlier, timed-out requests carry an older sequence number
                ok = frame.crc_ok and frame.seq == seq and frame.cmd >= 0x80
                if ok and len(frame.payload) == struct.calcsize(PAYLOADS.get(frame.cmd, "<x")):
                    return frame
        return None

    def _close(self) -> None:
        port, self._serial = self._serial, None
        if port is not None:
            try:
                port.close()
            except (serial.SerialException, OSError):
                pass  # the device vanished with its port; nothing is left to release

    def _heartbeat_loop(self) -> None:
        due, n = time.monotonic(), 0
        while not self._halt.wait(max(0.0, due - time.monotonic())):
            due, n = max(due + self.heartbeat_s, time.monotonic()), n + 1
            if self._fault is not None or (self._amplitude_ua and not self._host_alive()):
                # a failed driver or a hung engine: let the device's watchdog zero the output
                continue
            try:
                if n % self.TELEMETRY_EVERY:
                    self._check_health(*self._command(Cmd.HEARTBEAT))
                else:
                    state, faults, _, ohm = self._read_telemetry()
                    self._check_health(state, faults, ohm)
            except StimulatorError as exc:
                self._fail(exc)  # the port is gone: stop; the engine sees it at poll()
                return

    def _stop_heartbeat(self) -> None:
        self._halt.set()
        if self._heartbeat is not None:
            self._heartbeat.join(timeout=self.reply_timeout_s * 2 + self.heartbeat_s + 1)
            self._heartbeat = None

    def _check_health(self, state: int, faults: int, impedance_ohm: float = 0.0) -> None:
        """Record a device fault, or too high an impedance while running, for :meth:`poll`."""
        if faults or state == State.FAULT:
            names = fault_names(faults)
            hints = "; ".join(_FAULT_HINTS[name] for name in names) or "send STOP and check it"
            self._fail(StimulatorError(f"{self._who} reported {', '.join(names) or 'a fault'} "
                                       f"and turned its output off: {hints}."))  # fmt: skip
        elif state == State.RUNNING and impedance_ohm > self.max_impedance_ohm:
            self._fail(StimulatorError(
                f"electrode impedance {impedance_ohm / 1000:.0f} kΩ above "
                f"{self.max_impedance_ohm / 1000:.0f} kΩ on {self.port}: check the sponges are "
                f"wet and the electrodes firmly on, then restart the session."
            ))  # fmt: skip
