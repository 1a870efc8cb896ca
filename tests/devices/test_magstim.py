"""The Magstim driver against the emulated Magstim 200² on a real pseudo-terminal."""

from __future__ import annotations

import select
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devices.emulators.magstim import MagstimEmulator
from devices.stimulators import CommandRefused, SessionLimits
from devices.stimulators.base import StimulatorError
from devices.stimulators.magstim import (
    MagstimRefused,
    MagstimStatus,
    MagstimStimulator,
    crc,
    frame,
)
from tests.conftest import wait_for
from tests.devices.governed import governed

REPO_ROOT = Path(__file__).resolve().parents[2]
MISSING_PORT = "/dev/ttyNEUROLOOP-missing"


@pytest.fixture
def magstim() -> Iterator[MagstimEmulator]:
    with MagstimEmulator() as device:
        yield device


@pytest.fixture
def tms(magstim) -> Iterator[MagstimStimulator]:
    """A connected, started driver on the emulator; disconnected after the test."""
    stimulator = MagstimStimulator(magstim.port, reply_timeout_s=0.2)
    stimulator.connect()
    stimulator.start()
    yield stimulator
    stimulator.disconnect()


def kinds(device: MagstimEmulator) -> list[str]:
    return [event.kind for event in device.events]


def test_crc_and_framing_match_the_protocol():
    # MagPy's keep-alive is the literal "Q@n": 'n' is the CRC of "Q@"
    assert crc(b"Q@") == ord("n")
    assert frame(b"Q@") == b"Q@n"
    assert crc(b"@050") == ~sum(b"@050") & 0xFF
    assert frame(b"EH")[-1] == (0xFF - (ord("E") + ord("H")) % 256)
    assert all(MagstimStatus.from_byte(b).to_byte() == b for b in range(256))
    status = MagstimStatus.from_byte(0b1000_1110)
    assert (status.standby, status.armed, status.ready) == (False, True, True)
    assert (status.coil_present, status.error_present, status.remote) == (True, False, True)


def test_lifecycle_arms_fires_disarms_and_releases(magstim):
    tms = MagstimStimulator(magstim.port, reply_timeout_s=0.2)
    with pytest.raises(RuntimeError, match="call connect"):
        tms.start()
    tms.connect()
    assert magstim.remote and kinds(magstim) == ["remote-on"]
    tms.start()
    assert tms.write(governed(60.0, 0.0, 0), 0.0).pulses == 0
    assert magstim.armed and magstim.power == 60
    assert wait_for(lambda: magstim.ready, 2.0)
    command = tms.write(governed(60.0, 0.0, 1), 0.0)
    assert command.pulses == 1 and tms.n_pulses == 1
    assert magstim.pulses == 1 and magstim.events_of("fired")[0].detail == "60% MSO"
    assert tms.telemetry()["power_pct"] == 60
    assert tms.write(governed(0.0, 0.0, 0), 0.0).pulses == 0
    assert not magstim.armed
    tms.stop()
    assert not tms.telemetry()["armed"]  # stop read the status back
    tms.disconnect()
    tms.disconnect()  # idempotent
    assert not magstim.remote
    # the power was set once, only because it changed; nothing was refused
    assert kinds(magstim) == ["remote-on", "power", "armed", "fired", "disarmed", "remote-off"]


def test_keepalive_holds_the_device_armed(magstim, tms):
    tms.write(governed(50.0, 0.0, 0), 0.0)
    received = magstim.n_messages
    # the device disarms after 1 s of silence; the keep-alive holds it armed for twice that
    # while the host polls, as the engine's loop does every iteration
    assert not wait_for(lambda: tms.poll() or magstim.events_of("auto-disarm"), 2.2)
    assert magstim.armed and magstim.remote
    assert magstim.n_messages - received >= 2.2 / tms.keepalive_s - 1
    tms.poll()


