"""Whole stimulation sessions on the virtual subject: phase-locked TMS on the Magstim emulator,
the emergency stop from the control channel and from Ctrl-C, a stimulator unplugged and an
engine killed mid-session. Real LSL, real ZeroMQ, real serial drivers on ptys."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pylsl
import pytest

from bci.bench.phase_accuracy import circular_error, recorded_pulse_phases
from bci.engine.control import send_command
from bci.engine.session import run_session
from bci.protocol import load_protocol
from bci.replay.offline import replay_offline
from devices.emulators.magstim import MagstimEmulator
from devices.emulators.tes import TesEmulator
from devices.stimulators import StimulatorError
from tests.conftest import wait_for
from tests.engine.sessions import REPO_ROOT, SessionThread, session_overrides

TACS_SHORT = ["blocks.0.duration_s=3", "blocks.1.duration_s=60", "blocks.2.duration_s=1"]
"""alpha_phase_tacs: 3 s baseline (the phase gate), a closed loop that the test ends, 1 s rest."""

TACS_SLEW = 0.5
"""alpha_phase_tacs' slew limit, mA/s."""


# --- phase-locked TMS -------------------------------------------------------------------------


@pytest.mark.slow
def test_mu_trough_tms_fires_at_the_trough_on_the_magstim(unique_name, tmp_path):
    with MagstimEmulator() as magstim:
        overrides = session_overrides(
            unique_name, f"stimulator.port={magstim.port}", "blocks.0.duration_s=10",
            "blocks.1.duration_s=30", "blocks.2.duration_s=1", record=True,
        )  # fmt: skip
        protocol, text = load_protocol("mu_trough_tms", overrides)
        summary, record = run_session(protocol, "test", text, tmp_path, progress=False)
        fired = magstim.fire_times
        pulse_commands = [c for c in record.commands if c.pulses == 1]
        assert len(fired) == len(pulse_commands) >= 15, (len(fired), len(pulse_commands))
        # the same pulses, not merely as many: the intervals agree (device and engine clocks)
        write_times = np.array([c.write_time for c in pulse_commands])
        assert np.abs(np.diff(fired) - np.diff(write_times)).max() < 0.02
        assert np.diff(fired).min() >= 1.0 - 0.02  # the governor's minimum interval
        # the keep-alive held the device armed through the session and its 1 s rest block
        assert magstim.events_of("auto-disarm") == []
        assert not magstim.armed and not magstim.remote
        assert magstim.events[-1].kind == "remote-off"
    xdf = Path(summary["recording"]["path"])
    phases = recorded_pulse_phases(xdf, protocol)
    raw = recorded_pulse_phases(xdf, protocol, blank_s=None)
    assert len(phases) == len(write_times)  # the XDF holds every pulse
    error, plv = circular_error(phases, target_deg=180.0)
    raw_error, raw_plv = circular_error(raw, target_deg=180.0)
    print(f"\n{len(phases)} pulses: mean phase error vs the trough {error:+.1f}°, PLV {plv:.2f} "
          f"(artifact left in: {raw_error:+.1f}°, PLV {raw_plv:.2f}); newest sample → write p50 "
          f"{np.median(record.pulse_latency_ms):.2f} ms")  # fmt: skip
    assert abs(error) <= 30.0 and plv >= 0.5
    # offline, the recorded pulses go through the governor again to the same commands
    replayed = replay_offline(xdf, progress=False)
    assert replayed["n_commands"] == replayed["recorded_commands"]
    assert replayed["stim_max_abs_diff"] <= 1e-6 and replayed["pulses"] == len(write_times)


# --- the emergency stop -----------------------------------------------------------------------


