"""The operator console's panels, headless: protocol validation and the timeline, STOP and
re-arm against a real engine-side (a StimulationPath answering a real ZeroMQ control server),
the keyboard STOP, an engine that dies and comes back, the LSL stream list, and a real session
started, paused, resumed, noted and stopped from the panel."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pylsl
import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QLineEdit, QPushButton, QVBoxLayout, QWidget

from bci.engine.control import ControlInbox, ControlServer
from bci.engine.preprocess import eeg_pipeline
from bci.engine.stimulation import StimulationPath
from bci.engine.timeline import PlannedBlock
from bci.protocol import ProtocolError, find_protocol, load_protocol
from devices.stimulators import SimulatedStimulator
from gui.panels import (
    BlockTimeline,
    ControlClient,
    RecordingIndicator,
    SafetyPanel,
    SessionPanel,
    StreamBrowser,
)
from gui.panels.safety import LATCHED_TEXT, describe_event
from gui.panels.session_process import SessionProcess
from gui.panels.session_widgets import split_problem

SFREQ = 1000.0
"""alpha_phase_tacs' EEG rate, Hz."""


class _Outlets:
    """The session outlets' methods a stimulation path calls; nothing is published."""

    def stimulation(self, command, decided_at: float, origin: str) -> None:
        pass

    def session_info(self, kind: str, **content) -> None:
        pass


class ServedPath:
    """The engine's side of the control channel without LSL: a real StimulationPath on a
    started simulated stimulator, answering a real ControlServer from a thread as the loop
    does, its events kept as the Events stream carries them (``(time, JSON text)``)."""

    def __init__(self) -> None:
        protocol, _ = load_protocol("alpha_phase_tacs", [])
        self.stimulator = SimulatedStimulator("tacs")
        self.stimulator.connect()
        self.stimulator.start()
        self.events: list[tuple[float, str]] = []
        pipeline = eeg_pipeline(protocol.preprocessing, protocol.preprocessing.picks, SFREQ)
        self.path = StimulationPath(protocol, self.stimulator, _Outlets(), [], self._event,
                                    max_step_s=0.075, sfreq=SFREQ, pipeline=pipeline)  # fmt: skip
        self.inbox = ControlInbox()
        self.server = ControlServer(self.inbox, "tcp://127.0.0.1:0")
        self.address = self.server.start()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="served-path", daemon=True)
        self._thread.start()

    def _event(self, kind: str, time: float, **detail) -> None:
        text = json.dumps({"kind": kind, "seq": len(self.events), "time": time, **detail})
        self.events.append((time, text))

    def _loop(self) -> None:
        start = pylsl.local_clock()
        while not self._stop.is_set():
            now = pylsl.local_clock()
            status = {"block": "closed_loop", "block_index": 0, "elapsed_s": now - start,
                      "stalled": False, "paused": self.path.paused is not None}  # fmt: skip
            self.path.serve(self.inbox, now, now, lambda status=status: status)
            self.path.governor.tick(now)
            if self.path.governor.tripped:
                self.path.hold_safe(now, now)
            self._stop.wait(0.005)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.server.stop()
        self.stimulator.disconnect()


@pytest.fixture
def served():
    path = ServedPath()
    yield path
    path.close()


@pytest.fixture
def client():
    made = ControlClient()
    yield made
    made.stop()


@pytest.fixture
def session_panel(qtbot, client):
    """A SessionPanel; a session process a failed test leaves behind is killed."""
    panel = SessionPanel(client)
    qtbot.addWidget(panel)
    yield panel
    process = panel.session.process
    if process is not None and process.poll() is None:
        with contextlib.suppress(ProcessLookupError):  # its own group: the engine and its kin
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def record_sends(client: ControlClient) -> list[dict]:
    """The commands the client is asked to send, in order (sent on as usual)."""
    sent: list[dict] = []
    send = client.send

    def recording(command: dict) -> None:
        sent.append(dict(command))
        send(command)

    client.send = recording
    return sent


