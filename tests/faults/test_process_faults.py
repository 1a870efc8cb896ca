"""Faults of the processes around the engine: the operator console killed while its session
runs, LabRecorder (or its guard) killed mid-session, and the recording's disk filling up.

A console killed never touches stimulation. A recording that stops (or is about to: its disk
filling up) stops stimulation: nothing is stimulated unrecorded. Each session ends with a summary
that says what happened to the recording; the XDF written so far loads.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pylsl
import pytest

from bci.engine.control import send_command
from bci.replay import load_recording
from tests.conftest import wait_for
from tests.faults.harness import (
    BETA_VIRTUAL,
    REPO_ROOT,
    EventsListener,
    SessionThread,
    assert_within_limits,
    kinds,
    session_overrides,
    stop_session,
    wait_for_pulses,
)

pytestmark = pytest.mark.slow


# --- the console ------------------------------------------------------------------------------
def _session_child(gui: psutil.Process) -> psutil.Process | None:
    """The ``bci run`` process the console started."""
    for child in gui.children():
        if "run" in child.cmdline():
            return child
    return None


def _control_address(process: psutil.Process) -> str | None:
    """The engine's control channel: the port its process listens on at 127.0.0.1 (the
    session binds ``tcp://127.0.0.1:0``; LSL's own ports listen on every interface)."""
    listening = [c for c in process.net_connections(kind="tcp")
                 if c.status == psutil.CONN_LISTEN and c.laddr.ip == "127.0.0.1"]  # fmt: skip
    return f"tcp://127.0.0.1:{listening[0].laddr.port}" if listening else None


def _connected(client: psutil.Process, server: psutil.Process) -> int:
    """How many TCP connections ``client`` holds to ports ``server`` listens on (LSL outlets,
    the control channel)."""
    ports = {c.laddr.port for c in server.net_connections(kind="tcp")
             if c.status == psutil.CONN_LISTEN}  # fmt: skip
    held = [c for c in client.net_connections(kind="tcp") if c.status == psutil.CONN_ESTABLISHED]
    return sum(1 for c in held if c.raddr and c.raddr.port in ports)


def test_the_console_killed_leaves_its_session_running_untouched(unique_name, tmp_path):
    """``bci gui PROTOCOL --autostart`` runs the session as its child, reading its output and
    watching its streams; SIGKILL of the console must not reach the loop: no error, no
    emergency stop, no operator command, the closed loop going on, and a clean end with a
    summary when the operator stops it (here from the control channel, as a second console
    or ``bci control`` would)."""
    sets = [f"--set={item}" for item in [f"session.prefix={unique_name}", *BETA_VIRTUAL,
                                          "recording.enabled=false"]]  # fmt: skip
    log = tmp_path / "gui.log"
    with open(log, "w") as out:
        gui = subprocess.Popen(
            [sys.executable, "-m", "bci", "gui", "beta_adaptive", "--autostart", *sets],
            cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, "QT_QPA_PLATFORM": "offscreen", "PYTHONPATH": str(REPO_ROOT)},
        )  # fmt: skip
    session = None
    try:
        console = psutil.Process(gui.pid)
        assert wait_for(lambda: _session_child(console) or gui.poll() is not None, 60, 0.1)
        session = _session_child(console)
        assert session is not None, log.read_text()
        assert wait_for(lambda: _control_address(session), 30, 0.1), log.read_text()
        address = _control_address(session)

        def status() -> dict:
            return send_command(address, {"cmd": "status"})

        listener = EventsListener(unique_name)
        on = lambda: (s := status())["block"] == "closed_loop" and s["amplitude"] > 0.5  # noqa: E731
        assert wait_for(on, 40, poll_s=0.1), status()
        # the console is subscribed to the session's streams and holds its control client
        assert wait_for(lambda: _connected(console, session) >= 3, 20, 0.1), log.read_text()
        killed = pylsl.local_clock()
        gui.send_signal(signal.SIGKILL)
        gui.wait()
        before = status()
        assert wait_for(lambda: status()["elapsed_s"] > before["elapsed_s"] + 3, 10, 0.1)
        after = status()
        assert session.is_running() and after["block"] == "closed_loop"
        assert after["estop"] is None and after["stimulator_failed"] is None
        assert send_command(address, {"cmd": "stop", "who": "test"})["ok"]
        session.wait(timeout=30)  # (not our child: its exit code is its dead parent's to read)
        listener.close()
    finally:
        if gui.poll() is None:
            gui.kill()
            gui.wait()
        if session is not None and session.is_running():
            with contextlib.suppress(psutil.NoSuchProcess):
                os.killpg(session.pid, signal.SIGKILL)
    (summary_path,) = (tmp_path / "sessions").glob("*/summary.json")
    summary = json.loads(summary_path.read_text())
    seen = [e for e in listener.events if e["time"] > killed]
    # the loop did not notice: no error, no trip, no operator action but the test's stop
    # (a stall of the loaded machine itself may still trip the watchdog for a moment)
    assert not {"error", "stimulator_failed", "safety.estop", "deadline"} & set(kinds(seen))
    assert [e["kind"] for e in seen if e["kind"] == "operator"] == []
    assert kinds(seen)[-1] == "end" and "stop" in kinds(seen)
    assert summary["stimulation"]["estop"] is None
    assert summary["stimulation"]["max_amplitude_ma"] <= 3.0