@pytest.mark.slow
def test_estop_from_the_control_channel_latches_until_a_confirmed_rearm(unique_name, tmp_path):
    session = SessionThread("alpha_phase_tacs", session_overrides(unique_name, *TACS_SHORT),
                            tmp_path).start()  # fmt: skip
    engine = session.engine
    address = engine.control_address
    try:
        session.wait_until(lambda: engine.governor.amplitude > 0.2, 30, "the closed loop's rise")
        sent = pylsl.local_clock()
        reply = send_command(address, {"cmd": "estop", "who": "test"})
        # answered once the engine has acted: the stimulator already holds zero
        assert reply == {"ok": True, "estop": "emergency stop by test"}
        assert engine.stimulator.last.amplitude == 0.0 and engine.stimulator.output[0] == 0.0
        # (a decision may have written once more between the send and the estop)
        commands = list(engine.record.commands)
        zero = next(c for c in commands if c.write_time >= sent and c.amplitude == 0.0)
        assert zero.write_time - sent < 0.05
        # latched: a second of closed loop later nothing but zero has been written
        elapsed = engine.elapsed_s
        session.wait_until(lambda: engine.elapsed_s > elapsed + 1.0, 10, "a second of loop")
        refused = send_command(address, {"cmd": "rearm"})
        assert refused["ok"] is False and "confirm" in refused["error"]
        status = send_command(address, {"cmd": "status"})
        assert status["estop"] == "emergency stop by test" and status["amplitude"] == 0.0
        assert status["block"] == "closed_loop"
        rearm_sent = pylsl.local_clock()
        assert send_command(address, {"cmd": "rearm", "confirm": True, "who": "test"}) == {
            "ok": True, "rearmed": True}  # fmt: skip
        latched = [c for c in list(engine.record.commands)
                   if zero.write_time <= c.write_time < rearm_sent]  # fmt: skip
        assert latched and all(c.amplitude == 0.0 for c in latched)
        session.wait_until(lambda: engine.governor.amplitude > 0.2, 10, "the rise after rearm")
        # from zero at the re-arm (the loop's time when it served it), through the slew limit
        rearmed = next(e for e in list(engine.record.events) if e["kind"] == "safety.rearm")
        assert abs(rearmed["time"] - rearm_sent) < 0.05
        for command in [c for c in list(engine.record.commands) if c.write_time >= rearm_sent]:
            assert command.amplitude <= TACS_SLEW * (command.write_time - rearmed["time"]) + 1e-6
        assert send_command(address, {"cmd": "stop"}) == {"ok": True, "stopping": True}
        session.join(30)
    finally:
        if session.alive:  # whatever failed, end the session before the next test
            with contextlib.suppress(TimeoutError):
                send_command(address, {"cmd": "stop"}, timeout_s=1)
            session.join(30)
    assert session.error is None, session.error
    kinds = [event["kind"] for event in session.record.events]
    assert kinds.count("safety.estop") == 1 and kinds.count("safety.rearm") == 1
    assert "stop" in kinds and session.record.commands[-1].amplitude == 0.0
    assert session.summary["events"]["safety.estop"] == 1


def _read(path: Path) -> str:
    return path.read_text() if path.exists() else ""