# --- the protocol -----------------------------------------------------------------------------


def test_an_invalid_protocol_shows_its_problems_field_by_field(qtbot, client, tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[source]\neeg_channels = 12\n\n[controller]\nkind = "proportional"\n'
                    "p_low = 0.9\np_high = 0.5\n")  # fmt: skip
    panel = SessionPanel(client)
    qtbot.addWidget(panel)
    assert panel.load(path) is False
    with pytest.raises(ProtocolError) as err:
        load_protocol(path)
    rows = panel.problems()
    assert rows == [split_problem(line) for line in err.value.lines]
    fields = [field for field, _ in rows]
    assert {"source.eeg_channels", "controller.p_low", "blocks"} <= set(fields), rows
    assert panel.protocol is None and not panel.start_button.isEnabled()
    assert panel.timeline.kinds() == [] and "3 problem(s)" in panel.summary_label.text()
    assert panel.start() is False and panel.session.process is None
    # a file that is not there, and no file at all: one row saying so
    assert panel.load(tmp_path / "missing.toml") is False and panel.problems()[0][0] == "(file)"
    assert panel.load("") is False and "choose a protocol" in panel.problems()[0][1]


def test_a_valid_protocol_shows_its_block_timeline(qtbot, client):
    panel = SessionPanel(client)
    qtbot.addWidget(panel)
    assert panel.load(find_protocol("demo")) is True
    assert panel.protocol is not None and panel.protocol.session.name == "demo"
    assert panel.timeline.kinds() == ["baseline", "calibration", "fit", "closed_loop", "rest"]
    assert panel.summary_label.text().startswith("valid: 5 blocks, ~")
    assert panel.errors.isHidden() and panel.start_button.isEnabled()
    command = panel.command_line(Path("out"), "hello")
    assert command[1:4] == ["-m", "bci", "run"] and command[5:7] == ["--out", "out"]
    assert "control.address=tcp://127.0.0.1:0" in command and command[-2:] == ["--note", "hello"]


def test_the_timeline_places_the_engine_in_its_block(qtbot):
    timeline = BlockTimeline()
    qtbot.addWidget(timeline)
    timeline.set_blocks([PlannedBlock(0, "baseline", 10.0, (), True),
                         PlannedBlock(1, "fit", 0.0, (), True),
                         PlannedBlock(2, "closed_loop", 20.0, (), False)])  # fmt: skip
    timeline.set_position(0, 4.0)
    assert (timeline.block_index, timeline.block_elapsed_s) == (0, 4.0)
    timeline.set_position(2, 30.0)  # the block's time counts from its first report
    timeline.set_position(2, 35.5)
    assert (timeline.block_index, timeline.block_elapsed_s) == (2, 5.5)
    timeline.resize(400, 40)
    timeline.grab()  # paints without error


def test_the_recording_indicator_shows_the_file_and_its_size(qtbot, tmp_path):
    indicator = RecordingIndicator()
    qtbot.addWidget(indicator)
    path = tmp_path / "session.xdf"
    indicator.start(path)
    assert indicator.recording and "no file yet" in indicator.label.text()
    path.write_bytes(b"x" * 2_500_000)
    indicator.refresh()
    assert "session.xdf  2.5 MB  0:00:0" in indicator.label.text()
    indicator.stop()
    assert not indicator.recording and indicator.label.text().endswith("(ended)")


# --- STOP, the latch, re-arm, the engine gone -------------------------------------------------