# --- the recorder -----------------------------------------------------------------------------
def _recorder_processes(xdf: Path) -> tuple[psutil.Process, psutil.Process]:
    """The guard (``python -m bci.record XDF``) and the LabRecorderCLI it runs."""
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info["cmdline"] or []
        if "bci.record" in cmdline and str(xdf) in cmdline:
            (labrecorder,) = process.children()
            return process, labrecorder
    raise AssertionError(f"no recorder of {xdf} runs")


def _record_session(unique_name: str, tmp_path: Path, *extra: str) -> SessionThread:
    overrides = session_overrides(unique_name, *BETA_VIRTUAL, *extra, record=True)
    return SessionThread("beta_adaptive", overrides, tmp_path).start()


def _assert_latched_at_zero(record, protocol, since: float, reason: str) -> None:
    """The output ramped to zero within 1 s of ``since`` and stayed there, latched for the
    session, with the reason on the events."""
    limit = next(e for e in record.events if e["kind"] == "safety.limit")
    assert limit["detail"].startswith(f"recording stopped: {reason}"), limit
    assert limit["time"] - since < 1.0
    # from the latch on the output never rises, and it is zero 1 s after the fault
    held = [c.amplitude for c in record.commands if c.write_time >= limit["time"]]
    assert all(b <= a + 1e-9 for a, b in itertools.pairwise(held)), held
    late = [c.amplitude for c in record.commands if c.write_time > since + 1.0]
    assert late and all(a == 0.0 for a in late), late[:20]
    assert_within_limits(record.commands, protocol)


@pytest.mark.parametrize(("victim", "required"),
                         [("labrecorder", True), ("guard", True), ("labrecorder", False)])
def test_a_killed_recorder_stops_stimulation_and_what_it_wrote_loads(victim, required,
                                                                      unique_name, tmp_path):
    """SIGKILL of LabRecorderCLI (the file loses its footers, maybe half a chunk) or of its
    guard (LabRecorderCLI, its stdin gone, closes the file). Nothing is stimulated unrecorded:
    the output ramps to zero within 1 s and stays there (unless the protocol says
    ``recording.required = false``: then it goes on). The summary says the recording broke, and
    what reached the file loads."""
    xdf = tmp_path / "beta_adaptive.xdf"
    session = _record_session(unique_name, tmp_path, f"recording.required={str(required).lower()}")
    engine = session.engine
    listener = EventsListener(unique_name)
    try:
        wait_for_pulses(session)
        guard, labrecorder = _recorder_processes(xdf)
        killed = pylsl.local_clock()
        (labrecorder if victim == "labrecorder" else guard).kill()
        session.wait_until(lambda: "recorder" in engine.monitor_problems, 10, "the report")
        session.wait_until(lambda: engine.elapsed_s > killed - engine.record.start_time + 2,
                           10, "2 s more of the session")  # fmt: skip
    finally:
        stop_session(session)
        listener.close()
    assert session.error is None, session.error
    summary, record = session.summary, session.record
    # reported while the session ran, once, on the events stream; and in the summary
    (report,) = [e for e in record.events if e["kind"] == "monitor"]
    assert report["process"] == "recorder" and report["time"] - killed < 1.0
    assert report["error"].startswith("LabRecorder ended by itself (exit code")
    assert str(xdf) in report["error"] and "what it wrote so far loads" in report["error"]
    listener.assert_published(record.events, {"monitor"})
    recording = summary["recording"]
    assert recording["problem"] == report["error"] and summary["events"]["monitor"] == 1
    assert "LabRecorder exited with code" in recording["stop_error"], recording
    assert "error" not in recording, recording  # it loads
    assert summary["stimulation"]["estop"] is None
    if required:
        _assert_latched_at_zero(record, session.protocol, killed, "LabRecorder ended")
        assert summary["stimulation"]["dose_limit"].startswith("recording stopped")
        listener.assert_published(record.events, {"safety.limit"})
    else:  # stimulation went on as if nothing happened
        assert_within_limits(record.commands, session.protocol)
        assert summary["stimulation"]["dose_limit"] is None
        assert any(c.write_time > killed + 1 for c in record.commands), "it stopped deciding"
        assert not any(e["kind"] == "safety.limit" for e in record.events)
    # what was recorded before the kill is in the file (LabRecorder writes every ~0.5 s)
    eeg_name = engine.eeg.name
    eeg = next(s for s in load_recording(xdf).streams if s.name == eeg_name)
    assert eeg.timestamps[0] <= record.start_time
    assert killed - 1.5 < eeg.timestamps[-1] < killed + 1.5
    assert recording["streams"][eeg_name]["samples"] == eeg.n_samples


