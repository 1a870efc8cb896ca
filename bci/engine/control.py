"""The control channel: operator commands (emergency stop, re-arm, status, stop) reach the
engine's loop thread through an inbox, from ZeroMQ (GUI, ``bci control``) or from Ctrl-C.

The loop drains the inbox every iteration (≤ a few ms), so an emergency stop reaches the
stimulator within one iteration; the sender gets the engine's answer once it has acted.
"""

from __future__ import annotations

import json
import queue
import threading
from concurrent.futures import Future

COMMANDS = ("estop", "rearm", "status", "stop", "note", "pause", "resume")
"""What the engine accepts. ``rearm`` needs ``"confirm": true``: an explicit operator act;
``note`` records ``"text"`` in the session-info stream; ``pause`` holds the output at zero and
the timeline still until ``resume``."""

_REPLY_TIMEOUT_S = 2.0


def check_command(message: object) -> dict:
    """A command as a dict with a known ``cmd``; ValueError saying what is accepted."""
    if not isinstance(message, dict) or message.get("cmd") not in COMMANDS:
        raise ValueError(
            f'a control command is a JSON object with "cmd" one of {list(COMMANDS)}, got '
            f"{message!r}"
        )
    return message


class ControlInbox:
    """Commands waiting for the engine's loop thread, each with a future for its answer."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[tuple[dict, Future]] = queue.SimpleQueue()

    def post(self, command: dict) -> Future:
        """Queue a command (any thread, also a signal handler); the future gets the reply."""
        future: Future = Future()
        self._queue.put((check_command(command), future))
        return future

    def empty(self) -> bool:
        """Whether no command waits (the loop's cheap check, every iteration)."""
        return self._queue.empty()

    def drain(self):
        """The commands queued so far, oldest first (the loop thread)."""
        while True:
            try:
                yield self._queue.get_nowait()
            except queue.Empty:
                return


class ControlServer:
    """A ZeroMQ REP socket on its own thread, answering JSON commands through an inbox.

    Parameters
    ----------
    inbox : ControlInbox
    address : str
        ``tcp://host:port``; port 0 binds a free port (see :attr:`address` after start).
    """

    def __init__(self, inbox: ControlInbox, address: str) -> None:
        self.inbox = inbox
        self.requested = address
        self.address: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> str:
        """Bind and start answering; returns the bound address."""
        import zmq

        self._context = zmq.Context.instance()
        self._socket = self._context.socket(zmq.REP)
        self._socket.setsockopt(zmq.LINGER, 0)
        host, _, port = self.requested.rpartition(":")
        try:
            if port == "0":
                self.address = f"{host}:{self._socket.bind_to_random_port(host)}"
            else:
                self._socket.bind(self.requested)
                self.address = self.requested
        except zmq.ZMQError as err:
            self._socket.close()
            # no silent fallback: `bci control` aimed at this address would reach the other
            # session holding it
            raise RuntimeError(
                f"cannot open the control channel at {self.requested}: {err}. Another session "
                "may hold it: give this one its own, e.g. --set control.address="
                "tcp://127.0.0.1:5558, or tcp://127.0.0.1:0 for a free port (printed at start)"
            ) from None
        self._thread = threading.Thread(target=self._serve, name="control", daemon=True)
        self._thread.start()
        return self.address

    def _serve(self) -> None:
        import zmq

        poller = zmq.Poller()
        poller.register(self._socket, zmq.POLLIN)
        while not self._stop.is_set():
            if not poller.poll(50):
                continue
            raw = self._socket.recv()
            future = None
            try:
                future = self.inbox.post(json.loads(raw))
                reply = future.result(timeout=_REPLY_TIMEOUT_S)
            except ValueError as err:
                reply = {"ok": False, "error": str(err)}
            except TimeoutError:
                # dropped unless the engine has started on it; an emergency stop still happens
                future.cancel()
                reply = {"ok": False, "error": "the engine did not answer within 2 s; the "
                         "command was dropped (an estop is still carried out)"}  # fmt: skip
            except Exception as err:  # this thread must outlive any one bad request
                reply = {"ok": False, "error": f"{type(err).__name__}: {err}"}
            self._socket.send_string(json.dumps(reply, default=str))
        self._socket.close()

    def stop(self) -> None:
        """Stop answering and close the socket; idempotent."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None


def send_command(address: str, command: dict, timeout_s: float = 3.0) -> dict:
    """Send one command to an engine and return its reply (``bci control``, the GUI).

    Raises
    ------
    TimeoutError
        Nobody answered at ``address`` within ``timeout_s``: the command was not delivered.
    ValueError
        ``address`` is not ``tcp://host:port``.
    """
    import zmq

    if not (address.startswith("tcp://") and address.rpartition(":")[2].isdigit()):
        raise ValueError(f"--address must look like tcp://127.0.0.1:5557, got {address!r}")
    context = zmq.Context.instance()
    socket = context.socket(zmq.REQ)
    socket.setsockopt(zmq.LINGER, 0)
    try:
        socket.connect(address)
        socket.send_string(json.dumps(check_command(command)))
        if not socket.poll(int(timeout_s * 1000)):
            raise TimeoutError(
                f"no engine answered at {address} within {timeout_s:g} s, so the command was "
                "NOT delivered; is the session running, and is that its control address "
                "(printed at start)? To stop stimulation now press Ctrl-C in the session's "
                "terminal or the stimulator's own stop."
            )
        return json.loads(socket.recv())
    finally:
        socket.close()
