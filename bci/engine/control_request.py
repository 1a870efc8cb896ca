"""What a control request may look like, checked before anything acts on it.

A request is one ZeroMQ frame holding a UTF-8 JSON object of at most
:data:`MAX_REQUEST_BYTES`. Its fields are typed: ``cmd`` one of :data:`COMMANDS`, ``who`` a
short name, ``confirm`` a bool, ``text`` a string (cut to :data:`MAX_NOTE_CHARS`); the
per-session secret adds ``ts``, ``nonce`` and ``hmac`` (:mod:`bci.engine.control_auth`).
Anything else gets an error reply and changes nothing. Nothing here raises anything but
:class:`ValueError`, whatever the bytes.
"""

from __future__ import annotations

import json
import math

COMMANDS = ("estop", "rearm", "status", "stop", "note", "pause", "resume")
"""What the engine accepts. ``rearm`` needs ``"confirm": true``: an explicit operator act;
``note`` records ``"text"`` in the session-info stream; ``pause`` holds the output at zero and
the timeline still until ``resume``."""

OPEN_COMMANDS = ("estop", "status")
"""Commands anyone who reaches the channel may send: an emergency stop is never refused, and the
status changes nothing. Every other command needs the session's secret or an allowed key."""

INTERNAL_COMMANDS = ("fact",)
"""Commands only the engine's own threads post (:meth:`ControlInbox.post_fact`); refused from
the network."""

MAX_REQUEST_BYTES = 8 * 1024
"""Largest request answered, bytes; a larger one (up to :data:`MAX_MESSAGE_BYTES`) gets an
error reply."""

MAX_MESSAGE_BYTES = 64 * 1024
"""``zmq.MAXMSGSIZE`` of the control socket, bytes: libzmq drops the connection of a peer that
sends a larger frame, without a reply (its client then times out)."""

MAX_NOTE_CHARS = 2000
"""Longest operator note recorded, characters; a longer one is cut and the reply says so."""

MAX_WHO_CHARS = 64
"""Longest ``who`` name, characters."""

AUTH_FIELDS = ("ts", "nonce", "hmac")
"""Fields the per-session secret adds to a request (see :mod:`bci.engine.control_auth`)."""

_FIELDS = ("cmd", "who", "confirm", "text")