@pytest.fixture
def small_disk(tmp_path):
    """``tmp_path/session/xdf``: a 16 MiB tmpfs, on which a write past its size fails with
    ENOSPC, exactly as on a full disk. Mounting it needs root (CAP_SYS_ADMIN); elsewhere the
    test is skipped rather than faked: a file-size limit (RLIMIT_FSIZE) makes LabRecorder's
    writes fail too, but leaves the disk with room, so it is not the fault the session must
    see."""
    folder = tmp_path / "session" / "xdf"
    folder.mkdir(parents=True)
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(folder)],
                           capture_output=True, text=True)  # fmt: skip
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({mount.stderr.strip()}); needs root")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


def test_a_disk_filling_up_stops_stimulation_before_the_recording_does(small_disk, unique_name,
                                                                        tmp_path):  # fmt: skip
    """Another program fills the XDF's disk mid-session until less than 30 s of this session's
    recording fits. The session does not wait for LabRecorder to fail (it would go on without a
    word): the output ramps to zero within 1 s and stays there, the event says why, and the
    file loads."""
    xdf = small_disk / "session.xdf"
    session = _record_session(unique_name, tmp_path / "session",
                              "recording.filename=xdf/session.xdf")  # fmt: skip
    engine = session.engine
    listener = EventsListener(unique_name)
    try:
        wait_for_pulses(session)
        wait_for(lambda: False, 1.5)  # the supervisor has measured the write rate
        free = os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize
        with open(small_disk / "filler.bin", "wb") as filler:  # leave ~1 MiB: a few seconds
            filler.write(b"\0" * max(free - (1 << 20), 0))
        filled = pylsl.local_clock()
        session.wait_until(lambda: "recorder" in engine.monitor_problems, 10, "the report")
        session.wait_until(lambda: engine.elapsed_s > filled - engine.record.start_time + 2,
                           10, "2 s more of the session")  # fmt: skip
    finally:
        stop_session(session)
        listener.close()
    assert session.error is None, session.error
    summary, record = session.summary, session.record
    (report,) = [e for e in record.events if e["kind"] == "monitor"]
    assert report["error"].startswith(f"the disk holding {xdf} has "), report
    assert "less than the 30 s it must hold" in report["error"]
    assert report["time"] - filled < 1.0
    listener.assert_published(record.events, {"monitor", "safety.limit"})
    _assert_latched_at_zero(record, session.protocol, filled, "the disk holding")
    recording = summary["recording"]
    assert recording["problem"] == report["error"]
    assert "error" not in recording, recording  # it loads
    assert summary["stimulation"]["estop"] is None
    eeg_name = engine.eeg.name
    eeg = next(s for s in load_recording(xdf).streams if s.name == eeg_name)
    assert eeg.timestamps[0] <= record.start_time and eeg.n_samples > 3000
    assert recording["streams"][eeg_name]["samples"] == eeg.n_samples