def test_stop_latches_and_rearm_needs_the_typed_confirmation(qtbot, client, served):
    panel = SafetyPanel(client)
    qtbot.addWidget(panel)
    sent = record_sends(client)
    client.set_address(served.address)
    qtbot.waitUntil(lambda: client.last_status is not None, timeout=5000)
    assert panel.latch_banner.isHidden() and not panel.rearm_button.isEnabled()

    panel.stop_button.click()
    assert sent == [{"cmd": "estop", "who": "gui"}]
    # the banner follows the engine's own state
    qtbot.waitUntil(lambda: bool((client.last_status or {}).get("estop")), timeout=5000)
    qtbot.waitUntil(lambda: not panel.latch_banner.isHidden(), timeout=2000)
    assert panel.latch_banner.text() == LATCHED_TEXT
    assert served.path.governor.state.estop == "emergency stop by gui"
    assert panel.rearm_button.isEnabled() and panel.amplitude_label.text() == "0.000"

    panel.confirm_rearm = lambda parent: False  # the operator did not type REARM
    panel.rearm_button.click()
    assert [c["cmd"] for c in sent] == ["estop"] and served.path.governor.estopped
    assert "not re-armed" in panel.stop_state.text()

    panel.confirm_rearm = lambda parent: True
    with qtbot.waitSignal(client.replied, timeout=5000,
                          check_params_cb=lambda cmd, reply: cmd == "rearm"):  # fmt: skip
        panel.rearm_button.click()
    assert sent[-1] == {"cmd": "rearm", "confirm": True, "who": "gui"}
    qtbot.waitUntil(lambda: panel.latch_banner.isHidden(), timeout=5000)
    assert not served.path.governor.estopped and not panel.rearm_button.isEnabled()

    panel.add_events(list(served.events))
    kinds = panel.event_kinds()
    assert kinds.index("safety.rearm") < kinds.index("safety.estop")  # newest on top
    assert "operator" in kinds and "baseline" not in kinds


def test_the_rearm_dialog_wants_rearm_typed(qtbot, client, monkeypatch):
    from PySide6.QtWidgets import QInputDialog

    from gui.panels.safety import ask_rearm_confirmation

    for answer, expected in (("REARM", True), ("rearm", False), ("", False)):
        monkeypatch.setattr(QInputDialog, "getText", lambda *a, answer=answer: (answer, True))
        assert ask_rearm_confirmation(None) is expected
    monkeypatch.setattr(QInputDialog, "getText", lambda *a: ("REARM", False))  # Cancel
    assert ask_rearm_confirmation(None) is False


def test_esc_and_space_press_stop_wherever_the_focus_is(qtbot, client):
    window = QWidget()
    panel, note, other = SafetyPanel(client), QLineEdit(), QPushButton("other")
    layout = QVBoxLayout(window)
    for widget in (panel, note, other):
        layout.addWidget(widget)
    qtbot.addWidget(window)
    clicked = []
    other.clicked.connect(lambda: clicked.append(True))
    sent = record_sends(client)
    window.show()
    qtbot.waitExposed(window)
    window.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is window, timeout=3000)

    note.setFocus()
    qtbot.keyClick(note, Qt.Key.Key_Escape)
    assert sent == [{"cmd": "estop", "who": "gui"}]
    other.setFocus()
    qtbot.keyClick(other, Qt.Key.Key_Space)  # taken from the focused button
    assert len(sent) == 2 and sent[-1]["cmd"] == "estop" and not clicked
    qtbot.keyClicks(note, "a b")  # typing a note keeps its spaces and stops nothing
    assert note.text() == "a b" and len(sent) == 2
    # no engine: the STOP is said not to be delivered, and no latch is shown
    assert "NOT DELIVERED" in panel.stop_state.text() and panel.latch_banner.isHidden()


def test_an_engine_that_dies_is_shown_and_its_return_clears_it(qtbot, client, served):
    panel = SafetyPanel(client)
    qtbot.addWidget(panel)
    client.set_address(served.address)
    qtbot.waitUntil(lambda: client.last_status is not None, timeout=5000)
    with qtbot.waitSignal(client.engine_gone, timeout=6000):
        served.server.stop()
    assert not panel.gone_banner.isHidden() and "ENGINE GONE" in panel.gone_banner.text()
    assert panel.stop_button.isEnabled() and "not answering" in panel.stop_button.text()
    with qtbot.waitSignal(client.engine_back, timeout=6000):
        served.server = ControlServer(served.inbox, served.address)
        served.server.start()
    assert panel.gone_banner.isHidden() and panel.stop_button.text() == "STOP"
    client.set_address(None)
    assert panel.state_label.text() == "no engine"


