"""The client side of the control channel: :func:`send_command` (``bci control``, the console).

On one machine it needs no settings: the session's runtime file (see
:mod:`bci.engine.control_auth`) says whether to sign with the session's secret or to connect
with CURVE keys, and where they are.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from bci.engine.control_auth import (
    default_keys_dir,
    find_session,
    is_loopback,
    sign,
    split_address,
)
from bci.engine.control_request import MAX_NOTE_CHARS, check_command


def _failed_handshake(event: int) -> bool:
    import zmq

    return event in (zmq.EVENT_HANDSHAKE_FAILED_AUTH, zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL,
                     zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)  # fmt: skip


def send_command(
    address: str,
    command: dict,
    timeout_s: float = 3.0,
    keys_dir: str | Path | None = None,
    key_name: str | None = None,
) -> dict:
    """Send one command to an engine and return its reply (``bci control``, the console).

    Parameters
    ----------
    address : str
        The session's control address, ``tcp://host:port``.
    command : dict
        ``{"cmd": ..., "who": ..., "confirm": ..., "text": ...}`` (see
        :func:`bci.engine.control_request.check_command`).
    timeout_s : float
        How long to wait for the answer, s.
    keys_dir : str or Path, optional
        Connect with CURVE using the operator key there. Default: ``$NEUROLOOP_KEYS_DIR`` or
        what the session on this machine published; for an address off the loopback,
        :func:`bci.engine.control_auth.default_keys_dir`. Otherwise the request is signed with
        the session's secret when this user can read it.
    key_name : str, optional
        Which operator key (default ``$NEUROLOOP_KEY_NAME``, else the only one there).

    Raises
    ------
    TimeoutError
        Nobody answered at ``address`` within ``timeout_s``: the command was not delivered.
    PermissionError
        The engine refused the connection (a key it does not allow, or keys it wants).
    ValueError
        ``address`` is not ``tcp://host:port``, the command is malformed, or the keys are
        missing.
    """
    import zmq

    host, _ = split_address(address)
    text = command.get("text") if isinstance(command, dict) else None
    command = check_command(command, allow_auth=False)
    if isinstance(text, str) and len(text) > MAX_NOTE_CHARS:  # cut here: the request stays small
        cut = f"the note was cut to its first {MAX_NOTE_CHARS} characters (it had {len(text)})"
    else:
        cut = None
    session = find_session(address)
    if keys_dir is None:
        keys_dir = _keys_for(host, session)
    who = keys = None
    if keys_dir is not None:
        from bci.engine.control_keys import client_keypair, stop_keypair

        try:
            who, *keys = client_keypair(Path(keys_dir), key_name)
        except ValueError:
            if command["cmd"] != "estop":
                raise
            # an emergency stop is never refused: without a key of one's own, a throwaway one
            # (the engine records it as an unknown key) still reaches the engine
            who, *keys = stop_keypair(Path(keys_dir))
    elif session is not None and isinstance(session.get("secret"), str):
        command = sign(command, bytes.fromhex(session["secret"]))
    socket = zmq.Context.instance().socket(zmq.REQ)
    socket.setsockopt(zmq.LINGER, 0)
    if keys is not None:
        socket.curve_publickey, socket.curve_secretkey, socket.curve_serverkey = keys
    monitor = socket.get_monitor_socket(
        zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
        | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    )  # fmt: skip
    try:
        socket.connect(address)
        socket.send_string(json.dumps(command, ensure_ascii=False))  # notes in any script
        poller = zmq.Poller()
        poller.register(socket, zmq.POLLIN)
        poller.register(monitor, zmq.POLLIN)
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            ready = dict(poller.poll(max(1, round(left * 1000))))
            if socket in ready:
                reply = json.loads(socket.recv())
                return {**reply, "cut": cut} if cut and isinstance(reply, dict) else reply
            if monitor in ready:
                from zmq.utils.monitor import recv_monitor_message

                if _failed_handshake(recv_monitor_message(monitor)["event"]):
                    raise PermissionError(_refused(address, who, keys_dir))
        raise TimeoutError(
            f"no engine answered at {address} within {timeout_s:g} s, so the command was "
            "NOT delivered; is the session running, and is that its control address "
            "(printed at start)? To stop stimulation now press Ctrl-C in the session's "
            "terminal or the stimulator's own stop."
        )
    finally:
        socket.disable_monitor()
        monitor.close(linger=0)
        socket.close()


def _keys_for(host: str, session: dict | None) -> str | Path | None:
    """Where the operator keys are when the caller did not say: ``None`` to sign with the
    session's secret (or send unsigned) instead of connecting with CURVE."""
    chosen = os.environ.get("NEUROLOOP_KEYS_DIR")
    if session is not None:  # what the session on this machine published decides
        return (chosen or session["keys_dir"]) if "keys_dir" in session else None
    if chosen or not is_loopback(host):
        return chosen or default_keys_dir()
    return None


def _refused(address: str, who: str | None, keys_dir) -> str:
    if who is None:
        return (f"the engine at {address} refused the connection: it wants CURVE keys. Pass "
                "--keys-dir (or set NEUROLOOP_KEYS_DIR) to the folder holding your key and "
                "the engine's server.key (make yours with `bci control keygen NAME`)")  # fmt: skip
    return (f"the engine at {address} refused key {who!r} (from {keys_dir}): it is not on its "
            f"allow-list, or {keys_dir}/server.key is not that engine's. Ask its operator to "
            f"copy your {who}.key into the engine's keys/operators/ folder")  # fmt: skip
