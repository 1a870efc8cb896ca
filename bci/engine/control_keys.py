"""CURVE keys for the control channel: ``bci control keygen``, the engine's allow-list of
operators, and the ZAP handler that refuses (and reports) every other key.

A keys folder (:func:`bci.engine.control_auth.default_keys_dir`, mode 0700) holds::

    server.key, server.key_secret   the engine's keypair (its public half goes to operators)
    operators/NAME.key              the allow-list: public keys of operators who may steer it
    NAME.key, NAME.key_secret       an operator's own keypair on this machine

A key's name (its file name without ``.key``) is the ``who`` recorded with its commands.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
from collections.abc import Callable
from pathlib import Path

import zmq
from zmq.auth import create_certificates, load_certificate
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils import z85

from bci.engine.control_auth import _private_dir, setup_howto

SERVER = "server"
"""The engine's keypair's name."""

OPERATORS = "operators"
"""The allow-list folder inside a keys folder."""

ZAP_DOMAIN = "neuroloop"
"""The control socket's ZAP domain (the allow-list answers for it only)."""

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,31}")


def check_key_name(name: str) -> str:
    """An operator's key name: a letter, then up to 31 letters, digits, ``_ . -``.

    Raises
    ------
    ValueError
        Any other name, or ``server`` (the engine's own).
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name) or name == SERVER:
        raise ValueError(f"a key name is a letter then up to 31 letters, digits, '_', '.' or "
                         f"'-' (and not {SERVER!r}), got {name!r}")  # fmt: skip
    return name


def keygen(name: str, keys_dir: Path) -> list[Path]:
    """Create operator ``name``'s keypair in ``keys_dir``, allow it (``operators/name.key``),
    and create the engine's keypair there if it has none; never overwrites a key.

    Returns
    -------
    created : list of Path
        The files written.

    Raises
    ------
    FileExistsError
        ``name`` already has a key there.
    """
    check_key_name(name)
    keys_dir = Path(keys_dir).expanduser()
    _private_dir(keys_dir)
    _private_dir(keys_dir / OPERATORS)
    if (keys_dir / f"{name}.key_secret").exists():
        raise FileExistsError(
            f"{keys_dir / name}.key_secret exists; keep it, or remove {name}.key and "
            f"{name}.key_secret there to make a new one"
        )
    created = []
    engine_keys = [] if (keys_dir / f"{SERVER}.key_secret").exists() else [SERVER]
    for who in [*engine_keys, name]:
        public, secret = (Path(p) for p in create_certificates(keys_dir, who))
        os.chmod(secret, 0o600)  # the folder is 0700 already: never readable by others
        created += [public, secret]
    allowed = keys_dir / OPERATORS / f"{name}.key"
    shutil.copyfile(keys_dir / f"{name}.key", allowed)
    return [*created, allowed]


def server_keypair(keys_dir: Path) -> tuple[bytes, bytes]:
    """The engine's (public, secret) keys in ``keys_dir``.

    Raises
    ------
    RuntimeError
        There are none, or no operator is allowed: says how to make them.
    """
    keys_dir = Path(keys_dir).expanduser()
    path = keys_dir / f"{SERVER}.key_secret"
    if not path.exists():
        raise RuntimeError(f"control.keys_dir: no engine keys in {keys_dir} ({path.name}); "
                           f"{setup_howto()}")  # fmt: skip
    public, secret = load_certificate(path)
    if not KeyRing(keys_dir).names():
        raise RuntimeError(f"control.keys_dir: no operator is allowed (no *.key in "
                           f"{keys_dir / OPERATORS}); {setup_howto()}")  # fmt: skip
    return public, secret


def stop_keypair(keys_dir: Path) -> tuple[str, bytes, bytes, bytes]:
    """A throwaway ``(name, public, secret, server public)`` for an emergency stop sent by
    someone without a key of their own (only the engine's ``server.key`` is needed).

    Raises
    ------
    ValueError
        No ``server.key`` in ``keys_dir``: the engine cannot be reached over CURVE at all.
    """
    server_file = Path(keys_dir).expanduser() / f"{SERVER}.key"
    if not server_file.exists():
        raise ValueError(f"no {server_file.name} in {keys_dir}: copy the engine's {SERVER}.key "
                         "there to reach it (or stop it from its own terminal)")  # fmt: skip
    public, secret = zmq.curve_keypair()
    return "(no key)", public, secret, load_certificate(server_file)[0]


def client_keypair(keys_dir: Path, key_name: str | None) -> tuple[str, bytes, bytes, bytes]:
    """An operator's ``(name, public, secret, server public)`` keys from ``keys_dir``.

    ``key_name`` None takes ``$NEUROLOOP_KEY_NAME``, else the only operator keypair there.

    Raises
    ------
    ValueError
        The keys are missing, or several operators' and none was chosen: says what to do.
    """
    keys_dir = Path(keys_dir).expanduser()
    key_name = key_name or os.environ.get("NEUROLOOP_KEY_NAME")
    if key_name is None:
        names = sorted(p.name.removesuffix(".key_secret") for p in
                       keys_dir.glob("*.key_secret") if p.stem != SERVER)  # fmt: skip
        if len(names) != 1:
            found = f"several ({', '.join(names)})" if names else "none"
            raise ValueError(f"which operator key? {found} in {keys_dir}: choose one with "
                             "--key-name NAME (or NEUROLOOP_KEY_NAME), or make one with "
                             "`bci control keygen NAME`")  # fmt: skip
        key_name = names[0]
    secret_file = keys_dir / f"{key_name}.key_secret"
    server_file = keys_dir / f"{SERVER}.key"
    for path in (secret_file, server_file):
        if not path.exists():
            raise ValueError(
                f"no {path.name} in {keys_dir}: make your key with `bci control keygen "
                f"{key_name}` and copy the engine's {SERVER}.key there"
            )
    public, secret = load_certificate(secret_file)
    return key_name, public, secret, load_certificate(server_file)[0]


class KeyRing:
    """The allow-list ``keys_dir/operators/*.key``, re-read whenever a file there changes (so a
    key added or removed counts from the next connection or command)."""

    def __init__(self, keys_dir: Path) -> None:
        self.folder = Path(keys_dir).expanduser() / OPERATORS
        self._signature: tuple = ()
        self._names: dict[bytes, str] = {}
        self._lock = threading.Lock()  # the ZAP thread and the serving thread both ask

    def _current(self) -> dict[bytes, str]:
        with self._lock:
            return self._reread()

    def _reread(self) -> dict[bytes, str]:
        try:
            files = [e for e in os.scandir(self.folder) if e.name.endswith(".key")]
            entries = sorted((e.name, e.stat().st_mtime_ns, e.stat().st_size) for e in files)
        except OSError:
            entries = []
        if entries != self._signature:
            names = {}
            for file_name, _, _ in entries:
                try:
                    public, _ = load_certificate(self.folder / file_name)
                except (OSError, ValueError):  # a file being copied in: next time
                    continue
                names[public] = file_name.removesuffix(".key")
            self._names, self._signature = names, entries
        return self._names

    def name_of(self, public_z85: bytes) -> str | None:
        """The allowed operator holding ``public_z85``, else None."""
        return self._current().get(public_z85)

    def names(self) -> set[str]:
        """Every allowed operator's name."""
        return set(self._current().values())


UNKNOWN_PREFIX = "unknown key "
"""How the ZAP handler names a key that is not on the allow-list (its z85 text follows)."""


class _AllowList(ThreadAuthenticator):
    """ZAP handler: any CURVE key connects (the handshake proves it holds its secret), named by
    its allow-list file, or ``unknown key <z85>`` when it is on none. An emergency stop is never
    refused, so an unknown key may send one; the server refuses it everything else, command by
    command, and records each refusal. Each connection of an unknown key is reported through
    ``on_unknown(key=..., address=...)``."""

    def __init__(self, context: zmq.Context, ring: KeyRing,
                 on_refused: Callable[..., object]) -> None:  # fmt: skip
        super().__init__(context)
        self.ring, self.on_refused, self.peer = ring, on_refused, ""
        self.configure_curve_callback(ZAP_DOMAIN, self)

    async def handle_zap_message(self, msg: list[bytes]) -> None:
        # the callback below is not told the peer's address; ZAP requests come one at a time
        self.peer = msg[3].decode("utf-8", "replace")[:64] if len(msg) > 3 else ""
        await super().handle_zap_message(msg)

    def callback(self, domain: str, key: bytes) -> bool:
        """The credentials provider: every key connects; an unknown one (z85) is reported."""
        try:
            if self.ring.name_of(key) is None:
                self.on_refused(key=key.decode("ascii", "replace"), address=self.peer)
        except Exception as err:  # reported; what it may do is still decided per command
            self.on_refused(key=key.decode("ascii", "replace"), address=self.peer,
                            error=f"{type(err).__name__}: {err}")  # fmt: skip
        return True

    def curve_user_id(self, client_public_key: bytes) -> str:
        """The ZAP reply's User-Id (what the server reads from each request): the key's name,
        or ``unknown key <z85>``."""
        public = z85.encode(client_public_key)
        return self.ring.name_of(public) or UNKNOWN_PREFIX + public.decode("ascii", "replace")


def start_allow_list(context: zmq.Context, ring: KeyRing,
                     on_refused: Callable[..., object]) -> ThreadAuthenticator:  # fmt: skip
    """Start the ZAP handler of ``context`` (before any CURVE socket binds in it)."""
    authenticator = _AllowList(context, ring, on_refused)
    authenticator.start()
    return authenticator
