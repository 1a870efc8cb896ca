"""The session panel: choose and validate a protocol, see its block timeline, start a session
as its own process (``bci run``), pause, resume, stop it, and write operator notes."""

from __future__ import annotations

import importlib
import sys
import threading
from pathlib import Path

from PySide6.QtCore import QTimer, Signal, Slot
from PySide6.QtWidgets import (
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLayout,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from bci.engine.session_files import default_out_dir
from bci.engine.timeline import plan_blocks, planned_duration_s
from bci.protocol import Protocol, ProtocolError, load_protocol
from gui.panels.control import ControlClient
from gui.panels.session_process import SessionProcess
from gui.panels.session_widgets import BlockTimeline, ProblemTable, RecordingIndicator

FREE_PORT = "control.address=tcp://127.0.0.1:0"
"""The engine binds a free port and prints it: two sessions never collide."""


class SessionPanel(QWidget):
    """Protocol, timeline, and the running session's controls.

    A session runs as ``python -m bci run PROTOCOL --out DIR --set control.address=...:0`` in
    its own process group, so the console's own end (or a Ctrl-C in its terminal) never
    reaches the loop. Its output is read on a thread; the control address it prints is handed
    to ``client`` at once, so STOP works from the first moment the engine can answer.

    Parameters
    ----------
    client : ControlClient, optional
        The control channel (the one the safety panel uses): the panel sets its address
        while its session runs. None: a client of its own.
    parent : QWidget, optional
    stop_grace_s : float
        How long Stop waits for the engine to answer before terminating the process, s.

    Attributes
    ----------
    overrides : list of str
        Extra ``--set KEY=VALUE`` applied when validating and starting.
    start_note : str
        The operator's note passed as ``--note`` at Start.

    Signals
    -------
    session_started(dict)
        ``prefix``, ``control_address``, ``out_dir``, ``recording_path`` (None without a
        recording), ``protocol_path``, ``pid``; once the engine answers and records.
    session_ended(int, str)
        The process's return code and the last lines it printed.
    protocol_loaded(Protocol)
        A protocol passed validation.
    """

    session_started = Signal(object)
    session_ended = Signal(int, str)
    protocol_loaded = Signal(object)

    def __init__(self, client: ControlClient | None = None, parent: QWidget | None = None,
                 stop_grace_s: float = 5.0) -> None:  # fmt: skip
        super().__init__(parent)
        self._own_client = client is None
        self.client = ControlClient(self) if client is None else client
        self.stop_grace_s = stop_grace_s
        self.overrides: list[str] = []
        self.start_note = ""
        self.session = SessionProcess(self)
        """The session's process."""
        self.info: dict = {}
        """What is known of the running session (the session_started dict as it fills)."""
        self._protocol: Protocol | None = None
        self._expected: set[str] = set()
        self._stop_answered = False
        self._sent_note = ""
        # validating a protocol with a model file imports the decoders (~3 s the first time):
        # imported now in the background, so that first Validate does not freeze the console
        threading.Thread(target=importlib.import_module, args=("bci.decode.base",),
                         name="gui-warm-up", daemon=True).start()  # fmt: skip

        self.path_edit = QLineEdit()
        self.path_edit.setPlaceholderText("protocol TOML file, or a bundled name (demo)")
        self.path_edit.returnPressed.connect(self.validate)
        open_button, self.validate_button = QPushButton("Open…"), QPushButton("Validate")
        open_button.clicked.connect(self.choose_file)
        self.validate_button.clicked.connect(self.validate)
        self.summary_label = QLabel("no protocol")
        self.errors = ProblemTable()
        self.timeline = BlockTimeline()
        self.fit_progress = QProgressBar()
        self.fit_progress.setRange(0, 0)  # indeterminate: fitting takes what it takes
        self.fit_progress.setFormat("fitting the decoder…")
        self.fit_progress.setVisible(False)

        self.out_edit = QLineEdit()
        self.out_edit.setPlaceholderText("sessions/<date-time>/ (default)")
        self.start_button, self.pause_button = QPushButton("Start"), QPushButton("Pause")
        self.resume_button, self.stop_button = QPushButton("Resume"), QPushButton("Stop")
        self.start_button.clicked.connect(lambda: self.running or self.start())
        self.pause_button.clicked.connect(lambda: self._command("pause"))
        self.resume_button.clicked.connect(lambda: self._command("resume"))
        self.stop_button.clicked.connect(self.stop)
        self.note_edit = QLineEdit()
        self.note_edit.setPlaceholderText("operator note (recorded with the session)")
        self.note_edit.returnPressed.connect(self.add_note)
        self.note_button = QPushButton("Add note")
        self.note_button.clicked.connect(self.add_note)
        self.message = QLabel("")
        self.message.setWordWrap(True)
        self.recording = RecordingIndicator()

        grid = QGridLayout()
        grid.addWidget(QLabel("protocol"), 0, 0)
        grid.addWidget(self.path_edit, 0, 1)
        grid.addWidget(open_button, 0, 2)
        grid.addWidget(self.validate_button, 0, 3)
        grid.addWidget(QLabel("output"), 1, 0)
        grid.addWidget(self.out_edit, 1, 1, 1, 3)
        buttons = QHBoxLayout()
        for button in (self.start_button, self.pause_button, self.resume_button,
                       self.stop_button):  # fmt: skip
            buttons.addWidget(button)
        notes = QHBoxLayout()
        notes.addWidget(self.note_edit, 1)
        notes.addWidget(self.note_button)
        layout = QVBoxLayout(self)
        for part in (grid, self.summary_label, self.errors, self.timeline, self.fit_progress,
                     buttons, self.recording, notes, self.message):  # fmt: skip
            (layout.addLayout if isinstance(part, QLayout) else layout.addWidget)(part)

        self.session.control_found.connect(self._on_control)
        self.session.recording_found.connect(self._on_recording)
        self.session.ended.connect(self._on_ended)
        self.client.status.connect(self.on_status)
        self.client.replied.connect(self._on_replied)
        self.client.failed.connect(self._on_failed)
        self._update_buttons()

    # the protocol ---------------------------------------------------------------------------
    @property
    def protocol(self) -> Protocol | None:
        """The protocol last validated, or None (none yet, or it had problems)."""
        return self._protocol

    @property
    def running(self) -> bool:
        """Whether the session's process runs."""
        return self.session.running

    @Slot()
    def choose_file(self) -> None:
        """Pick a protocol file, then validate it."""
        path, _ = QFileDialog.getOpenFileName(self, "Open a protocol", self.path_edit.text(),
                                              "Protocols (*.toml);;All files (*)")  # fmt: skip
        if path:
            self.load(path)

    def load(self, path: str | Path) -> bool:
        """Validate the protocol at ``path`` (a file, or a bundled name) and show the result;
        True if it can run."""
        self.path_edit.setText(str(path))
        return self.validate()

    @Slot()
    def validate(self) -> bool:
        """Validate the protocol named in the path field: its timeline, or each problem on a
        row of its own (field | problem). True if it can run. While a session runs, the
        protocol it runs stays shown."""
        if self.running:
            return self._protocol is not None
        self._protocol = None
        text = self.path_edit.text().strip()
        try:
            if not text:
                raise ProtocolError("(none)", ["choose a protocol file first (Open…)"])
            protocol, _ = load_protocol(text, [FREE_PORT, *self.overrides])
        except ProtocolError as err:
            self._show_problems(err.lines)
            return False
        except OSError as err:  # a folder, a file we may not read
            self._show_problems([f"cannot read {text}: {err}"])
            return False
        blocks = plan_blocks(protocol.blocks, protocol.session.seed, protocol.decoder.classes)
        minutes = planned_duration_s(blocks) / 60
        fit = " + fitting" if any(block.kind == "fit" for block in blocks) else ""
        self.summary_label.setText(f"valid: {len(blocks)} blocks, ~{minutes:.1f} min{fit}")
        self.summary_label.setStyleSheet("color: #1e8449;")
        self.errors.show_problems([])
        self.timeline.set_blocks(blocks)
        self._protocol = protocol
        self._update_buttons()
        self.protocol_loaded.emit(protocol)
        return True

    def _show_problems(self, lines: list[str]) -> None:
        self.summary_label.setText(f"not valid: {len(lines)} problem(s)")
        self.summary_label.setStyleSheet("color: #c00000; font-weight: bold;")
        self.errors.show_problems(lines)
        self.timeline.set_blocks([])
        self._update_buttons()

    def problems(self) -> list[tuple[str, str]]:
        """The ``(field, problem)`` rows shown."""
        return self.errors.problems()

    # the session's process ------------------------------------------------------------------
    def command_line(self, out_dir: Path, note: str = "") -> list[str]:
        """The ``bci run`` command that :meth:`start` runs."""
        command = [sys.executable, "-m", "bci", "run", self.path_edit.text().strip(),
                   "--out", str(out_dir), "--set", FREE_PORT]  # fmt: skip
        for override in self.overrides:
            command += ["--set", override]
        return command + (["--note", note] if note else [])

    def start(self) -> bool:
        """Validate, then start the session's process; False if the protocol has problems.

        Raises
        ------
        RuntimeError
            A session started here still runs.
        """
        if self.running:
            raise RuntimeError("a session is already running; stop it before starting another")
        if not self.validate():
            return False
        protocol = self._protocol
        text = self.out_edit.text().strip()
        out_dir = (Path(text) if text else default_out_dir()).resolve()
        note = self.start_note or self.note_edit.text().strip()
        pid = self.session.start(self.command_line(out_dir, note))
        if note and not self.start_note:
            self.note_edit.clear()
        self.start_note = ""
        self.info = {"prefix": protocol.session.prefix, "control_address": None,
                     "out_dir": str(out_dir), "recording_path": None,
                     "protocol_path": self.path_edit.text().strip(), "pid": pid}  # fmt: skip
        wanted = (("control", protocol.control.enabled), ("recording", protocol.recording.enabled))
        self._expected = {name for name, on in wanted if on}
        self._stop_answered = False
        self.message.setText(f"starting the session (pid {pid}) → {out_dir}")
        self.message.setStyleSheet("")
        if not self._expected:
            self.session_started.emit(dict(self.info))
        self._update_buttons()
        return True

    @Slot(str)
    def _on_control(self, address: str) -> None:
        if self.info.get("control_address") is None:
            self.info["control_address"] = address
            self.client.set_address(address)  # STOP works from now on
            self._arrived("control")

    @Slot(str)
    def _on_recording(self, path: str) -> None:
        if self.info.get("recording_path") is None:
            self.info["recording_path"] = path
            self.recording.start(path)
            self._arrived("recording")

    def _arrived(self, what: str) -> None:
        if what in self._expected:
            self._expected.discard(what)
            if not self._expected:
                self.message.setText(f"session running → {self.info['out_dir']}")
                self.session_started.emit(dict(self.info))

    @Slot(int, str)
    def _on_ended(self, code: int, tail: str) -> None:
        address = self.info.get("control_address")
        if address is not None and self.client.address == address:
            self.client.set_address(None)
        self.recording.stop()
        self.fit_progress.setVisible(False)
        if code == 0:
            self.message.setText(f"session ended → {self.info.get('out_dir')}")
            self.message.setStyleSheet("")
        else:
            last = tail.rpartition("\n")[2] or "no output"
            self.message.setText(f"session ended with exit code {code}: {last}")
            self.message.setStyleSheet("color: #c00000; font-weight: bold;")
        self._update_buttons()
        self.session_ended.emit(code, tail)

    # commands to the running session --------------------------------------------------------
    def _command(self, cmd: str, **fields) -> None:
        self.client.send({"cmd": cmd, "who": "gui", **fields})

    @Slot()
    def stop(self) -> None:
        """Ask the engine to end the session; if it does not answer within
        ``stop_grace_s``, terminate the process."""
        if not self.running:
            return
        if self.client.address is None or self.client.address != self.info.get("control_address"):
            self.message.setText("the engine has no control channel yet: terminating it")
            self.terminate()
            return
        self._stop_answered = False
        self._command("stop")
        self.message.setText("stopping: the output ramps to zero, the recording closes…")
        pid = self.info["pid"]  # the timer must never end a session started after this one
        QTimer.singleShot(round(self.stop_grace_s * 1000), lambda: self._stop_unanswered(pid))

    def _stop_unanswered(self, pid: int) -> None:
        if self.running and self.info.get("pid") == pid and not self._stop_answered:
            self.message.setText("the engine did not answer Stop: terminating it")
            self.terminate()

    def terminate(self) -> None:
        """End the session's process now (SIGTERM, then SIGKILL)."""
        self.session.terminate()

    def shutdown(self, timeout_s: float = 30.0) -> None:
        """The console closes: end a session started here, waiting (this blocks, the event
        loop is over) up to ``timeout_s`` for it to finish cleanly, then kill it."""
        if self._own_client:
            self.client.stop()
        self.session.shutdown(self.info.get("control_address"), timeout_s)

    @Slot()
    def add_note(self) -> None:
        """Send the note to the running session, or keep it for ``--note`` at Start."""
        text = self.note_edit.text().strip()
        if not text:
            self.message.setText("type the note first")
            return
        if self.running and self.client.address == self.info.get("control_address"):
            self._sent_note = text
            self._command("note", text=text)
        else:
            self.start_note = text
            self.note_edit.clear()
            self.message.setText(f"note kept for the start: {text}")

    @Slot(object)
    def on_status(self, status: dict) -> None:
        """Show a status answer: the timeline position, fitting, paused (connected to the
        client's ``status`` already)."""
        if not self.running:
            return
        if status.get("block_index") is not None:
            self.timeline.set_position(status["block_index"], float(status.get("elapsed_s", 0)))
        self.fit_progress.setVisible(status.get("block") == "fit")
        paused = bool(status.get("paused"))
        self.pause_button.setEnabled(not paused)
        self.resume_button.setEnabled(paused)

    @Slot(str, object)
    def _on_replied(self, cmd: str, reply: dict) -> None:
        if cmd not in ("stop", "pause", "resume", "note"):
            return
        if cmd == "stop":
            self._stop_answered = True
        if not reply.get("ok"):
            self.message.setText(f"{cmd} refused by the engine: {reply.get('error')}")
            self.message.setStyleSheet("color: #c00000;")
            return
        self.message.setStyleSheet("")
        if cmd == "note":
            self.message.setText(f"note recorded: {self._sent_note}")
            if self.note_edit.text().strip() == self._sent_note:
                self.note_edit.clear()
        elif cmd in ("pause", "resume"):
            self.message.setText("paused: output at zero, timeline held" if cmd == "pause"
                                 else "resumed")  # fmt: skip
            self.client.poll()

    @Slot(str, str)
    def _on_failed(self, cmd: str, error: str) -> None:
        if cmd not in ("stop", "pause", "resume", "note"):
            return
        self.message.setText(f"{cmd} not delivered: {error}")
        self.message.setStyleSheet("color: #c00000;")
        if cmd == "stop" and self.running:
            self.terminate()

    def _update_buttons(self) -> None:
        running = self.running
        self.start_button.setEnabled(not running and self._protocol is not None)
        self.validate_button.setEnabled(not running)
        self.stop_button.setEnabled(running)
        self.pause_button.setEnabled(running)
        self.resume_button.setEnabled(running)
