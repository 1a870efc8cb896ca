"""Who may steer a session: where the control channel may listen, the per-session secret on the
loopback, and the signed requests it checks.

- Off the loopback (``0.0.0.0``, ``*``, a LAN address, a host name) the channel needs CURVE keys
  and an allow-list (:mod:`bci.engine.control_keys`); without them it does not start.
- On the loopback without keys, the engine writes a random 32-byte secret to a file only its
  user can read (:func:`runtime_dir`, one file per address, removed at stop). Every command but
  ``estop`` and ``status`` must carry an HMAC-SHA256 of the request made with it, a timestamp
  within :data:`MAX_SKEW_S` and a nonce never seen before; ``send_command`` finds the file by
  address, so ``bci control`` and the console need nothing typed.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import os
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

from bci.engine.control_request import check_auth_fields
from bci.engine.session_files import write_atomic

MAX_SKEW_S = 10.0
"""A signed request whose timestamp is further than this from the engine's clock is refused, s
(both run on one machine, so only a replay or a stalled sender is that far off)."""

_MAX_NONCES = 100_000
"""Nonces remembered at most (only correctly signed requests get here)."""

_WILDCARD_HOSTS = ("*", "0.0.0.0", "::", "[::]")


def default_keys_dir() -> Path:
    """Where CURVE keys live: ``$NEUROLOOP_KEYS_DIR``, else ``$XDG_CONFIG_HOME/neuroloop/keys``,
    else ``~/.config/neuroloop/keys``."""
    if os.environ.get("NEUROLOOP_KEYS_DIR"):
        return Path(os.environ["NEUROLOOP_KEYS_DIR"]).expanduser()
    config = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(config) / "neuroloop" / "keys"


def runtime_dir() -> Path:
    """Where sessions leave their control secrets: ``$NEUROLOOP_RUNTIME_DIR``, else
    ``$XDG_RUNTIME_DIR/neuroloop``, else ``~/.cache/neuroloop/run`` (made mode 0700)."""
    if os.environ.get("NEUROLOOP_RUNTIME_DIR"):
        return Path(os.environ["NEUROLOOP_RUNTIME_DIR"]).expanduser()
    if os.environ.get("XDG_RUNTIME_DIR"):
        return Path(os.environ["XDG_RUNTIME_DIR"]) / "neuroloop"
    return Path.home() / ".cache" / "neuroloop" / "run"


def split_address(address: str) -> tuple[str, int]:
    """``tcp://host:port`` as ``(host, port)``.

    Raises
    ------
    ValueError
        ``address`` is not of that form.
    """
    host, _, port = address.removeprefix("tcp://").rpartition(":")
    if not (address.startswith("tcp://") and host and port.isdigit() and int(port) < 65536):
        raise ValueError(f"--address must look like tcp://127.0.0.1:5557, got {address!r}")
    return host, int(port)


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine only (``localhost``, 127.0.0.0/8, ``::1``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host or interface name: it may reach the network
        return False


def setup_howto(port: int | str = 5557) -> str:
    """The commands that set up keys, for messages that refuse to go on without them."""
    keys = default_keys_dir()
    return (
        f"keep the channel on this machine (tcp://127.0.0.1:{port}), or set up keys: on this "
        f"machine run `bci control keygen NAME` (creates the engine's keys and allows operator "
        f"NAME, in {keys}), then start the session with --set control.keys_dir={keys}; an "
        f"operator on another machine runs `bci control keygen NAME` there, and copies their "
        f"NAME.key into {keys}/operators/ on the engine's machine and the engine's "
        f"{keys}/server.key into their own keys folder"
    )


def check_bind(address: str, keys_dir: str | Path | None) -> None:
    """Refuse a control address reachable from other machines unless keys are configured.

    Raises
    ------
    ValueError
        ``address`` is malformed, or off the loopback with ``keys_dir`` None; the message says
        how to set keys up.
    """
    host, port = split_address(address)
    if keys_dir is None and not is_loopback(host):
        raise ValueError(
            f"control.address: {address} can be reached from other machines, and without keys "
            f"anyone there could re-arm, resume or stop the stimulation; {setup_howto(port)}"
        )


# --- the runtime file: how a client on this machine finds the session's secret ----------------
def runtime_file(address: str) -> Path:
    """The file describing the session listening at ``address`` (its secret, or its keys)."""
    host, port = split_address(address)
    if host in _WILDCARD_HOSTS:
        host = "any"
    elif host == "localhost":
        host = "127.0.0.1"
    safe = "".join(c if c.isalnum() or c in ".-" else "_" for c in host)
    return runtime_dir() / f"control-{safe}-{port}.json"


def _private_dir(folder: Path) -> None:
    """Make ``folder`` (mode 0700) or check that it is this user's and nobody else's."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    status = folder.stat()
    if status.st_uid != os.getuid():
        raise RuntimeError(f"{folder} belongs to another user; set NEUROLOOP_RUNTIME_DIR (or "
                           "NEUROLOOP_KEYS_DIR) to a folder of your own")  # fmt: skip
    if status.st_mode & 0o077:
        os.chmod(folder, 0o700)


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by this user only (mode 0600), atomically: a reader
    sees the old file or the whole new one, and no one else can read it at any moment (the
    temporary file is made 0600 and exclusively, and removed if anything fails)."""
    _private_dir(path.parent)
    write_atomic(path, text)


def publish_session(address: str, info: dict) -> Path:
    """Write the runtime file of the session bound at ``address`` (mode 0600), after removing
    those of sessions whose process is gone (killed before they could remove their own)."""
    path = runtime_file(address)
    for old in path.parent.glob("control-*.json"):
        try:
            os.kill(int(json.loads(old.read_text())["pid"]), 0)
        except ProcessLookupError:
            old.unlink(missing_ok=True)
        except (OSError, ValueError, KeyError, TypeError):  # another user's, or unreadable
            continue
    write_private(path, json.dumps({"address": address, "pid": os.getpid(), **info}))
    return path


def unpublish_session(path: Path, info: dict) -> None:
    """Remove a runtime file this session wrote (not one a later session wrote there)."""
    try:
        if {k: v for k, v in json.loads(path.read_text()).items() if k in info} == info:
            path.unlink()
    except (OSError, ValueError):  # already gone, or another session's: leave it
        pass


def find_session(address: str) -> dict | None:
    """What the session at ``address`` on this machine published (``secret`` or ``keys_dir``),
    or None when there is no such file (another machine, another user, no session)."""
    host, _ = split_address(address)
    candidates = [runtime_file(address)]
    if is_loopback(host):  # a client on this machine may reach a wildcard bind on the loopback
        candidates.append(runtime_file(f"tcp://*:{split_address(address)[1]}"))
    for path in candidates:
        try:
            info = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(info, dict):
            return info
    return None


# --- signed requests --------------------------------------------------------------------------
def canonical(message: dict) -> bytes:
    """The bytes an HMAC covers: the request without ``hmac``, keys sorted, compact, ASCII."""
    body = {key: value for key, value in message.items() if key != "hmac"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False).encode()  # fmt: skip


def sign(command: dict, secret: bytes) -> dict:
    """``command`` with ``ts`` (now), a random ``nonce`` and its ``hmac`` under ``secret``."""
    message = {**command, "ts": time.time(), "nonce": secrets.token_hex(16)}
    message["hmac"] = hmac.new(secret, canonical(message), hashlib.sha256).hexdigest()
    return message


class SecretGuard:
    """Checks signed requests against the session's secret, refusing replays.

    Parameters
    ----------
    secret : bytes
        The session's secret (32 random bytes).
    where : Path
        The file that holds it (named in refusals, so the operator knows where to look).
    clock : callable
        Seconds since the epoch (the sender's ``ts`` is compared with it).
    """

    def __init__(self, secret: bytes, where: Path, clock: Callable[[], float] = time.time):
        self._secret, self.where, self._clock = secret, where, clock
        self._seen: OrderedDict[str, float] = OrderedDict()

    def verify(self, message: dict) -> None:
        """Accept a correctly signed, fresh, never seen request, or raise saying why not.

        Raises
        ------
        ValueError
            No or a wrong signature, a timestamp more than :data:`MAX_SKEW_S` off, or a nonce
            already received (a replay).
        """
        if not any(field in message for field in ("ts", "nonce", "hmac")):
            raise ValueError(
                f'"{message.get("cmd")}" needs the session\'s secret, which bci control and '
                f"the console read from {self.where}: send it from this machine as the user "
                "who started the session (or set NEUROLOOP_RUNTIME_DIR as the session had it)"
            )
        ts, nonce, mac = check_auth_fields(message)
        expected = hmac.new(self._secret, canonical(message), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, mac):
            raise ValueError("the request's HMAC does not match this session's secret (a "
                             f"forged request, or a secret from another session than {self.where}"
                             "); nothing was done")  # fmt: skip
        now = self._clock()
        if abs(now - ts) > MAX_SKEW_S:
            raise ValueError(f"the request was signed {now - ts:+.0f} s ago (more than "
                             f"{MAX_SKEW_S:g} s off): a stale replay or a wrong clock; nothing "
                             "was done")  # fmt: skip
        # a nonce is kept until its timestamp is stale anyway (at most 2 × MAX_SKEW_S); a live
        # one is never forgotten early, or its replay would pass
        while self._seen and next(iter(self._seen.values())) < now - 2 * MAX_SKEW_S:
            self._seen.popitem(last=False)
        if nonce in self._seen:
            raise ValueError("this request was received before (same nonce): a replay; "
                             "nothing was done")  # fmt: skip
        if len(self._seen) >= _MAX_NONCES:
            raise ValueError(f"more than {_MAX_NONCES} signed requests within "
                             f"{2 * MAX_SKEW_S:g} s; nothing was done: try again in a few "
                             "seconds")  # fmt: skip
        self._seen[nonce] = now


class FactLimiter:
    """Posts facts at a bounded rate, so a flood of refused requests cannot fill the engine's
    inbox; the next fact posted says how many were left out (``suppressed``).

    Parameters
    ----------
    post : callable
        ``post(kind, **detail)`` (:meth:`ControlInbox.post_fact`).
    rate_per_s, burst : float
        Facts per second on average, and at most in one burst.
    """

    def __init__(self, post: Callable[..., None], rate_per_s: float = 2.0, burst: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self._post, self._rate, self._burst, self._clock = post, rate_per_s, burst, clock
        self._tokens, self._last = burst, clock()
        self._suppressed = 0
        self._lock = threading.Lock()  # the serving thread and the ZAP thread both post

    def __call__(self, kind: str, **detail) -> bool:
        """Post ``kind`` with ``detail`` unless over the rate; True if posted."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
            self._last = now
            if self._tokens < 1:
                self._suppressed += 1
                return False
            self._tokens -= 1
            if self._suppressed:
                detail["suppressed"] = self._suppressed
                self._suppressed = 0
            self._post(kind, **detail)
            return True
