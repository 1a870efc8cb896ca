"""The console's side of the engine's control channel: commands and status polls on worker
threads, answers delivered on the GUI thread as Qt signals.

A ZeroMQ request to an engine that is gone blocks for its whole timeout, so no request is ever
made on the GUI thread: a frozen console is one whose STOP button does not work.
"""

from __future__ import annotations

import queue
import time
from concurrent.futures import ThreadPoolExecutor

from PySide6.QtCore import QObject, QTimer, Signal, Slot

from bci.engine.control import COMMANDS, send_command

STATUS_EVERY_S = 0.5
"""How often the engine's status is asked for, s."""
STATUS_TIMEOUT_S = 1.0
"""How long one status request waits for its answer, s."""
GONE_AFTER_S = 1.5
"""Time without any answer after which the engine counts as gone, s."""
DELIVER_EVERY_MS = 20
"""How often answers from worker threads are taken on the GUI thread, ms."""
COMMAND_TIMEOUT_S = 3.0
"""How long a command waits: longer than the engine's own 2 s reply deadline, so its answer
(also "the engine did not answer") arrives rather than a local timeout."""


class Mailbox(QObject):
    """Items put from any thread into :attr:`queue`, emitted as :attr:`arrived` on the GUI
    thread by a timer.

    Worker threads hold the queue, never a Qt object: a thread that outlives the widget it
    worked for (a request to a dead engine, a listing in progress) puts into a queue nobody
    reads, where emitting on the deleted object would crash the console.
    """

    arrived = Signal(object)

    def __init__(self, parent: QObject | None = None, every_ms: int = DELIVER_EVERY_MS) -> None:
        super().__init__(parent)
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self._timer = QTimer(self)
        self._timer.setInterval(every_ms)
        self._timer.timeout.connect(self.deliver)
        self._timer.start()

    @Slot()
    def deliver(self) -> None:
        """Emit what arrived so far, oldest first."""
        while True:
            try:
                item = self.queue.get_nowait()
            except queue.Empty:
                return
            self.arrived.emit(item)

    def close(self) -> None:
        """Deliver nothing more."""
        self._timer.stop()


