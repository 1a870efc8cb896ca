"""The control channel: operator commands (emergency stop, re-arm, status, stop) reach the
engine's loop thread through an inbox, from ZeroMQ (GUI, ``bci control``), from Ctrl-C, and
facts from the engine's supervisor threads.

The loop drains the inbox every iteration (≤ a few ms), so an emergency stop reaches the
stimulator within one iteration; the sender gets the engine's answer once it has acted.

The server cannot be killed or steered by what it receives: every request (any bytes, any
number of frames) gets an answer or, above ``zmq.MAXMSGSIZE``, its connection dropped by libzmq;
an emergency stop is never refused; every other command but ``status`` needs the session's
secret (loopback) or an allowed CURVE key (see :mod:`bci.engine.control_auth`). Should the
serving thread end anyway, it emergency-stops the session on its way out.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import sys
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

from bci.engine.control_auth import (
    FactLimiter,
    SecretGuard,
    check_bind,
    publish_session,
    runtime_file,
    unpublish_session,
)
from bci.engine.control_client import send_command
from bci.engine.control_inbox import ControlInbox
from bci.engine.control_request import (
    COMMANDS,
    MAX_MESSAGE_BYTES,
    MAX_NOTE_CHARS,
    OPEN_COMMANDS,
    check_command,
    estop_of,
    parse_request,
)

__all__ = ["COMMANDS", "ControlInbox", "ControlServer", "check_command", "send_command"]

_REPLY_TIMEOUT_S = 2.0
_MAX_PENDING = 32
"""Commands waiting for the engine at once; more get a "busy" answer (an estop never does)."""
_BURST = 64
"""Requests taken per wake-up before answering the ones the engine has finished."""


@dataclass
class _Pending:
    """A request waiting for the engine's answer."""

    identity: bytes
    future: Future
    deadline: float
    extra: dict = field(default_factory=dict)
    estop: bool = False


def _error(text: str) -> dict:
    return {"ok": False, "error": text[:600]}


