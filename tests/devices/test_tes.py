"""The tES (tDCS/tACS) driver and protocol against the emulated stimulator on a real pty."""

from __future__ import annotations

import os
import random
import select
import signal
import struct
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import serial

from devices.emulators.tes import TesEmulator
from devices.stimulators import CommandRefused, SessionLimits
from devices.stimulators.base import HOST_DEADMAN_S, StimulatorError
from devices.stimulators.tes import TesStimulator
from devices.stimulators.tes_protocol import (
    PAYLOADS,
    SAFE_OFF_S,
    SYNC,
    WATCHDOG_S,
    Cmd,
    Err,
    Frame,
    FrameDecoder,
    State,
    crc16_ccitt_false,
    encode_frame,
)
from tests.conftest import wait_for
from tests.devices.governed import governed

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def device() -> Iterator[TesEmulator]:
    with TesEmulator() as emulator:
        yield emulator


@pytest.fixture
def tdcs(device) -> Iterator[TesStimulator]:
    """A connected, started tDCS driver on the emulator; disconnected after the test."""
    stimulator = TesStimulator(device.port, "tdcs")
    stimulator.connect()
    stimulator.start()
    yield stimulator
    stimulator.disconnect()


class RawHost:
    """Speaks the protocol frame by frame, to test the device side without the driver."""

    def __init__(self, port: str) -> None:
        self.serial = serial.Serial(port, 115200, timeout=0.01)
        self.decoder = FrameDecoder()
        self.seq = 0

    def request(self, cmd: int, payload: bytes = b"", prefix: bytes = b"") -> Frame:
        self.seq = (self.seq + 1) & 0xFF
        self.serial.write(prefix + encode_frame(self.seq, cmd, payload))
        return self.reply(self.seq)

    def reply(self, seq: int, timeout_s: float = 0.5) -> Frame:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            data = self.serial.read(self.serial.in_waiting or 1)
            for frame in self.decoder.feed(data, time.monotonic()):
                if frame.seq == seq:
                    return frame
        raise AssertionError(f"no reply to seq {seq} within {timeout_s} s")

    def command(self, cmd: Cmd, *values: int) -> tuple[int, ...]:
        """A request; returns the reply's fields, (cmd, error, state, faults) for a NAK."""
        reply = self.request(cmd, struct.pack(PAYLOADS[cmd], *values))
        return (reply.cmd, *struct.unpack(PAYLOADS[Cmd(reply.cmd)], reply.payload))


def poll_raises(stimulator: TesStimulator) -> bool:
    try:
        stimulator.poll()
    except StimulatorError:
        return True
    return False


@pytest.fixture
def raw(device) -> Iterator[RawHost]:
    host = RawHost(device.port)
    yield host
    host.serial.close()


def test_crc_is_ccitt_false_and_frames_round_trip_over_any_split():
    assert crc16_ccitt_false(b"123456789") == 0x29B1
    # the spec's example frame
    example = encode_frame(5, Cmd.SET_AMPLITUDE, struct.pack("<i", 1500))
    assert example.hex(" ") == "a5 04 05 02 dc 05 00 00 4b 3b"
    values = (0, 1500, -SYNC, 0x25A5A5A5)  # payloads holding sync bytes
    frames = [encode_frame(seq, Cmd.SET_AMPLITUDE, struct.pack("<i", ua))
              for seq, ua in enumerate(values)]  # fmt: skip
    stream = b"".join(frames)
    rng = random.Random(1)
    for _ in range(20):
        cuts = sorted(rng.sample(range(1, len(stream)), 6))
        decoder = FrameDecoder()
        got = [f for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)
               for f in decoder.feed(stream[a:b], 0.0)]  # fmt: skip
        assert [(f.seq, f.payload) for f in got] == [(f[2], f[4:-2]) for f in frames]
        assert all(f.crc_ok for f in got) and decoder.n_discarded == 0


def test_decoder_resyncs_after_garbage_and_a_stalled_frame():
    good = encode_frame(7, Cmd.HEARTBEAT)
    # garbage holding false syncs: one with an impossible length, one whose length swallows
    # the good frame (found by rescanning after the CRC fails)
    garbage = bytes((0x00, SYNC, 0xFF, 0x13, SYNC, 0x04, 0x01, 0x02))
    decoder = FrameDecoder()
    frames = decoder.feed(garbage + good + bytes(8), 0.0)
    assert [(f.seq, f.cmd) for f in frames if f.crc_ok] == [(7, Cmd.HEARTBEAT)]
    assert decoder.n_discarded == len(garbage) + 8
    # a truncated frame is dropped once it is older than the frame timeout
    decoder = FrameDecoder(timeout_s=0.05)
    assert decoder.feed(good[:3], 0.0) == []
    assert decoder.feed(b"", 0.04) == []
    assert [(f.seq, f.crc_ok) for f in decoder.feed(good, 0.1)] == [(7, True)]