def test_a_hung_host_gets_the_coil_disarmed_by_the_keepalive(magstim, tms):
    tms.write(governed(50.0, 0.0, 0), 0.0)
    start = time.monotonic()
    # nobody polls: the keep-alive disarms instead of holding the coil armed for a dead loop
    assert wait_for(lambda: not magstim.armed, 1.0)
    assert time.monotonic() - start < 1.0  # before the device itself would (loaded CI: slack)
    assert magstim.events_of("auto-disarm") == []  # the driver did it, not the device
    with pytest.raises(StimulatorError, match="stopped answering"):
        tms.poll()  # recorded before the disarm was sent


def test_fire_while_charging_is_skipped(magstim, tms):
    assert tms.write(governed(60.0, 0.0, 1), 0.0).pulses == 0  # just armed: still charging
    assert tms.n_skipped == 1 and magstim.pulses == 0 and magstim.armed
    assert wait_for(lambda: magstim.ready, 2.0)
    assert tms.write(governed(60.0, 0.0, 1), 0.0).pulses == 1
    assert tms.write(governed(60.0, 0.0, 1), 0.0).pulses == 0  # recharging after the pulse
    assert wait_for(lambda: magstim.ready, 2.0)
    assert tms.write(governed(70.0, 0.0, 1), 0.0).pulses == 0  # recharging after the power change
    assert tms.n_skipped == 3 and tms.n_pulses == 1 and magstim.pulses == 1
    tms.poll()


def test_fire_after_the_device_disarmed_itself_raises(magstim, tms):
    tms.write(governed(60.0, 0.0, 0), 0.0)
    magstim.trip("coil over temperature")
    with pytest.raises(StimulatorError, match=r"refused EH \(fire\): state conflict — not armed"):
        tms.write(governed(60.0, 0.0, 1), 0.0)
    assert magstim.pulses == 0


@pytest.mark.parametrize(
    ("message", "code", "text"),
    [
        (b"Z@", "?", r"refused Z@ \(\?\): invalid command"),
        (b"@150", "data", r"refused @150 \(set power\): data out of range"),
        (b"EH", "S", r"refused EH \(fire\): command conflicts with the current state"),
    ],
)
def test_error_replies_name_the_command(magstim, tms, message, code, text):
    with tms._lock, pytest.raises(MagstimRefused, match=text) as refused:
        tms._transact(message)
    assert refused.value.code == code
    assert magstim.events_of("error-reply")


def test_power_readback_mismatch_is_refused():
    with MagstimEmulator(power_readback_offset=1) as magstim:
        tms = MagstimStimulator(magstim.port, reply_timeout_s=0.2)
        with tms:
            with pytest.raises(StimulatorError, match="reads back 61 %MSO after being set to 60"):
                tms.write(governed(60.0, 0.0, 1), 0.0)
            assert not magstim.armed and magstim.pulses == 0


def test_beyond_the_session_limits_is_refused_before_anything_is_sent(magstim):
    limits = SessionLimits(max_amplitude=50.0, frequency_hz=0.0, min_pulse_interval_s=1.0)
    with MagstimStimulator(magstim.port, max_power_pct=50.0, limits=limits) as tms:
        sent = magstim.n_messages
        with pytest.raises(CommandRefused, match="above the session limit 50"):
            tms.write(governed(60.0, 0.0, 0), 0.0)
        with pytest.raises(ValueError, match="outside"):
            tms.write(governed(-5.0, 0.0, 0), 0.0)
        with pytest.raises(CommandRefused, match="frequency 10 Hz"):
            tms.write(governed(40.0, 10.0, 0), 0.0)
        assert magstim.n_messages == sent and not magstim.armed
        tms.write(governed(49.6, 0.0, 0), 0.0)  # integer %MSO
        assert magstim.power == 50


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"max_power_pct": 120.0}, "max_power_pct"),
        ({"reply_timeout_s": 0.0}, "reply_timeout_s"),
        ({"keepalive_s": 0.8}, "keepalive_s"),
    ],
)
def test_bad_settings_name_the_parameter(kwargs, name):
    with pytest.raises(ValueError, match=name):
        MagstimStimulator(MISSING_PORT, **kwargs)


