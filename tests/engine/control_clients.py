"""What the control-channel tests share: an engine stand-in answering a real
:class:`ControlServer`, and a raw ZeroMQ client that sends whatever frames it is given."""

from __future__ import annotations

import json
import threading

import zmq

from bci.engine.control import ControlInbox, ControlServer
from tests.conftest import wait_for


class StandInEngine:
    """Drains the inbox as the engine's loop does, answering every command with what it was;
    keeps the commands and the facts it got. ``hold()`` stops answering (a busy engine)."""

    def __init__(self, inbox: ControlInbox) -> None:
        self.inbox = inbox
        self.commands: list[dict] = []
        self.facts: list[dict] = []
        self.answering = threading.Event()
        self.answering.set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stand-in-engine", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.002):
            if not self.answering.is_set():
                continue
            for command, future in self.inbox.drain():
                if command["cmd"] == "fact":
                    self.facts.append(command)
                    continue
                self.commands.append(command)
                if future.set_running_or_notify_cancel():
                    future.set_result({"ok": True, "echo": command["cmd"]})

    def facts_of(self, kind: str) -> list[dict]:
        return [fact for fact in list(self.facts) if fact["fact"] == kind]

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


class Served:
    """A started :class:`ControlServer` on a free loopback port with a :class:`StandInEngine`."""

    def __init__(self, address: str = "tcp://127.0.0.1:0", keys_dir=None) -> None:
        self.inbox = ControlInbox()
        self.engine = StandInEngine(self.inbox)
        self.server = ControlServer(self.inbox, address, keys_dir=keys_dir)
        self.address = self.server.start()

    def close(self) -> None:
        self.server.stop()
        self.engine.close()


class RawClient:
    """A DEALER socket: sends any frames (a REQ's empty delimiter first, unless told not to) and
    never has to wait for a reply before sending more."""

    def __init__(self, address: str, **curve) -> None:
        self.socket = zmq.Context.instance().socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        for option, value in curve.items():
            setattr(self.socket, option, value)
        self.socket.connect(address)

    def send(self, *frames: bytes, delimiter: bool = True) -> None:
        self.socket.send_multipart([b"", *frames] if delimiter else list(frames))

    def send_json(self, message: object) -> None:
        self.send(json.dumps(message).encode())

    def receive(self, timeout_s: float = 3.0) -> dict | None:
        """The next reply, or None if none came within ``timeout_s``."""
        if not self.socket.poll(round(timeout_s * 1000)):
            return None
        frames = self.socket.recv_multipart()
        assert frames[0] == b"" and len(frames) == 2, frames
        return json.loads(frames[1])

    def ask(self, *frames: bytes, delimiter: bool = True, timeout_s: float = 3.0) -> dict | None:
        self.send(*frames, delimiter=delimiter)
        return self.receive(timeout_s)

    def drain(self, n: int, timeout_s: float = 10.0) -> list[dict]:
        """Wait for ``n`` replies (fewer if the deadline passes)."""
        replies: list[dict] = []
        wait_for(lambda: self._collect(replies) >= n, timeout_s, poll_s=0.001)
        return replies

    def _collect(self, replies: list[dict]) -> int:
        while self.socket.poll(0):
            replies.append(json.loads(self.socket.recv_multipart()[-1]))
        return len(replies)

    def close(self) -> None:
        self.socket.close()
