"""A session as a child process (``bci run``), its output read on a thread and reported on the
GUI thread as Qt signals."""

from __future__ import annotations

import os
import queue
import re
import subprocess
import threading
from collections import deque

from PySide6.QtCore import QObject, QTimer, Signal, Slot

from bci.engine.control import send_command
from gui.panels.control import Mailbox

CONTROL_LINE = re.compile(r"^control channel: (tcp://\S+)")
"""What ``bci run`` prints once its control channel is open."""
RECORDING_LINE = re.compile(r"^recording \d+ streams to (.+)$")
"""What ``bci run`` prints once LabRecorder holds every stream."""
PROGRESS_PREFIX = "session:"
"""The start of the progress bar's redraws (tqdm), left out of the output."""


class SessionProcess(QObject):
    """``bci run`` in its own process group (the console's Ctrl-C or end never reaches the
    loop), with its stdout and stderr read line by line on a worker thread.

    Parameters
    ----------
    parent : QObject, optional
    keep_lines : int
        Output lines kept for :meth:`tail`.

    Signals
    -------
    output(str)
        A line the session printed (progress-bar redraws left out).
    control_found(str)
        The control address the engine bound (``tcp://127.0.0.1:PORT``).
    recording_found(str)
        The XDF file LabRecorder writes.
    ended(int, str)
        The return code and the last lines printed.
    """

    output = Signal(str)
    control_found = Signal(str)
    recording_found = Signal(str)
    ended = Signal(int, str)

    def __init__(self, parent: QObject | None = None, keep_lines: int = 40) -> None:
        super().__init__(parent)
        self.process: subprocess.Popen | None = None
        self._tail: deque[str] = deque(maxlen=keep_lines)
        self._mailbox = Mailbox(self, every_ms=50)
        self._mailbox.arrived.connect(self._on_arrived)

    @property
    def running(self) -> bool:
        """Whether the process runs."""
        return self.process is not None and self.process.poll() is None

    def tail(self) -> str:
        """The last lines printed."""
        return "\n".join(self._tail)

    def start(self, command: list[str]) -> int:
        """Run ``command``; returns its process id.

        Raises
        ------
        RuntimeError
            The previous process still runs.
        """
        if self.running:
            raise RuntimeError("a session is already running; stop it before starting another")
        self._tail.clear()
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            text=True, bufsize=1, start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
        threading.Thread(target=_read_lines, args=(self.process, self._mailbox.queue),
                         name="gui-session", daemon=True).start()  # fmt: skip
        return self.process.pid

    def terminate(self, kill_after_s: float = 5.0) -> None:
        """End the process now (SIGTERM; SIGKILL after ``kill_after_s``). Its recorder and
        virtual subject see their parent go and finish on their own."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        QTimer.singleShot(round(kill_after_s * 1000),
                          lambda: process.poll() is None and process.kill())  # fmt: skip

    def shutdown(self, address: str | None, timeout_s: float = 30.0) -> None:
        """Ask the engine at ``address`` to stop and wait up to ``timeout_s`` for the process
        to end (this blocks: for when the console closes), else terminate it, then kill it."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        try:
            if address is None:
                raise TimeoutError("no control channel yet")
            send_command(address, {"cmd": "stop", "who": "gui"}, timeout_s=3.0)
            process.wait(timeout=timeout_s)
        except (TimeoutError, subprocess.TimeoutExpired):
            process.terminate()
            try:
                process.wait(timeout=5.0)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    @Slot(object)
    def _on_arrived(self, item: tuple[str, object]) -> None:
        kind, value = item
        if kind == "exit":
            self.process = None
            self.ended.emit(value, self.tail())
            return
        line = value
        if not line.strip() or line.startswith(PROGRESS_PREFIX):
            return
        self._tail.append(line)
        self.output.emit(line)
        if match := CONTROL_LINE.match(line):
            self.control_found.emit(match.group(1))
        elif match := RECORDING_LINE.match(line):
            self.recording_found.emit(match.group(1).strip())


def _read_lines(process: subprocess.Popen, results: queue.SimpleQueue) -> None:
    """The reader thread: every line, then the exit code. It reads to the end whatever the
    console does, so the engine never blocks on a full pipe. Text mode reads the progress bar's
    carriage returns as line ends."""
    for line in process.stdout:
        results.put(("line", line.rstrip("\n")))
    results.put(("exit", process.wait()))