class ControlServer:
    """A ZeroMQ ROUTER socket on its own thread, answering JSON commands through an inbox.

    One slow or broken client cannot hold up another's emergency stop: requests are answered
    in turn as the engine finishes them, malformed ones at once.

    Parameters
    ----------
    inbox : ControlInbox
    address : str
        ``tcp://host:port``; port 0 binds a free port (see :attr:`address` after start). Off
        the loopback only with ``keys_dir``.
    keys_dir : str or Path, optional
        CURVE: the engine's keys and its allow-list ``operators/`` (see
        :mod:`bci.engine.control_keys`); each command's ``who`` is its key's name. None: on the
        loopback, a per-session secret guards every command but ``estop`` and ``status``.
    """

    def __init__(self, inbox: ControlInbox, address: str,
                 keys_dir: str | Path | None = None) -> None:  # fmt: skip
        self.inbox = inbox
        self.requested = address
        self.keys_dir = Path(keys_dir).expanduser() if keys_dir is not None else None
        self.address: str | None = None
        self.failed: str | None = None
        """Why the serving thread ended on its own (it then emergency-stopped), else None."""
        self.n_unsent = 0
        """Replies that could not be sent (their client had gone)."""
        self._facts = FactLimiter(inbox.post_fact)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pending: list[_Pending] = []
        self._guard: SecretGuard | None = None
        self._ring = self._authenticator = None
        self._published: tuple[Path, dict] | None = None

    def start(self) -> str:
        """Bind and start answering; returns the bound address.

        Raises
        ------
        ValueError
            The address is malformed, or off the loopback without keys (says how to make them).
        RuntimeError
            The address is taken, or the keys are missing.
        """
        import zmq

        check_bind(self.requested, self.keys_dir)
        self._context = zmq.Context()  # its own: the ZAP handler serves one context
        self._socket = None
        try:
            self._socket = self._open_socket(zmq)
            self._publish()
        except BaseException:
            if self._socket is not None:
                self._socket.close()
            self._close()
            raise
        self._thread = threading.Thread(target=self._serve, name="control", daemon=True)
        self._thread.start()
        return self.address

    def _open_socket(self, zmq):
        if self.keys_dir is not None:
            from bci.engine.control_keys import (
                ZAP_DOMAIN,
                KeyRing,
                server_keypair,
                start_allow_list,
            )  # fmt: skip

            public, secret = server_keypair(self.keys_dir)
            self._ring = KeyRing(self.keys_dir)
            self._authenticator = start_allow_list(
                self._context, self._ring,
                lambda **detail: self._facts("control_refused", reason="unknown key: only an "
                                             "emergency stop is taken from it", **detail),
            )  # fmt: skip
        socket = self._context.socket(zmq.ROUTER)
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
        if self.keys_dir is not None:
            socket.curve_server = True
            socket.curve_publickey, socket.curve_secretkey = public, secret
            socket.zap_domain = ZAP_DOMAIN.encode()
        host, _, port = self.requested.rpartition(":")
        try:
            if port == "0":
                self.address = f"{host}:{socket.bind_to_random_port(host)}"
            else:
                socket.bind(self.requested)
                self.address = self.requested
        except zmq.ZMQError as err:
            socket.close()
            # no silent fallback: `bci control` aimed at this address would reach the other
            # session holding it
            raise RuntimeError(
                f"cannot open the control channel at {self.requested}: {err}. Another session "
                "may hold it: give this one its own, e.g. --set control.address="
                "tcp://127.0.0.1:5558, or tcp://127.0.0.1:0 for a free port (printed at start)"
            ) from None
        return socket

    def _publish(self) -> None:
        """Tell clients on this machine how to authenticate (the runtime file, mode 0600)."""
        if self.keys_dir is not None:
            info = {"keys_dir": str(self.keys_dir)}
        else:
            info = {"secret": secrets.token_bytes(32).hex()}
            self._guard = SecretGuard(bytes.fromhex(info["secret"]), runtime_file(self.address))
        try:
            self._published = (publish_session(self.address, info), info)
        except (OSError, RuntimeError) as err:
            raise RuntimeError(f"cannot write the control channel's secret: {err}; set "
                               "NEUROLOOP_RUNTIME_DIR to a folder of yours") from None  # fmt: skip

    # --- the serving thread -------------------------------------------------------------------
    def _serve(self) -> None:
        try:
            self._loop()
        except BaseException as err:  # the fail-safe: see _fail_safe
            self._fail_safe(f"{type(err).__name__}: {err}")
        finally:
            for pending in self._pending:
                pending.future.cancel()
            self._socket.close()

    def _loop(self) -> None:
        import zmq

        while not self._stop.is_set():
            # while the engine works on a command, look for its answer every 2 ms
            if self._socket.poll(2 if self._pending else 50, zmq.POLLIN):
                for _ in range(_BURST):
                    try:
                        frames = self._socket.recv_multipart(zmq.NOBLOCK, copy=False)
                    except zmq.Again:
                        break
                    self._handle(frames)
            if self._pending:
                self._answer_finished()

    def _fail_safe(self, reason: str) -> None:
        """The serving thread is ending on its own: no later emergency stop could arrive, so
        stop the stimulation now and say why."""
        self.failed = reason
        self.inbox.emergency_stop("control channel", f"the control channel failed: {reason}")
        self.inbox.post_fact("control_channel_failed", reason=reason)
        with contextlib.suppress(OSError, ValueError):  # the terminal may be gone (SIGHUP)
            print(f"CONTROL CHANNEL FAILED ({reason}): emergency stop", file=sys.stderr,
                  flush=True)  # fmt: skip

    def _handle(self, frames: list) -> None:
        """Answer one request, or queue it for the engine; no input gets past this."""
        identity = frames[0].bytes
        try:
            reply = self._consider(identity, frames)
        except ValueError as err:  # the request's fault: the message says what is accepted
            reply = _error(str(err))
        except Exception as err:  # no request may end this thread
            reply = _error(f"the request could not be handled ({type(err).__name__}: {err})")
        if reply is not None:
            self._reply(identity, reply)

    def _consider(self, identity: bytes, frames: list) -> dict | None:
        """The immediate answer to a request, or None when the engine will answer it."""
        body = frames[1:]
        if body and len(body[0]) == 0:  # a REQ client's empty delimiter
            body = body[1:]
        if len(body) != 1:
            return _error(f"a control request is one frame of JSON, got {len(body)} frames")
        message = parse_request(body[0].bytes)
        user = self._user(frames[0])
        estop = estop_of(message)
        if estop is not None:  # never refused: not for its other fields, not for auth
            estop["who"] = user or self._verified_who(message, estop["who"])
            return self._post(identity, estop)
        command = check_command(message)
        # under CURVE, only the allow-list's keys may do more than stop (status included)
        unknown = self.keys_dir is not None and (user is None or user not in self._ring.names())
        if command["cmd"] not in OPEN_COMMANDS or unknown:
            refusal = self._refusal(message, user)
            if refusal is not None:
                self._facts("control_refused", command=command["cmd"], reason=refusal[:200],
                            who=user or command.get("who", "operator"))  # fmt: skip
                return _error(refusal)
        if user:
            command["who"] = user
        extra = {}
        text = message.get("text")
        if command["cmd"] == "note" and len(text or "") > MAX_NOTE_CHARS:
            extra["cut"] = (f"the note was cut to its first {MAX_NOTE_CHARS} characters "
                            f"(it had {len(text)})")  # fmt: skip
        return self._post(identity, command, extra)

    def _user(self, frame) -> str | None:
        """The CURVE key's name the ZAP handler gave this connection, else None."""
        if self.keys_dir is None:
            return None
        try:
            return frame.get("User-Id") or None
        except Exception:  # no ZAP metadata: an unknown peer
            return None

    def _refusal(self, message: dict, user: str | None) -> str | None:
        """Why a guarded command may not be carried out, or None."""
        if self.keys_dir is not None:
            if user is None or user not in self._ring.names():
                holder = user or "this connection, which has no key,"
                return (f'"{message.get("cmd")}" needs a key on the engine\'s allow-list '
                        f"({self._ring.folder}); {holder} is not on it (an emergency stop "
                        "is taken from anyone)")  # fmt: skip
            return None
        try:
            self._guard.verify(message)
        except ValueError as err:
            return str(err)
        return None

    def _verified_who(self, message: dict, who: str) -> str:
        """An emergency stop's ``who``, marked when no valid signature vouches for it."""
        try:
            if self._guard is not None:
                self._guard.verify(message)
                return who
        except ValueError:
            pass
        return f"{who} (unverified)"

    def _post(self, identity: bytes, command: dict, extra: dict | None = None) -> dict | None:
        deadline = time.monotonic() + _REPLY_TIMEOUT_S
        if len(self._pending) >= _MAX_PENDING:
            if command["cmd"] != "estop":
                return _error(f"busy: {_MAX_PENDING} commands are waiting for the engine; try "
                              "again (an estop is always taken)")  # fmt: skip
            # a flood of stops: this one rides on a stop already on its way (same answer)
            for pending in self._pending:
                if pending.estop and not pending.future.done():
                    self._pending.append(_Pending(identity, pending.future, deadline, {}, True))
                    return None
        if command["cmd"] == "estop":
            future = self.inbox.emergency_stop(command["who"])
        else:
            future = self.inbox.post(command)
        self._pending.append(_Pending(identity, future, deadline, extra or {},
                                      command["cmd"] == "estop"))  # fmt: skip
        return None

    def _answer_finished(self) -> None:
        """Send the answers the engine has given; give up on those it has not in time."""
        now, waiting = time.monotonic(), []
        for pending in self._pending:
            future = pending.future
            if future.done() and not future.cancelled():
                try:
                    reply = future.result()
                    reply = {**reply, **pending.extra} if isinstance(reply, dict) else \
                        _error(f"the engine answered {type(reply).__name__}")  # fmt: skip
                except Exception as err:
                    reply = _error(f"the engine failed on it: {type(err).__name__}: {err}")
            elif now > pending.deadline and future.cancel():
                # dropped unless the engine has started on it; an emergency stop still happens
                reply = _error("the engine did not answer within 2 s; the command was dropped "
                               "(an estop is still carried out)")  # fmt: skip
            elif now > pending.deadline + 3 * _REPLY_TIMEOUT_S:  # started and never finished
                reply = _error("the engine started on the command and never finished it")
            else:
                waiting.append(pending)
                continue
            self._reply(pending.identity, reply)
        self._pending = waiting

    def _reply(self, identity: bytes, reply: dict) -> None:
        import zmq

        try:
            payload = json.dumps(reply, default=str).encode()
        except (TypeError, ValueError, RecursionError) as err:
            payload = json.dumps(_error(f"the reply could not be encoded: {err}")).encode()
        try:
            self._socket.send_multipart([identity, b"", payload], zmq.NOBLOCK)
        except zmq.ZMQError:  # the client is gone or not reading: its loss, not the channel's
            self.n_unsent += 1

    # --- stop -----------------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop answering, close the socket and remove the secret; idempotent."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            if self._thread.is_alive():  # never seen: keep the socket to the thread
                return
            self._thread = None
            self._close()

    def _close(self) -> None:
        if self._published is not None:
            unpublish_session(*self._published)
            self._published = None
        if self._authenticator is not None:
            self._authenticator.stop()
            self._authenticator = None
        self._context.term()