def test_missing_port_says_what_to_do():
    with pytest.raises(StimulatorError, match=f"{MISSING_PORT}.*set --set stimulator.port="):
        MagstimStimulator(MISSING_PORT).connect()


@pytest.mark.parametrize(
    ("fault", "text"), [({"coil_present": False}, "no coil"), ({"error_present": True}, "error")]
)
def test_connect_refuses_a_device_without_coil_or_with_an_error(fault, text):
    with MagstimEmulator(**fault) as magstim:
        tms = MagstimStimulator(magstim.port, reply_timeout_s=0.2)
        with pytest.raises(StimulatorError, match=text):
            tms.connect()
        assert not tms.connected and not magstim.remote  # control handed back to the panel


def test_garbled_reply_is_refused():
    class GarbledMagstim(MagstimEmulator):
        def send(self, data: bytes) -> None:
            super().send(data[:-1] + bytes([data[-1] ^ 0xFF]))

    with GarbledMagstim() as magstim:
        with pytest.raises(StimulatorError, match=r"reply to Q@ .* bad checksum"):
            MagstimStimulator(magstim.port, reply_timeout_s=0.2).connect()


def test_silent_or_slow_device_times_out(tms, magstim):
    magstim.reply_delay_s = 0.05  # slower than a real 200², within the timeout
    tms.write(governed(40.0, 0.0, 0), 0.0)
    magstim.reply_delay_s = 0.5
    with pytest.raises(StimulatorError, match=r"did not answer .* within 0.2 s; check the cable"):
        tms.write(governed(0.0, 0.0, 0), 0.0)
    magstim.reply_delay_s = 0.0
    # the late reply reaches the port; the next command must not take it for its own
    assert wait_for(lambda: magstim.replies_pending == 0 and tms._serial.in_waiting, 2.0)
    tms.stop()
    assert not magstim.armed
    tms.start()
    magstim.silent = True
    with pytest.raises(StimulatorError, match=r"did not answer EA \(disarm\) within 0.2 s"):
        tms.stop()


def test_unplugged_port_raises_and_poll_reports_it(magstim, tms):
    tms.write(governed(60.0, 0.0, 0), 0.0)
    magstim.unplug()
    with pytest.raises(StimulatorError, match=r"port .* closed or failed.*stimulator\.port="):
        tms.write(governed(60.0, 0.0, 1), 0.0)

    def poll_raises() -> bool:
        try:
            tms.poll()
        except StimulatorError:
            return True
        return False

    assert wait_for(poll_raises, 2.0)
    tms.disconnect()  # never raises on a dead port


def test_killed_engine_leaves_the_device_disarmed(magstim):
    engine = textwrap.dedent(f"""
        import threading
        from devices.stimulators.magstim import MagstimStimulator
        from tests.devices.governed import governed
        tms = MagstimStimulator({magstim.port!r})
        tms.connect()
        tms.start()
        tms.write(governed(50.0, 0.0, 0), 0.0)
        print("armed", flush=True)
        threading.Event().wait()
    """)
    process = subprocess.Popen([sys.executable, "-c", engine], cwd=REPO_ROOT, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    try:
        started, _, _ = select.select([process.stdout], [], [], 20.0)
        line = process.stdout.readline() if started else ""
        assert line.strip() == "armed", (
            process.stderr.read() if process.poll() is not None else line
        )
        assert magstim.armed and not magstim.events_of("auto-disarm")
        killed_at = time.monotonic()
        process.kill()
        assert wait_for(lambda: magstim.events_of("auto-disarm"), 1.5)
        disarmed_after = magstim.events_of("auto-disarm")[0].time - killed_at
        assert 0 < disarmed_after <= magstim.watchdog_s + 0.05
        assert not magstim.armed and magstim.pulses == 0
    finally:
        process.kill()
        process.wait()