@pytest.mark.slow
def test_ctrl_c_latches_the_estop_and_a_second_ends_the_session(unique_name, tmp_path):
    out, stdout, stderr = tmp_path / "session", tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    sets = [f"--set={item}" for item in session_overrides(unique_name, *TACS_SHORT)]
    with open(stdout, "w") as so, open(stderr, "w") as se:
        # its own process group, so that the test can remove the virtual subject if it fails
        process = subprocess.Popen(
            [sys.executable, "-m", "bci", "run", "alpha_phase_tacs", "--out", str(out), *sets],
            cwd=REPO_ROOT, stdout=so, stderr=se, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
    try:
        found = lambda: re.search(r"control channel: (tcp://\S+)", _read(stdout))  # noqa: E731
        assert wait_for(lambda: found() or process.poll() is not None, 60, poll_s=0.05)
        assert found(), _read(stderr)
        address = found().group(1)

        def status() -> dict:
            return send_command(address, {"cmd": "status"})

        on = lambda: (s := status())["block"] == "closed_loop" and s["amplitude"] > 0.2  # noqa: E731
        assert wait_for(on, 30, poll_s=0.05), status()
        # as a terminal does: to the whole process group (the virtual subject has its own)
        os.killpg(process.pid, signal.SIGINT)
        assert wait_for(lambda: "EMERGENCY STOP" in _read(stderr), 5, poll_s=0.02)
        latched = status()
        assert latched["estop"] == "emergency stop by Ctrl-C" and latched["amplitude"] == 0.0
        # the session goes on (recording, answering) with the output at zero
        assert wait_for(lambda: status()["elapsed_s"] > latched["elapsed_s"] + 1.0, 10, 0.05)
        assert process.poll() is None and status()["amplitude"] == 0.0
        # its EEG still flows (a machine's hiccup may stall it for a moment, a lost source for good)
        assert wait_for(lambda: not status()["stalled"], 2, poll_s=0.05)
        os.killpg(process.pid, signal.SIGINT)
        assert process.wait(timeout=30) == 0, _read(stderr)
    finally:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stimulation"]["estop"] == "emergency stop by Ctrl-C"
    assert summary["events"]["safety.estop"] == 1
    assert "ending the session" in _read(stderr)


# --- a stimulator that goes away, an engine that dies -------------------------------------------


@pytest.mark.slow
def test_unplugged_tes_stimulator_ends_the_session_saying_what_to_do(unique_name, tmp_path):
    with TesEmulator() as tes:
        overrides = session_overrides(unique_name, "stimulator.kind=tes",
                                      f"stimulator.port={tes.port}", *TACS_SHORT)  # fmt: skip
        session = SessionThread("alpha_phase_tacs", overrides, tmp_path).start()
        session.wait_until(lambda: tes.output_ma > 0, 30, "tACS output on the device")
        tes.unplug()
        session.join(30)
    assert isinstance(session.error, StimulatorError), session.error
    assert re.search(r"tES stimulator on .*(port failed|no reply).*check", str(session.error))
    engine = session.engine
    assert engine.stim.failed == str(session.error)
    assert engine.governor.estopped and engine.governor.amplitude == 0.0
    kinds = [event["kind"] for event in engine.record.events]
    assert "safety.estop" in kinds and "error" in kinds and kinds[-1] == "end"
    # the summary says the session failed, and why
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["complete"] is False and "StimulatorError" in summary["reason"]
    assert summary["stimulation"]["estop"].startswith("stimulator failed")


@pytest.mark.slow
def test_killed_engine_leaves_the_tes_output_off(unique_name, tmp_path):
    with TesEmulator() as tes:
        overrides = session_overrides(unique_name, "stimulator.kind=tes",
                                      f"stimulator.port={tes.port}", *TACS_SHORT)  # fmt: skip
        sets = [f"--set={item}" for item in overrides]
        log = tmp_path / "engine.log"
        with open(log, "w") as out:
            engine = subprocess.Popen(
                [sys.executable, "-m", "bci", "run", "alpha_phase_tacs", "--out",
                 str(tmp_path / "session"), *sets],
                cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,  # the virtual subject, its child, is removed with it
            )  # fmt: skip
        try:
            assert wait_for(lambda: tes.output_ma > 0 or engine.poll() is not None, 60, 0.01)
            assert tes.output_ma > 0 and tes.running, _read(log)
            engine.send_signal(signal.SIGKILL)
            killed = time.monotonic()  # the emulator's clock
            assert wait_for(lambda: tes.output_ma == 0 and tes.events_of("watchdog"), 1.0)
            off = tes.events_of("output-off")[-1].time
            assert off - killed < 1.0 and tes.fault == ["watchdog"] and not tes.running
        finally:
            with contextlib.suppress(ProcessLookupError):  # the orphaned virtual subject
                os.killpg(engine.pid, signal.SIGKILL)
            engine.wait()


# --- biomarker-driven stimulation -------------------------------------------------------------


@pytest.mark.slow
def test_beta_adaptive_switches_a_pulse_train_on_beta_power_with_hysteresis(unique_name, tmp_path):
    # thresholds low enough that resting beta crosses them within seconds
    overrides = session_overrides(
        unique_name, "blocks.0.duration_s=8", "blocks.1.duration_s=20", "blocks.2.duration_s=1",
        "controller.lower=0.8", "controller.upper=1.1", "controller.blanking_s=0.5",
    )  # fmt: skip
    protocol, text = load_protocol("beta_adaptive", overrides)
    summary, record = run_session(protocol, "test", text, tmp_path, progress=False)
    baseline = next(e for e in record.events if e["kind"] == "baseline")
    assert baseline["biomarker_median"] > 0
    values = np.array([v for _, v in record.biomarker])
    assert len(values) > 150 and 0.2 < np.median(values) < 5  # relative to the baseline median
    amplitudes = np.array([c.amplitude for c in record.commands])
    assert amplitudes.max() > 0 and amplitudes.max() <= protocol.controller.on_amplitude
    assert all(c.frequency_hz == 130.0 for c in record.commands if c.amplitude)
    assert amplitudes[-1] == 0.0 and summary["stimulation"]["controller"] == "dual_threshold"
    assert (tmp_path / "summary.png").exists()