def test_device_resyncs_and_naks_bad_crc_and_unknown_commands(device, raw):
    reply = raw.request(Cmd.HELLO, prefix=bytes((SYNC, 0x20, 0x55, SYNC, 0x00)))
    assert reply.cmd == Cmd.IDENT and reply.payload[0] == 1
    corrupt = bytearray(encode_frame(9, Cmd.HEARTBEAT))
    corrupt[-1] ^= 0xFF
    raw.serial.write(bytes(corrupt))
    nak = raw.reply(9)
    assert nak.cmd == Cmd.NAK and nak.payload[1] == Err.BAD_CRC
    for cmd in (0x0A, Cmd.ACK):  # unknown, and a reply id sent to the device
        nak = raw.request(cmd)
        assert nak.cmd == Cmd.NAK and nak.payload[:2] == bytes((cmd, Err.UNKNOWN_COMMAND))
    assert raw.request(Cmd.SET_RAMP, b"\x00").payload[1] == Err.BAD_LENGTH
    # the first is the false sync in the prefix, its "sequence number" ignored by the host
    assert [e.detail for e in device.events_of("nak")] == [
        "0x00 BAD_CRC", "HEARTBEAT BAD_CRC", "0x0a UNKNOWN_COMMAND", "ACK UNKNOWN_COMMAND",
        "SET_RAMP BAD_LENGTH"]  # fmt: skip


def test_device_enforces_its_hard_limits(device, raw):
    assert raw.command(Cmd.SET_AMPLITUDE, 4001)[2] == Err.OUT_OF_RANGE  # > 4 mA DC
    assert raw.command(Cmd.SET_AMPLITUDE, -4000) == (Cmd.ACK, Cmd.SET_AMPLITUDE, 0, 0)
    assert raw.command(Cmd.SET_FREQUENCY, 10_000)[2] == Err.OUT_OF_RANGE  # 4 mA at 10 Hz
    assert raw.command(Cmd.SET_AMPLITUDE, 2000)[0] == Cmd.ACK
    assert raw.command(Cmd.SET_FREQUENCY, 10_000)[0] == Cmd.ACK
    assert raw.command(Cmd.SET_AMPLITUDE, 2001)[2] == Err.OUT_OF_RANGE  # > 2 mA peak AC
    for mhz in (99, 150_001):  # 0.1–150 Hz
        assert raw.command(Cmd.SET_FREQUENCY, mhz)[2] == Err.OUT_OF_RANGE
    assert raw.command(Cmd.SET_RAMP, 60_001)[2] == Err.OUT_OF_RANGE
    assert raw.command(Cmd.PHASE_RESET)[2] == Err.WRONG_STATE  # not running
    assert device.output_ma == 0 and device.frequency_hz == 10.0


def test_device_ramps_and_its_watchdog_latches_until_stop(device, raw):
    raw.command(Cmd.SET_RAMP, 200)
    raw.command(Cmd.SET_AMPLITUDE, 1000)
    assert raw.command(Cmd.START)[2] == State.RUNNING
    assert wait_for(lambda: 0.2 < device.output_ma < 0.8, 0.2)  # mid-ramp
    assert wait_for(lambda: device.output_ma == 1.0, 0.5)
    # the host goes silent: the watchdog fires 500 ms after the last frame
    assert wait_for(lambda: device.events_of("watchdog"), 1.0)
    assert wait_for(lambda: device.output_ma == 0.0, 0.2)
    assert device.state == "fault" and device.fault == ["watchdog"]
    assert raw.command(Cmd.START)[2] == Err.WRONG_STATE  # latched
    assert raw.command(Cmd.STOP) == (Cmd.ACK, Cmd.STOP, State.IDLE, 0)
    assert raw.command(Cmd.START)[2] == State.RUNNING
    assert device.output_ma == 0.0  # STOP zeroed the setpoint: current is asked for again