def test_the_events_list_keeps_safety_and_health_events_only():
    assert describe_event(json.dumps({"kind": "safety.trip", "time": 1, "detail": "stall"})) == (
        "safety.trip", "stall")  # fmt: skip
    assert describe_event(json.dumps({"kind": "gap", "time": 1, "samples": 3})) == (
        "gap", "samples=3")  # fmt: skip
    monitor = {"kind": "monitor", "time": 1, "process": "recorder", "error": "exited (-9)"}
    assert describe_event(json.dumps(monitor)) == (  # a dead recorder or a full disk
        "monitor", "process=recorder, error=exited (-9)")  # fmt: skip
    assert describe_event(json.dumps({"kind": "block", "time": 1})) is None
    assert describe_event("not json")[0] == "error"


def test_the_client_refuses_bad_commands_and_addresses(client):
    with pytest.raises(ValueError, match="cmd"):
        client.send({"cmd": "explode"})
    with pytest.raises(ValueError, match="tcp://"):
        client.set_address("localhost:5557")
    with pytest.raises(ValueError, match="status_every_s"):
        ControlClient(status_every_s=0)


# --- the stream browser -----------------------------------------------------------------------


def test_the_stream_list_follows_streams_appearing_and_disappearing(qtbot, unique_name):
    browser = StreamBrowser(refresh_s=0.1)
    qtbot.addWidget(browser)
    info = pylsl.StreamInfo(unique_name, "EEG", 4, 250.0, "float32", f"{unique_name}-id")
    outlet = pylsl.StreamOutlet(info)
    try:
        qtbot.waitUntil(lambda: unique_name in browser.stream_names(), timeout=10_000)
        row = browser.stream_names().index(unique_name)
        cells = [browser.table.item(row, column).text() for column in range(6)]
        assert cells[:4] == [unique_name, "EEG", "4", "250 Hz"] and cells[5] == f"{unique_name}-id"
        browser.show()
        qtbot.waitExposed(browser)
        item = browser.table.item(row, 0)
        browser.table.scrollToItem(item)  # other streams on the network may push it down
        where = browser.table.visualItemRect(item).center()
        # an item view acts on a double click on the item it saw pressed
        qtbot.mouseClick(browser.table.viewport(), Qt.MouseButton.LeftButton, pos=where)
        with qtbot.waitSignal(browser.source_chosen) as chosen:
            qtbot.mouseDClick(browser.table.viewport(), Qt.MouseButton.LeftButton, pos=where)
        assert chosen.args == [unique_name]
        browser.table.selectRow(browser.stream_names().index(unique_name))
        with qtbot.waitSignal(browser.source_chosen) as chosen:
            qtbot.mouseClick(browser.use_button, Qt.MouseButton.LeftButton)
        assert chosen.args == [unique_name]
    finally:
        del outlet
    qtbot.waitUntil(lambda: unique_name not in browser.stream_names(), timeout=10_000)
    browser.stop()


# --- the session's process ---------------------------------------------------------------------

FAKE_SESSION = (
    "import time; print('control channel: tcp://127.0.0.1:1 (bci control ...)', flush=True); "
    "print('\\rsession:  10%|#  |', flush=True); "
    "print('recording 9 streams to /data/s/session.xdf', flush=True); time.sleep(60)"
)
"""Prints what ``bci run`` prints at start (a control address nobody answers at), then hangs."""


