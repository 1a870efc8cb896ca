"""An open-hardware tES current stimulator (protocol v1, ``docs/tes_serial_protocol.md``) on a
pty: framing and resync, ACK/NAK, the idle/running/fault state machine, the device-side ramp
and hard limits, the 500 ms watchdog and telemetry from a settable electrode impedance."""

from __future__ import annotations

import math
import random
import struct
from collections.abc import Callable
from types import MappingProxyType

from devices.emulators.pty import EmulatorEvent, PtyEmulator
from devices.stimulators.tes_protocol import (
    FAULT_BITS,
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

MAX_RAMP_MS = 60_000
FAULT_BITS_BY_NAME = {name: bit for bit, name in FAULT_BITS.items()}


class TesEmulator(PtyEmulator):
    """A one-channel tDCS/tACS stimulator answering protocol v1 on a pseudo-terminal.

    Events: started, stopped, amplitude (µA), frequency (mHz), phase-reset, watchdog, fault
    (its name), nak (command and error), output-off (the output reached zero).

    Parameters
    ----------
    on_event : callable, optional
        Called with every event.
    max_dc_ua, max_ac_ua : int
        Device hard limits: |DC current| and AC peak, µA.
    min_freq_mhz, max_freq_mhz : int
        tACS frequency range, mHz.
    compliance_v : float
        Largest voltage the current source can drive, V; a running output that would need more
        trips the compliance-limit fault.
    max_impedance_ohm : float
        Electrode impedance above which a running output trips the impedance-high fault, Ω.
    impedance_ohm : float
        Simulated electrode impedance, Ω (``math.inf``: electrode off); settable at any time.
    firmware : tuple of int
        (major, minor, patch) reported by HELLO.
    """

    name = "tes"

    def __init__(self, on_event: Callable[[EmulatorEvent], None] | None = None, *,
                 max_dc_ua: int = 4000, max_ac_ua: int = 2000, min_freq_mhz: int = 100,
                 max_freq_mhz: int = 150_000, compliance_v: float = 40.0,
                 max_impedance_ohm: float = 100_000, impedance_ohm: float = 5000,
                 firmware: tuple[int, int, int] = (1, 0, 0)) -> None:  # fmt: skip
        super().__init__(on_event)
        self.max_dc_ua, self.max_ac_ua = max_dc_ua, max_ac_ua
        self.min_freq_mhz, self.max_freq_mhz = min_freq_mhz, max_freq_mhz
        self.compliance_v, self.max_impedance_ohm = compliance_v, max_impedance_ohm
        self.impedance_ohm = impedance_ohm
        self.firmware = firmware
        self.hardware_fault = False
        """Set True to make the output stage refuse START and SET_AMPLITUDE (HARDWARE_FAULT)."""
        self._decoder = FrameDecoder()
        self._rng = random.Random(0)  # deterministic ADC noise
        self._state = State.IDLE
        self._faults = 0
        self._pending_faults = 0
        self._setpoint_ua = 0
        self._frequency_mhz = 0
        self._ramp_ms = 1000  # power-on default: a slow ramp, until the host sets its own
        self._level_ua = 0.0
        self._ramp = (0.0, 0.0, 0.0, 0.0)  # start time, from µA, to µA, duration s
        self._last_frame = 0.0
        self.phase_t0 = 0.0
        """``time.monotonic()`` of the sine's last phase 0 (START, PHASE_RESET), s."""

    @property
    def output_ma(self) -> float:
        """Output level now, mA: the DC current, or the sine's peak for tACS; 0 when off."""
        return self._level_ua / 1000

    @property
    def running(self) -> bool:
        """Whether the device is in the running state."""
        return self._state == State.RUNNING

    @property
    def fault(self) -> list[str]:
        """Latched fault names (empty when none)."""
        return fault_names(self._faults)

    @property
    def state(self) -> str:
        """idle | running | fault."""
        return State(self._state).name.lower()

    @property
    def frequency_hz(self) -> float:
        """tACS frequency set, Hz (0: DC)."""
        return self._frequency_mhz / 1000

    @property
    def ramp_ms(self) -> int:
        """Device-side ramp time of an amplitude change, ms."""
        return self._ramp_ms

    def inject_fault(self, name: str) -> None:
        """Trip a fault (e.g. ``"over-current"``) at the next tick while running, as the
        hardware would."""
        if name not in FAULT_BITS_BY_NAME:
            raise ValueError(f"name must be one of {sorted(FAULT_BITS_BY_NAME)}, got {name!r}.")
        self._pending_faults |= FAULT_BITS_BY_NAME[name]

    # -- bytes in -------------------------------------------------------------------------------

    def _on_bytes(self, data: bytes, now: float) -> None:
        for frame in self._decoder.feed(data, now):
            self._handle(frame, now)

    def _handle(self, frame: Frame, now: float) -> None:
        if not frame.crc_ok:
            self._nak(frame, Err.BAD_CRC)
            return
        self._last_frame = now  # any valid frame shows the host is alive
        if frame.cmd not in self._HANDLERS:
            self._nak(frame, Err.UNKNOWN_COMMAND)
            return
        cmd = Cmd(frame.cmd)
        if len(frame.payload) != struct.calcsize(PAYLOADS[cmd]):
            self._nak(frame, Err.BAD_LENGTH)
            return
        value = struct.unpack(PAYLOADS[cmd], frame.payload)[0] if frame.payload else None
        error = self._HANDLERS[cmd](self, value, now)
        if error is not None:
            self._nak(frame, error)
        elif cmd == Cmd.HELLO:
            ident = (
                PROTOCOL_VERSION,
                *self.firmware,
                1,
                self.max_dc_ua,
                self.max_ac_ua,
                self.min_freq_mhz,
                self.max_freq_mhz,
                round(self.compliance_v * 1000),
            )
            self._reply(frame.seq, Cmd.IDENT, *ident)
        elif cmd == Cmd.GET_TELEMETRY:
            self._reply(frame.seq, Cmd.TELEMETRY, *self._telemetry())
        else:
            self._reply(frame.seq, Cmd.ACK, cmd, self._state, self._faults)

    def _reply(self, seq: int, cmd: Cmd, *fields: int) -> None:
        self.send(encode_frame(seq, cmd, struct.pack(PAYLOADS[cmd], *fields)))

    def _nak(self, frame: Frame, error: Err) -> None:
        name = Cmd(frame.cmd).name if frame.cmd in PAYLOADS else f"{frame.cmd:#04x}"
        self.event("nak", f"{name} {error.name}")
        self._reply(frame.seq, Cmd.NAK, frame.cmd, error, self._state, self._faults)

    def _limit_ua(self, frequency_mhz: int) -> int:
        return self.max_dc_ua if frequency_mhz == 0 else self.max_ac_ua

    # -- commands: each returns None (ACK) or the NAK error ------------------------------------

    def _do_nothing(self, value: None, now: float) -> None:
        return None  # HELLO, HEARTBEAT, GET_TELEMETRY: the reply is all

    def _do_set_amplitude(self, ua: int, now: float) -> Err | None:
        if abs(ua) > self._limit_ua(self._frequency_mhz):
            return Err.OUT_OF_RANGE
        if self.hardware_fault and ua != 0:
            return Err.HARDWARE_FAULT
        self._setpoint_ua = ua
        self.event("amplitude", f"{ua} uA")
        if self._state == State.RUNNING:
            self._ramp_to(ua, self._ramp_ms / 1000, now)
        return None

    def _do_set_frequency(self, mhz: int, now: float) -> Err | None:
        in_band = mhz == 0 or self.min_freq_mhz <= mhz <= self.max_freq_mhz
        if not in_band or abs(self._setpoint_ua) > self._limit_ua(mhz):
            return Err.OUT_OF_RANGE
        self._frequency_mhz = mhz
        self.event("frequency", f"{mhz} mHz")
        return None

    def _do_set_ramp(self, ms: int, now: float) -> Err | None:
        if ms > MAX_RAMP_MS:
            return Err.OUT_OF_RANGE
        self._ramp_ms = ms
        return None

    def _do_start(self, value: None, now: float) -> Err | None:
        if self._state == State.FAULT:
            return Err.WRONG_STATE
        if self.hardware_fault:
            return Err.HARDWARE_FAULT
        if self._state == State.IDLE:
            self._state = State.RUNNING
            self.phase_t0 = now
            self._ramp_to(self._setpoint_ua, self._ramp_ms / 1000, now)
            self.event("started", f"{self._setpoint_ua} uA, {self._frequency_mhz} mHz")
        return None

    def _do_stop(self, value: None, now: float) -> None:
        was = self._state
        # a later START begins at zero: the host must ask for current again, on purpose
        self._state, self._faults, self._setpoint_ua = State.IDLE, 0, 0
        self._ramp_to(0.0, SAFE_OFF_S, now)
        if was != State.IDLE:
            self.event("stopped", State(was).name.lower())
        return None

    def _do_phase_reset(self, value: None, now: float) -> Err | None:
        if self._state != State.RUNNING or self._frequency_mhz == 0:
            return Err.WRONG_STATE
        self.phase_t0 = now
        self.event("phase-reset", f"{self._frequency_mhz} mHz")
        return None

    _HANDLERS = MappingProxyType({
        Cmd.HELLO: _do_nothing, Cmd.HEARTBEAT: _do_nothing, Cmd.GET_TELEMETRY: _do_nothing,
        Cmd.SET_AMPLITUDE: _do_set_amplitude, Cmd.SET_FREQUENCY: _do_set_frequency,
        Cmd.SET_RAMP: _do_set_ramp, Cmd.START: _do_start, Cmd.STOP: _do_stop,
        Cmd.PHASE_RESET: _do_phase_reset,
    })  # fmt: skip
    """The request handlers by command id; the reply ids are unknown commands to the device."""

    # -- time -----------------------------------------------------------------------------------

    def _on_tick(self, now: float) -> None:
        for frame in self._decoder.feed(b"", now):  # expires a stalled partial frame
            self._handle(frame, now)
        if self._state == State.RUNNING:
            if now - self._last_frame > WATCHDOG_S:
                self._trip(FAULT_BITS_BY_NAME["watchdog"], now, "watchdog")
            elif self._pending_faults:
                bits, self._pending_faults = self._pending_faults, 0
                self._trip(bits, now, "fault")
            elif self.impedance_ohm > self.max_impedance_ohm:
                self._trip(FAULT_BITS_BY_NAME["impedance-high"], now, "fault")
            elif self._compliance_v() > self.compliance_v:
                self._trip(FAULT_BITS_BY_NAME["compliance-limit"], now, "fault")
        start, begin, end, duration = self._ramp
        done = 1.0 if duration <= 0 else min(1.0, (now - start) / duration)
        self._set_level(begin + (end - begin) * done)

    def _ramp_to(self, target_ua: float, duration_s: float, now: float) -> None:
        self._ramp = (now, self._level_ua, float(target_ua), duration_s)
        if duration_s <= 0:
            self._set_level(float(target_ua))

    def _set_level(self, level_ua: float) -> None:
        was, self._level_ua = self._level_ua, level_ua
        if was != 0 and level_ua == 0:
            self.event("output-off")

    def _trip(self, bits: int, now: float, kind: str) -> None:
        self._faults |= bits
        self._state, self._setpoint_ua = State.FAULT, 0
        self._ramp_to(0.0, SAFE_OFF_S, now)
        self.event(kind, ", ".join(fault_names(bits)))

    def _compliance_v(self) -> float:
        return abs(self._level_ua) * 1e-6 * self.impedance_ohm

    def _telemetry(self) -> tuple[int, int, int, int, int]:
        ua = round(self._level_ua + self._rng.gauss(0.0, 2.0))
        ohm = IMPEDANCE_OPEN if math.isinf(self.impedance_ohm) else round(self.impedance_ohm)
        mv = min(0xFFFF, round(min(self._compliance_v(), self.compliance_v) * 1000))
        return self._state, self._faults, ua, min(ohm, IMPEDANCE_OPEN), mv