def test_tdcs_lifecycle_follows_on_the_device(device):
    stimulator = TesStimulator(device.port, "tdcs")
    with pytest.raises(RuntimeError, match="call connect"):
        stimulator.start()
    stimulator.connect()
    assert stimulator.identity["max_dc_ma"] == 4.0 and device.ramp_ms == 0
    assert device.state == "idle"
    stimulator.start()
    assert device.running
    stimulator.write(governed(-1.5, 0.0, 0), 0.0)
    assert device.output_ma == -1.5
    stimulator.write(governed(-1.5, 0.0, 0), 0.0)  # unchanged: nothing is sent
    assert [e.detail for e in device.events_of("amplitude")][-2:] == ["0 uA", "-1500 uA"]
    assert stimulator.write(governed(-1.5, 0.0, 1), 0.0).pulses == 0  # no phase to reset in DC
    with pytest.raises(ValueError, match="frequency_hz 0"):
        stimulator.write(governed(1.0, 10.0, 0), 0.0)
    assert wait_for(lambda: stimulator.telemetry().get("compliance_v", 0) > 7, 1.0)
    reading = stimulator.telemetry()
    assert reading["current_ma"] == pytest.approx(-1.5, abs=0.02)
    assert reading["impedance_ohm"] == 5000 and reading["faults"] == []
    stimulator.stop()
    assert device.output_ma == 0 and not device.running and device.events_of("stopped")
    stimulator.disconnect()
    stimulator.disconnect()  # idempotent
    assert not stimulator.connected


def test_tacs_sets_frequency_and_resets_the_phase(device):
    with TesStimulator(device.port, "tacs") as stimulator:
        stimulator.write(governed(1.0, 10.0, 0), 0.0)
        # the frequency went first: 1 mA was never driven as DC
        kinds = [e.kind for e in device.events if e.kind in ("amplitude", "frequency")]
        assert kinds[-2:] == ["frequency", "amplitude"]
        assert (device.output_ma, device.frequency_hz) == (1.0, 10.0)
        assert stimulator.write(governed(1.0, 10.0, 1), 0.0).pulses == 1
        assert stimulator.n_pulses == 1 and len(device.events_of("phase-reset")) == 1
        stimulator.write(governed(0.0, 0.0, 0), 0.0)
        # the sine ramps down at its own frequency, never as DC
        kinds = [e.kind for e in device.events if e.kind in ("amplitude", "frequency")]
        assert kinds[-1] == "amplitude" and device.output_ma == 0 and device.frequency_hz == 10
        assert stimulator.write(governed(0.0, 0.0, 1), 0.0).pulses == 0
        with pytest.raises(ValueError, match=r"0\.1–150"):
            stimulator.write(governed(1.0, 200.0, 0), 0.0)
    assert not device.running and device.output_ma == 0


def test_heartbeats_keep_the_output_on_without_commands(device, tdcs):
    tdcs.write(governed(1.0), 0.0)
    held_until = time.monotonic() + 1.6  # > 3 watchdog periods with no command
    while time.monotonic() < held_until:
        assert device.output_ma == 1.0 and device.running
        tdcs.poll()
        time.sleep(0.02)
    assert not device.events_of("watchdog")


def test_a_hung_host_lets_the_device_watchdog_zero_the_output(device, tdcs):
    tdcs.write(governed(1.0), 0.0)
    start = time.monotonic()
    # nobody polls: the heartbeat stops feeding the device, whose watchdog zeroes the output
    assert wait_for(lambda: device.output_ma == 0, 1.5)
    assert time.monotonic() - start < HOST_DEADMAN_S + WATCHDOG_S + SAFE_OFF_S + 0.2
    assert device.events_of("watchdog")


def test_device_refusal_names_the_command_and_error():
    with TesEmulator(max_dc_ua=1000) as device, TesStimulator(device.port) as stimulator:
        with pytest.raises(StimulatorError, match=r"refused SET_AMPLITUDE 1500: OUT_OF_RANGE"):
            stimulator.write(governed(1.5, 0.0, 0), 0.0)
        assert device.output_ma == 0 and device.events_of("nak")
        device.hardware_fault = True
        with pytest.raises(StimulatorError, match=r"HARDWARE_FAULT — .*power-cycle"):
            stimulator.write(governed(0.5, 0.0, 0), 0.0)


def test_connect_refuses_firmware_looser_than_the_hard_ceiling():
    with TesEmulator(max_ac_ua=3000) as device:
        stimulator = TesStimulator(device.port, "tacs")
        with pytest.raises(StimulatorError, match="limits tacs at 3 mA, above the 2 mA"):
            stimulator.connect()
        assert not stimulator.connected


def test_high_impedance_fails_the_session_at_poll(device, tdcs):
    tdcs.write(governed(1.0), 0.0)
    device.impedance_ohm = 35_000
    assert wait_for(lambda: poll_raises(tdcs), 1.0)
    with pytest.raises(StimulatorError, match=r"impedance 35 kΩ above 20 kΩ.*sponges"):
        tdcs.poll()
    tdcs.stop()  # still stops cleanly
    assert device.output_ma == 0


