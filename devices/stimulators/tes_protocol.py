"""The NeuroLoop tES serial protocol, version 1 (``docs/tes_serial_protocol.md``): framing,
CRC, command and error codes, shared by the driver and the emulator."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

PROTOCOL_VERSION = 1
SYNC = 0xA5
MAX_PAYLOAD = 32
OVERHEAD = 6
"""Bytes of a frame besides its payload: sync, length, sequence, command, CRC (2)."""
FRAME_TIMEOUT_S = 0.05
"""A frame must complete this soon after its sync byte, or the receiver drops the sync byte."""
WATCHDOG_S = 0.5
SAFE_OFF_S = 0.1
"""Fixed ramp to zero on STOP, a fault or the watchdog, s."""


# ids and codes are defined in docs/tes_serial_protocol.md; requests < 0x80 ≤ replies
Cmd = IntEnum("Cmd", dict(HELLO=0x01, SET_AMPLITUDE=0x02, SET_FREQUENCY=0x03, SET_RAMP=0x04,
                          START=0x05, STOP=0x06, HEARTBEAT=0x07, PHASE_RESET=0x08,
                          GET_TELEMETRY=0x09, ACK=0x80, IDENT=0x81, TELEMETRY=0x82,
                          NAK=0x8F))  # fmt: skip
Err = IntEnum("Err", dict(BAD_CRC=0x01, UNKNOWN_COMMAND=0x02, BAD_LENGTH=0x03,
                          OUT_OF_RANGE=0x04, WRONG_STATE=0x05,
                          HARDWARE_FAULT=0x06))  # fmt: skip
State = IntEnum("State", dict(IDLE=0, RUNNING=1, FAULT=2))

FAULT_BITS = {0x01: "over-current", 0x02: "impedance-high", 0x04: "compliance-limit",
              0x08: "watchdog"}  # fmt: skip
"""Telemetry / ACK fault bits by name."""

PAYLOADS = {
    Cmd.HELLO: "<", Cmd.SET_AMPLITUDE: "<i", Cmd.SET_FREQUENCY: "<I", Cmd.SET_RAMP: "<H",
    Cmd.START: "<", Cmd.STOP: "<", Cmd.HEARTBEAT: "<", Cmd.PHASE_RESET: "<",
    Cmd.GET_TELEMETRY: "<", Cmd.ACK: "<BBB", Cmd.NAK: "<BBBB", Cmd.IDENT: "<BBBBBHHIIH",
    Cmd.TELEMETRY: "<BBiIH",
}  # fmt: skip
"""struct format of each command's payload (little-endian); see the spec for the fields."""

IMPEDANCE_OPEN = 0xFFFFFFFF
"""Telemetry impedance of an open circuit (electrode off)."""


def crc16_ccitt_false(data: bytes) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, not reflected); ``b"123456789"`` → 0x29B1."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021 if crc & 0x8000 else crc << 1) & 0xFFFF
    return crc


def encode_frame(seq: int, cmd: int, payload: bytes = b"") -> bytes:
    """One frame: sync, length, sequence, command, payload, CRC-16 (LE) over length…payload."""
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload is {len(payload)} bytes, at most {MAX_PAYLOAD} fit a frame.")
    body = bytes((len(payload), seq & 0xFF, cmd & 0xFF)) + payload
    return bytes((SYNC,)) + body + crc16_ccitt_false(body).to_bytes(2, "little")


@dataclass(frozen=True)
class Frame:
    """One decoded frame; ``crc_ok`` False for a complete frame whose CRC did not match."""

    seq: int
    cmd: int
    payload: bytes
    crc_ok: bool = True


class FrameDecoder:
    """Splits a byte stream into frames and resynchronizes after garbage.

    Bytes before a sync byte are discarded. A bad length or a bad CRC drops only the sync byte,
    and the search restarts at the next byte, so a real frame hidden behind a false sync is
    still found; a frame not complete ``timeout_s`` after its sync byte is treated the same way.
    """

    def __init__(self, timeout_s: float = FRAME_TIMEOUT_S) -> None:
        self.timeout_s = timeout_s
        self.n_discarded = 0
        self._buf = bytearray()
        self._head_since: float | None = None

    def feed(self, data: bytes, now: float) -> list[Frame]:
        """Add received bytes (possibly none, to expire a stalled frame); return whole frames.

        ``now`` is a monotonic time, s.
        """
        # a stalled partial frame expires before new bytes can complete it
        frames = self._parse(now) if self._head_since is not None else []
        self._buf += data
        return frames + self._parse(now)

    def _parse(self, now: float) -> list[Frame]:
        frames = []
        while True:
            start = self._buf.find(SYNC)
            if start != 0:
                self._drop(len(self._buf) if start < 0 else start)
                if start < 0:
                    return frames
            if len(self._buf) >= 2 and self._buf[1] > MAX_PAYLOAD:
                self._drop(1)
                continue
            total = self._buf[1] + OVERHEAD if len(self._buf) >= 2 else OVERHEAD
            if len(self._buf) < total:
                if self._head_since is None:
                    self._head_since = now
                elif now - self._head_since > self.timeout_s:
                    self._drop(1)
                    continue
                return frames
            body = bytes(self._buf[1 : total - 2])
            ok = crc16_ccitt_false(body) == int.from_bytes(self._buf[total - 2 : total], "little")
            frames.append(Frame(body[1], body[2], body[3:], ok))
            if ok:
                del self._buf[:total]
                self._head_since = None
            else:
                self._drop(1)

    def _drop(self, n: int) -> None:
        """Discard ``n`` bytes that are not (part of) a valid frame."""
        if n:
            del self._buf[:n]
            self.n_discarded += n
            self._head_since = None


def fault_names(bits: int) -> list[str]:
    """Names of the fault bits set in ``bits``."""
    return [name for bit, name in FAULT_BITS.items() if bits & bit]