def parse_request(raw: bytes) -> dict:
    """The JSON object in one request frame.

    Parameters
    ----------
    raw : bytes
        The frame as received.

    Returns
    -------
    message : dict
        The parsed object, fields not yet checked (see :func:`check_command`).

    Raises
    ------
    ValueError
        The frame is too large, not UTF-8, not JSON, nested too deeply or not an object.
    """
    if len(raw) > MAX_REQUEST_BYTES:
        raise ValueError(
            f"a control request is at most {MAX_REQUEST_BYTES} bytes, got {len(raw)}; "
            f"notes are cut to {MAX_NOTE_CHARS} characters anyway"
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("a control request is UTF-8 JSON; these bytes are not UTF-8") from None
    try:
        message = json.loads(text)
    except RecursionError:
        raise ValueError("a control request is a flat JSON object; this one nests too "
                         "deeply") from None  # fmt: skip
    except ValueError as err:  # JSONDecodeError, and integers too long to convert
        raise ValueError(f"a control request is a JSON object; this is not JSON ({err})"[:300]) \
            from None  # fmt: skip
    if not isinstance(message, dict):
        raise ValueError(f'a control request is a JSON object such as {{"cmd": "status"}}, got '
                         f"a JSON {type(message).__name__}")  # fmt: skip
    return message


def _describe(value: object) -> str:
    """A short description of a received value for an error message (never the whole of it)."""
    if isinstance(value, str):
        return repr(value[:40] + ("..." if len(value) > 40 else ""))
    if isinstance(value, bool | int | float) or value is None:
        return repr(value)[:40]
    return f"a JSON {type(value).__name__}"


def check_who(message: dict, default: str = "operator") -> str:
    """The ``who`` of a request: a name of at most :data:`MAX_WHO_CHARS` characters.

    Raises
    ------
    ValueError
        ``who`` is not a string, is empty or is too long.
    """
    who = message.get("who", default)
    if not isinstance(who, str) or not who.strip() or len(who) > MAX_WHO_CHARS:
        raise ValueError(f'"who" is a name of 1 to {MAX_WHO_CHARS} characters, got '
                         f"{_describe(who)}")  # fmt: skip
    return who.strip()


def check_command(message: object, allow_auth: bool = True) -> dict:
    """A command checked field by field, as the engine's loop gets it.

    Parameters
    ----------
    message : object
        A parsed request (or a dict a program built).
    allow_auth : bool
        Whether ``ts``, ``nonce`` and ``hmac`` may be present (they are not copied).

    Returns
    -------
    command : dict
        ``cmd`` and whichever of ``who``, ``confirm``, ``text`` were given, ``text`` cut to
        :data:`MAX_NOTE_CHARS` characters. No other field.

    Raises
    ------
    ValueError
        Not an object, an unknown or internal ``cmd``, a wrongly typed or unknown field.
    """
    if not isinstance(message, dict):
        raise ValueError(f'a control command is a JSON object with "cmd" one of '
                         f"{list(COMMANDS)}, got {_describe(message)}")  # fmt: skip
    cmd = message.get("cmd")
    if not isinstance(cmd, str) or cmd not in COMMANDS:
        refused = " (internal to the engine, never accepted from outside)" \
            if cmd in INTERNAL_COMMANDS else ""  # fmt: skip
        raise ValueError(f'a control command is a JSON object with "cmd" one of '
                         f"{list(COMMANDS)}, got {_describe(cmd)}{refused}")  # fmt: skip
    allowed = _FIELDS + (AUTH_FIELDS if allow_auth else ())
    unknown = [str(key)[:40] for key in message if key not in allowed]
    if unknown:
        raise ValueError(f"unknown field(s) {unknown}; a command has {list(allowed)}")
    command = {"cmd": cmd}
    if "who" in message:
        command["who"] = check_who(message)
    if "confirm" in message:
        if not isinstance(message["confirm"], bool):
            raise ValueError(f'"confirm" is true or false, got {_describe(message["confirm"])}')
        command["confirm"] = message["confirm"]
    if "text" in message:
        if not isinstance(message["text"], str):
            raise ValueError(f'"text" is a string, got {_describe(message["text"])}')
        command["text"] = message["text"][:MAX_NOTE_CHARS]
    return command


def estop_of(message: object) -> dict | None:
    """The emergency stop in a request, however malformed its other fields, else None."""
    if not isinstance(message, dict) or message.get("cmd") != "estop":
        return None
    try:
        who = check_who(message)
    except ValueError:
        who = "unnamed client"
    return {"cmd": "estop", "who": who}


def check_auth_fields(message: dict) -> tuple[float, str, str]:
    """``ts`` (s since the epoch), ``nonce`` and ``hmac`` of a signed request.

    Raises
    ------
    ValueError
        A field is missing or of the wrong type or form.
    """
    ts, nonce, mac = message.get("ts"), message.get("nonce"), message.get("hmac")
    if isinstance(ts, bool) or not isinstance(ts, int | float) or not math.isfinite(ts):
        raise ValueError(f'"ts" is the time of sending, s since the epoch; got {_describe(ts)}')
    if not isinstance(nonce, str) or not 16 <= len(nonce) <= 64:
        raise ValueError(f'"nonce" is a random string of 16-64 characters; got '
                         f"{_describe(nonce)}")  # fmt: skip
    if not isinstance(mac, str) or len(mac) != 64:
        raise ValueError(f'"hmac" is 64 hex digits; got {_describe(mac)}')
    return float(ts), nonce, mac