def test_device_fault_bit_fails_the_session(device, tdcs):
    tdcs.write(governed(2.0), 0.0)
    device.inject_fault("over-current")
    assert wait_for(lambda: poll_raises(tdcs), 1.0)
    with pytest.raises(StimulatorError, match=r"reported over-current.*short"):
        tdcs.write(governed(2.0), 0.0)
    assert device.fault == ["over-current"] and not device.running
    assert wait_for(lambda: device.output_ma == 0, 0.2)  # the 100 ms safe-off ramp


def test_unplugged_port_raises_with_what_to_do(device, tdcs):
    tdcs.write(governed(1.0), 0.0)
    device.unplug()
    with pytest.raises(StimulatorError, match=r"tES stimulator.*(cable|reply)"):
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:  # the heartbeat or the write meets it first
            tdcs.write(governed(1.0), 0.0)
    tdcs.disconnect()  # never raises on a dead port


def test_missing_or_silent_port_says_what_to_do():
    with pytest.raises(StimulatorError, match=r"cannot open.*--set stimulator.port"):
        TesStimulator("/dev/ttyNEUROLOOP-missing").connect()
    master, slave = os.openpty()  # a port where nothing answers
    try:
        with pytest.raises(StimulatorError, match=r"no reply .* HELLO within 0.2 s"):
            TesStimulator(os.ttyname(slave)).connect()
    finally:
        os.close(master)
        os.close(slave)


@pytest.mark.parametrize("kwargs", [dict(modality="tms"), dict(heartbeat_s=0.4),
                                    dict(max_impedance_ohm=0)])  # fmt: skip
def test_bad_settings_name_the_parameter(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        TesStimulator("/dev/null", **kwargs)


def test_killed_engine_leaves_the_output_off(device):
    engine = textwrap.dedent(f"""
        import threading
        from devices.stimulators.tes import TesStimulator
        from tests.devices.governed import governed
        stimulator = TesStimulator({device.port!r}, "tdcs")
        stimulator.connect()
        stimulator.start()
        stimulator.write(governed(1.0, 0.0, 0), 0.0)
        print("on", flush=True)
        threading.Event().wait(30)
    """)
    with subprocess.Popen([sys.executable, "-c", engine], cwd=REPO_ROOT, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE) as process:  # fmt: skip
        try:
            ready, _, _ = select.select([process.stdout], [], [], 10.0)
            line = process.stdout.readline().strip() if ready else ""
            assert line == "on", process.stderr.read() if process.poll() is not None else line
            assert device.output_ma == 1.0 and device.running
            process.send_signal(signal.SIGKILL)
            killed = time.monotonic()
        finally:
            process.kill()  # no-op once killed; closes the pipes on the way out
    assert wait_for(lambda: device.output_ma == 0.0, 1.0)
    off = device.events_of("output-off")[-1].time
    assert off - killed < 1.0 and device.events_of("watchdog")
    assert device.fault == ["watchdog"] and not device.running


def test_the_device_ramp_follows_the_session_slew_and_the_driver_its_limits(device):
    limits = SessionLimits(max_amplitude=1.0, frequency_hz=0.0, max_step=0.06, ramp_s=0.06)
    with TesStimulator(device.port, "tdcs", limits=limits) as stimulator:
        # every change moves over the governor's longest step time on the device itself
        assert device.ramp_ms == 60
        stimulator.write(governed(0.05), 0.0)
        with pytest.raises(CommandRefused, match="session slew"):
            stimulator.write(governed(0.5), 0.0)
        with pytest.raises(CommandRefused, match="session limit"):
            stimulator.write(governed(1.5), 0.0)
        assert [e.detail for e in device.events_of("amplitude")][-1] == "50 uA"


def test_tacs_ramping_down_on_the_device_is_never_driven_as_dc(device):
    limits = SessionLimits(max_amplitude=1.0, frequency_hz=10.0, ramp_s=0.1)
    with TesStimulator(device.port, "tacs", limits=limits) as stimulator:
        stimulator.write(governed(1.0, 10.0), 0.0)
        assert wait_for(lambda: device.output_ma == 1.0, 1.0)
        stimulator.write(governed(0.0), 0.0)  # an E-stop, or the session's last zero
        seen = []
        assert wait_for(lambda: seen.append((device.output_ma, device.frequency_hz)) or
                        device.output_ma == 0, 1.0)  # fmt: skip
        ramping = [hz for ma, hz in seen if ma != 0]
        assert ramping and all(hz == 10.0 for hz in ramping), seen
