"""The engine's inbox: operator commands (from the control channel and Ctrl-C) and facts from
the engine's supervisor threads, each waiting with a future for the loop thread's answer."""

from __future__ import annotations

import queue
from concurrent.futures import Future

from bci.engine.control_request import check_command


class ControlInbox:
    """Commands waiting for the engine's loop thread, each with a future for its answer."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[tuple[dict, Future]] = queue.SimpleQueue()

    def post(self, command: dict) -> Future:
        """Queue an operator command (any thread, also a signal handler); the future gets the
        reply. ValueError for a command :func:`check_command` refuses."""
        future: Future = Future()
        self._queue.put((check_command(command), future))
        return future

    def post_fact(self, kind: str, **detail) -> None:
        """Queue a fact from a supervisor thread of this process (recorder, disk, control
        channel): ``{"cmd": "fact", "fact": kind, **detail}``; never accepted from outside.

        Raises
        ------
        ValueError
            ``kind`` is not a non-empty string, or ``detail`` holds ``cmd``, ``fact``,
            ``kind`` or ``time``.
        """
        if not isinstance(kind, str) or not kind:
            raise ValueError(f"a fact's kind is a non-empty string, got {kind!r}")
        clash = [key for key in ("cmd", "fact", "kind", "time") if key in detail]
        if clash:  # a detail must never turn a fact into a command, nor clash with its event
            raise ValueError(f"a fact's detail cannot hold {clash}; name them otherwise")
        self._queue.put(({**detail, "cmd": "fact", "fact": kind}, Future()))

    def emergency_stop(self, who: str, reason: str | None = None) -> Future:
        """Queue an emergency stop, saying ``who`` (and why); nothing in it is refused."""
        future: Future = Future()
        command = {"cmd": "estop", "who": str(who)}
        if reason is not None:
            command["reason"] = str(reason)
        self._queue.put((command, future))
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