class ControlClient(QObject):
    """Talks to one engine's control channel without ever blocking the GUI thread.

    While an address is set, ``status`` is polled every :data:`STATUS_EVERY_S`; commands go out
    at once on their own threads, so an emergency stop never waits behind a status poll that
    hangs on a dead engine.

    Parameters
    ----------
    parent : QObject, optional
    status_every_s, status_timeout_s, gone_after_s, command_timeout_s : float
        Polling period, status and command timeouts, and the silence after which the engine
        counts as gone, s.

    Signals
    -------
    replied(str, dict)
        A command's name and the engine's reply (``{"ok": ...}``).
    failed(str, str)
        A command's name and why it was not delivered (no engine answered, bad address).
    status(dict)
        The engine's answer to a status poll (``StimulationPath.status`` and the engine's
        block, block_index, elapsed_s, stalled, paused).
    engine_gone(str)
        Emitted once when the engine stops answering, with the reason.
    engine_back()
        Emitted when an engine that was gone answers again.
    address_changed(object)
        The new address (str), or None: another engine, or none.
    """

    replied = Signal(str, object)
    failed = Signal(str, str)
    status = Signal(object)
    engine_gone = Signal(str)
    engine_back = Signal()
    address_changed = Signal(object)

    def __init__(self, parent: QObject | None = None, *, status_every_s: float = STATUS_EVERY_S,
                 status_timeout_s: float = STATUS_TIMEOUT_S, gone_after_s: float = GONE_AFTER_S,
                 command_timeout_s: float = COMMAND_TIMEOUT_S) -> None:  # fmt: skip
        super().__init__(parent)
        for name, value in (("status_every_s", status_every_s),
                            ("status_timeout_s", status_timeout_s),
                            ("gone_after_s", gone_after_s),
                            ("command_timeout_s", command_timeout_s)):  # fmt: skip
            if not value > 0:
                raise ValueError(f"{name} must be > 0 s, got {value!r}")
        self.status_timeout_s = status_timeout_s
        self.gone_after_s = gone_after_s
        self.command_timeout_s = command_timeout_s
        self._address: str | None = None
        self._generation = 0
        """Bumped at every address change: answers from the previous engine are ignored."""
        self._polling = False
        self._last_answer = 0.0
        self._gone = False
        self._stopped = False
        self.last_status: dict | None = None
        """The newest status answer from the current engine."""
        # one thread for polls (one in flight at a time), others for commands
        self._poller = ThreadPoolExecutor(1, thread_name_prefix="gui-status")
        self._commands = ThreadPoolExecutor(4, thread_name_prefix="gui-command")
        self._mailbox = Mailbox(self)
        self._mailbox.arrived.connect(self._on_delivered)
        self._timer = QTimer(self)
        self._timer.setInterval(round(status_every_s * 1000))
        self._timer.timeout.connect(self.poll)

    # ------------------------------------------------------------------------------------------
    @property
    def address(self) -> str | None:
        """The engine's control address (``tcp://host:port``), or None."""
        return self._address

    @property
    def engine_answers(self) -> bool:
        """Whether an address is set and its engine has not gone silent."""
        return self._address is not None and not self._gone

    def set_address(self, address: str | None) -> None:
        """Talk to the engine at ``address`` (``tcp://host:port``); None stops polling. The
        address already set: nothing changes.

        Raises
        ------
        ValueError
            ``address`` is not ``tcp://host:port``.
        RuntimeError
            After :meth:`stop`.
        """
        if self._stopped:
            raise RuntimeError("this ControlClient was stopped; make a new one")
        if address is not None and not (
            isinstance(address, str)
            and address.startswith("tcp://")
            and address.rpartition(":")[2].isdigit()
        ):
            raise ValueError(f"address must look like tcp://127.0.0.1:5557, got {address!r}")
        if address == self._address:
            return
        self._address = address
        self._generation += 1
        self._gone = False
        self._polling = False
        self.last_status = None
        self._last_answer = time.monotonic()
        self.address_changed.emit(address)
        if address is None:
            self._timer.stop()
        else:
            self._timer.start()
            self.poll()

    def send(self, command: dict) -> None:
        """Send ``command`` (``{"cmd": ..., ...}``) on a worker thread; the answer comes as
        :attr:`replied` or :attr:`failed`.

        Raises
        ------
        ValueError
            ``command`` is not a dict with ``cmd`` one of ``COMMANDS``.
        """
        if not isinstance(command, dict) or command.get("cmd") not in COMMANDS:
            raise ValueError(
                f'a command is a dict with "cmd" one of {list(COMMANDS)}, got {command!r}'
            )
        name = command["cmd"]
        if self._address is None or self._stopped:
            self.failed.emit(name, "no engine to send it to: no session is connected")
            return
        address, generation = self._address, self._generation
        self._commands.submit(_request, self._mailbox.queue, "command", name, address,
                              dict(command), self.command_timeout_s, generation)  # fmt: skip

    @Slot()
    def poll(self) -> None:
        """Ask for the status now (unless a poll is already waiting for its answer)."""
        if self._address is None or self._stopped:
            return
        silent_s = time.monotonic() - self._last_answer
        if silent_s > self.gone_after_s:
            self._mark_gone(f"no answer from {self._address} for {silent_s:.1f} s")
        if self._polling:
            return
        self._polling = True
        self._poller.submit(_request, self._mailbox.queue, "status", "status", self._address,
                            {"cmd": "status", "who": "gui"}, self.status_timeout_s,
                            self._generation)  # fmt: skip

    def stop(self) -> None:
        """Stop polling and drop answers still on their way; idempotent."""
        if self._stopped:
            return
        self._stopped = True
        self._timer.stop()
        self._mailbox.close()
        self._address = None
        self._generation += 1
        # never wait here: a request to a dead engine holds its thread for its whole timeout
        self._poller.shutdown(wait=False, cancel_futures=True)
        self._commands.shutdown(wait=False, cancel_futures=True)

    # GUI side ------------------------------------------------------------------------------
    @Slot(object)
    def _on_delivered(self, item: tuple) -> None:
        kind, outcome, name, payload, generation = item
        current = generation == self._generation and not self._stopped
        if kind == "status":
            if generation == self._generation:
                self._polling = False
            if not current:
                return
            # {"ok": false} is the control thread saying the engine's loop did not answer
            if outcome == "reply" and isinstance(payload, dict) and payload.get("ok"):
                self._answered()
                self.last_status = payload
                self.status.emit(payload)
            elif outcome == "error":  # a connection error: no need to wait for the silence
                self._mark_gone(payload)
            return
        if outcome == "reply":
            if current:
                self._answered()
            self.replied.emit(name, payload)
        else:
            self.failed.emit(name, payload)

    def _answered(self) -> None:
        self._last_answer = time.monotonic()
        if self._gone:
            self._gone = False
            self.engine_back.emit()

    def _mark_gone(self, reason: str) -> None:
        if not self._gone:
            self._gone = True
            self.engine_gone.emit(reason)


def _request(results: queue.SimpleQueue, kind: str, name: str, address: str, command: dict,
             timeout_s: float, generation: int) -> None:  # fmt: skip
    """A worker thread's request; its outcome goes to ``results`` (the client's mailbox)."""
    try:
        payload: object = send_command(address, command, timeout_s=timeout_s)
        outcome = "reply"
    except TimeoutError as err:
        payload, outcome = str(err), "timeout"
    except Exception as err:  # delivered to the GUI thread and shown there, never lost
        payload, outcome = f"{type(err).__name__}: {err}", "error"
    results.put((kind, outcome, name, payload, generation))
