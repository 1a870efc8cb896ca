"""A session folder that survives a crash: claimed once, the resolved protocol written first,
``summary.json`` rewritten atomically while the session runs, every file replaced whole.

A reader (a person, a script, the console's session browser) never sees a half-written file:
each one is written to a temporary file beside it, flushed to the disk and renamed over the old
one. After a SIGKILL or a power cut the folder holds the protocol that ran (overrides applied),
and a ``summary.json`` with ``"complete": false`` whose totals are at most
:data:`SUMMARY_EVERY_S` old.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import tomli_w

SUMMARY_EVERY_S = 1.0
"""How often the running summary is rewritten, s (the issue asks for at most 2 s)."""

_CLAIM = ".neuroloop-session"
"""The file a session creates (exclusively) to claim its folder."""
_SESSION_FILES = (_CLAIM, "summary.json", "protocol.toml", "session.xdf")
"""Files whose presence says a folder already holds a session."""


def write_atomic(path: Path, data: str | bytes) -> None:
    """Replace ``path`` with ``data`` in one step: a temporary file in the same folder (made
    exclusively, mode 0600), flushed and fsynced, then renamed over it (a crash leaves the old
    file or the new one, never a mix)."""
    path = Path(path)
    raw = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(raw)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (where the OS allows opening a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot sync a folder; the rename itself is still atomic
    finally:
        os.close(fd)


def default_out_dir(root: Path = Path("sessions")) -> Path:
    """``sessions/<timestamp>/`` under the working directory; ``<timestamp>-2``, ``-3``, ... when
    a session started within the same second (a session folder is never reused)."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    candidate, n = root / stamp, 1
    while candidate.exists():
        n += 1
        candidate = root / f"{stamp}-{n}"
    return candidate


def claim_out_dir(out_dir: Path, recording_name: str = "session.xdf") -> Path:
    """Create the session folder, or refuse one that already holds a session.

    Raises
    ------
    FileExistsError
        ``out_dir`` holds another session's files, which this one would overwrite.
    """
    out_dir = Path(out_dir)
    taken = [name for name in {*_SESSION_FILES, recording_name} if (out_dir / name).exists()]
    out_dir.mkdir(parents=True, exist_ok=True)
    if not taken:
        try:  # two sessions started at once on one folder: only one creates this
            fd = os.open(out_dir / _CLAIM, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            taken = [_CLAIM]
        else:
            os.write(fd, f"{socket.gethostname()} pid {os.getpid()}\n".encode())
            os.close(fd)
    if taken:
        raise FileExistsError(
            f"{out_dir} already holds a session ({', '.join(sorted(taken))}); this one would "
            "overwrite it. Give this session its own folder (--out DIR), or leave --out out "
            "for sessions/<timestamp>/."
        )
    return out_dir


def write_resolved_protocol(out_dir: Path, protocol, source: str, text: str,
                            overrides: list[str]) -> Path:  # fmt: skip
    """``protocol.toml``: the protocol that runs, overrides applied and validated (it loads as
    it is: ``bci run DIR/protocol.toml`` repeats the session), with where it came from in its
    header; the file as written by hand beside it as ``protocol.source.toml``."""
    header = [f"# The protocol this session ran: {source}", "# with the --set overrides:"]
    header += [f"#   {item}" for item in overrides] or ["#   (none)"]
    header.append("# validated and resolved; the file as written is protocol.source.toml")
    data = protocol.model_dump(mode="json", exclude_none=True)
    write_atomic(out_dir / "protocol.source.toml", text)
    path = out_dir / "protocol.toml"
    write_atomic(path, "\n".join(header) + "\n\n" + tomli_w.dumps(data))
    return path


def save_model_atomic(decoder, path: Path) -> Path:
    """Save a decoder's model file whole or not at all (``.npz`` written beside, renamed)."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.partial.npz")
    try:
        decoder.save(tmp)
        with open(tmp, "rb") as file:
            os.fsync(file.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_folder(path.parent)
    return path


def running_summary(engine, protocol_name: str, overrides: list[str], started: str) -> dict:
    """What ``summary.json`` says while the session runs: where it is, and the dose so far.

    Read from another thread than the engine's: plain attributes and appends only.
    """
    state = engine.governor.state
    block = engine.block
    record = engine.record
    return {
        "complete": False,
        "reason": "running (the session has not ended; if it is not running any more, it "
        "ended without a summary: these are its figures as of 'updated')",
        "protocol": protocol_name,
        "overrides": list(overrides),
        "participant": getattr(engine.protocol.session, "participant", ""),
        "started": started,
        "updated": datetime.now().astimezone().isoformat(timespec="milliseconds"),
        "elapsed_s": round(engine.elapsed_s, 3),
        "block": None if block is None else {"index": block.index, "kind": block.kind},
        "stimulation": {
            "modality": engine.protocol.stimulator.modality,
            "amplitude": state.amplitude,
            "max_amplitude": state.max_abs_amplitude,
            "charge_mC": state.charge_mc,
            "on_time_s": state.on_time_s,
            "pulses_approved": state.n_pulses,
            "commands": len(record.commands),
            "clamped": state.n_clamped,
            "refused": state.n_refused,
            "estop": state.estop,
            "dose_limit": state.latched,
            "tripped": state.tripped,
        },
        "trials": len(record.cues),
        "events": dict(Counter(event["kind"] for event in list(record.events))),
    }


class SummaryWriter:
    """Rewrites ``summary.json`` every :data:`SUMMARY_EVERY_S` and at each block boundary while
    the session runs, on a thread of its own (the loop never waits on the disk).

    Parameters
    ----------
    path : Path
        ``summary.json``.
    build : callable
        ``build() -> dict``: the running summary (:func:`running_summary`).
    block_index : callable
        ``block_index() -> int | None``: the current block (a change triggers a write).
    """

    def __init__(self, path: Path, build: Callable[[], dict],
                 block_index: Callable[[], int | None]) -> None:  # fmt: skip
        self.path, self._build, self._block_index = Path(path), build, block_index
        self.error: str | None = None
        """Why the last write failed (a full disk); None while writes succeed."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="summary-writer", daemon=True)

    def start(self) -> SummaryWriter:
        self.write()
        self._thread.start()
        return self

    def write(self) -> None:
        """One rewrite now; a failure is kept in :attr:`error`, never raised (the session's
        own safety does not depend on it)."""
        try:
            write_atomic(self.path, json.dumps(self._build(), indent=2, default=float))
            self.error = None
        except Exception as err:  # a full disk must not stop the loop's supervision
            self.error = f"{type(err).__name__}: {err}"

    def _run(self) -> None:
        next_write = 0.0
        block = self._block_index()
        while not self._stop.wait(0.05):
            now = time.monotonic()
            if (current := self._block_index()) != block or now >= next_write:
                block = current
                self.write()
                next_write = now + SUMMARY_EVERY_S

    def stop(self) -> None:
        """Stop rewriting (the caller then writes the final summary); idempotent."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)


def write_final_summary(path: Path, summary: dict, reason: str | None = None) -> None:
    """The summary at the session's end: ``complete`` true after a clean end, else false with
    the ``reason``."""
    summary = {"complete": reason is None, "reason": reason, **summary}
    write_atomic(path, json.dumps(summary, indent=2, default=float))