def test_the_session_process_reports_its_address_recording_and_end(qtbot):
    session = SessionProcess()
    found = []
    session.control_found.connect(found.append)
    session.recording_found.connect(found.append)
    script = ("print('control channel: tcp://127.0.0.1:5 (x)'); "
              "print('recording 2 streams to /a b.xdf'); raise SystemExit(3)")  # fmt: skip
    with qtbot.waitSignal(session.ended, timeout=10_000) as ended:
        session.start([sys.executable, "-c", script])
    assert found == ["tcp://127.0.0.1:5", "/a b.xdf"] and not session.running
    assert ended.args[0] == 3 and ended.args[1].endswith("recording 2 streams to /a b.xdf")


def test_stop_terminates_a_session_whose_engine_does_not_answer(qtbot, client, session_panel,
                                                                 tmp_path):  # fmt: skip
    panel = session_panel
    panel.stop_grace_s = 0.5
    panel.out_edit.setText(str(tmp_path))
    panel.command_line = lambda out_dir, note: [sys.executable, "-c", FAKE_SESSION]
    assert panel.load("beta_adaptive") is True
    with qtbot.waitSignal(panel.session_started, timeout=10_000) as started:
        panel.start()
    assert started.args[0]["control_address"] == "tcp://127.0.0.1:1"
    assert started.args[0]["recording_path"] == "/data/s/session.xdf"
    assert panel.recording.recording and panel.stop_button.isEnabled()
    with qtbot.waitSignal(panel.session_ended, timeout=10_000) as ended:
        panel.stop_button.click()
    assert ended.args[0] == -signal.SIGTERM and "session:" not in ended.args[1]
    assert "exit code" in panel.message.text() and client.address is None


# --- a real session ---------------------------------------------------------------------------


@pytest.mark.slow
def test_a_session_starts_pauses_resumes_takes_a_note_and_stops(
    qtbot, client, session_panel, unique_name, tmp_path
):
    panel = session_panel
    # beta_adaptive: no decoder to fit, no fNIRS; a 2 s baseline, then a closed loop we stop.
    # No XDF (LabRecorder adds ~6 s): the recording line is the fake session's test above
    panel.overrides = [f"session.prefix={unique_name}", "blocks.0.duration_s=2",
                       "blocks.1.duration_s=60", "blocks.2.duration_s=1",
                       "recording.enabled=false"]  # fmt: skip
    panel.out_edit.setText(str(tmp_path / "session"))
    panel.start_note = "participant comfortable"
    assert panel.load("beta_adaptive") is True
    with qtbot.waitSignal(panel.session_started, timeout=40_000) as started:
        assert panel.start() is True
    info = started.args[0]
    assert info["control_address"].startswith("tcp://127.0.0.1:")
    assert client.address == info["control_address"] and info["prefix"] == unique_name
    assert info["out_dir"] == str(tmp_path / "session")
    assert info["recording_path"] is None and info["pid"] == panel.session.process.pid
    with pytest.raises(RuntimeError, match="already running"):
        panel.start()

    block = lambda: (client.last_status or {}).get("block")  # noqa: E731
    qtbot.waitUntil(lambda: block() == "closed_loop", timeout=15_000)
    assert panel.timeline.block_index == 1
    panel.pause_button.click()
    qtbot.waitUntil(lambda: client.last_status.get("paused") is True, timeout=5000)
    assert panel.resume_button.isEnabled() and not panel.pause_button.isEnabled()
    panel.resume_button.click()
    qtbot.waitUntil(lambda: client.last_status.get("paused") is False, timeout=5000)
    panel.note_edit.setText("electrode re-seated")
    noted = lambda cmd, reply: cmd == "note" and reply["ok"]  # noqa: E731
    with qtbot.waitSignal(client.replied, timeout=5000, check_params_cb=noted):
        panel.note_button.click()

    with qtbot.waitSignal(panel.session_ended, timeout=30_000) as ended:
        panel.stop_button.click()
    code, tail = ended.args
    assert code == 0, tail
    assert "session done" in tail and client.address is None
    assert (tmp_path / "session" / "summary.json").exists()
    assert panel.start_button.isEnabled() and not panel.stop_button.isEnabled()
