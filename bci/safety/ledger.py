"""The dose ledger: every participant's stimulation dose, append-only, across sessions, restarts
and crashes, so that Stop then Start (or a crash) never gives a participant a fresh budget.

One JSON-lines file per participant, ``<dir>/<participant>.jsonl``, in the folder
``$NEUROLOOP_LEDGER_DIR``, else ``$XDG_DATA_HOME/neuroloop/ledger`` (default
``~/.local/share/neuroloop/ledger``), created with mode 0700. Each line is one record::

    {"type": "start", "session": ID, "time": WALL, "modality": M, "protocol": NAME,
     "host": HOST, "stimulator": KIND}
    {"type": "dose", "session": ID, "time": WALL, "modality": M,
     "on_time_s": Δ, "charge_mc": Δ, "pulses": Δ}          # increments, ≤ 2 lines a second
    {"type": "end", "session": ID, "time": WALL, "modality": M}

``time`` is wall-clock time, s since the epoch. Each line is written with one ``write`` on a
file opened for appending, then flushed to the disk (``fsync``): a SIGKILL loses at most the
last second of dose, and a line torn by a power cut is skipped (with a warning) when read.

Wiring a session (:func:`open_dose`)::

    dose = open_dose(protocol, session_id)   # None: simulated stimulator, no participant;
                                             # raises DoseLimitError when the budget is spent
    engine = Engine(..., dose_prior=dose.prior if dose else None)
    writer = dose.start_writer(lambda: engine.governor.session_totals) if dose else None
    try:
        ...                                  # the session
    finally:
        if writer is not None:
            writer.close()                   # the last increment and the end line
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import socket
import threading
import time as _time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bci.safety.dose import DAY_S, DoseLimitError, DoseTotals, frees_at, refuse_if_exhausted

if TYPE_CHECKING:
    from bci.protocol.schema import Protocol
    from bci.safety.site import SiteLimits

LEDGER_DIR_ENV = "NEUROLOOP_LEDGER_DIR"
"""Environment variable naming the ledger folder."""
PARTICIPANT_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
"""What a participant id may be: it names the ledger file."""
PARTICIPANT_RULE = (
    "1-64 letters, digits, '_', '.' or '-', starting with a letter or digit (a pseudonymous "
    "id such as P017; it names the participant's dose-ledger file)"
)


class LedgerWarning(UserWarning):
    """A ledger line that could not be read (torn by a crash or a power cut); it is skipped."""


def check_participant(participant: str) -> str:
    """``participant`` if it is a valid id, else ``ValueError`` saying what is allowed."""
    if not isinstance(participant, str) or not PARTICIPANT_PATTERN.fullmatch(participant):
        raise ValueError(f"participant must be {PARTICIPANT_RULE}, got {participant!r}.")
    return participant


def ledger_dir() -> Path:
    """The ledger folder: ``$NEUROLOOP_LEDGER_DIR``, else ``$XDG_DATA_HOME/neuroloop/ledger``
    (``~/.local/share/neuroloop/ledger``). Not created here."""
    named = os.environ.get(LEDGER_DIR_ENV, "").strip()
    if named:
        return Path(named).expanduser()
    data = os.environ.get("XDG_DATA_HOME", "").strip() or Path.home() / ".local" / "share"
    return Path(data) / "neuroloop" / "ledger"


def ledger_path(participant: str, directory: str | Path | None = None) -> Path:
    """The participant's ledger file in ``directory`` (default :func:`ledger_dir`)."""
    folder = ledger_dir() if directory is None else Path(directory)
    return folder / f"{check_participant(participant)}.jsonl"


def read_ledger(participant: str, directory: str | Path | None = None) -> list[dict]:
    """Every record of the participant's ledger, oldest first ([] when there is none).

    A line that is not a JSON object (the last one torn by a SIGKILL or a power cut) is
    skipped, and said once with a :class:`LedgerWarning`.
    """
    path = ledger_path(participant, directory)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return []
    records, torn = [], []
    for number, line in enumerate(raw.split(b"\n"), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (UnicodeDecodeError, json.JSONDecodeError):
            record = None
        if isinstance(record, dict) and isinstance(record.get("time"), int | float):
            records.append(record)
        else:
            torn.append(number)
    if torn:
        warnings.warn(
            f"dose ledger {path}: skipped {len(torn)} unreadable line(s) (line "
            f"{', '.join(map(str, torn[:5]))}), left by a crash or a power cut; at most about "
            "a second of dose each",
            LedgerWarning,
            stacklevel=2,
        )
    return records


def _dose_of(record: dict) -> DoseTotals:
    try:
        return DoseTotals(float(record.get("on_time_s", 0.0)),
                          float(record.get("charge_mc", 0.0)), record.get("pulses", 0))
    except (TypeError, ValueError) as err:  # a line edited by hand, or written by a bug
        raise ValueError(f"a dose line of the ledger is not a dose ({err}): {record}; no "
                         "budget can be computed from it. Restore the ledger file from its "
                         "backup, or correct that line by hand") from None


def dose_lines(participant: str, modality: str, now: float | None = None,
               window_s: float = DAY_S,
               directory: str | Path | None = None) -> list[tuple[float, DoseTotals]]:  # fmt: skip
    """The participant's dose increments of ``modality`` within ``window_s`` before ``now``
    (wall time, s; default now): ``(time, increment)``, oldest first. Lines stamped after
    ``now`` (a clock set back) count too."""
    now = _time.time() if now is None else now
    return [
        (record["time"], _dose_of(record))
        for record in read_ledger(participant, directory)
        if record.get("type") == "dose"
        and record.get("modality") == modality
        and record["time"] > now - window_s
    ]


def participant_totals(participant: str, modality: str, now: float | None = None,
                       window_s: float = DAY_S,
                       directory: str | Path | None = None) -> DoseTotals:  # fmt: skip
    """The participant's total dose of ``modality`` over the rolling ``window_s`` (s) before
    ``now`` (wall time, s since the epoch; default now): the ``prior`` of a new session."""
    lines = dose_lines(participant, modality, now, window_s, directory)
    return sum((delta for _, delta in lines), DoseTotals())


@dataclass(frozen=True)
class SessionDose:
    """One session's dose, as the ledger holds it."""

    session: str
    """The session id."""
    started: float
    """Wall time of its first line, s since the epoch."""
    modality: str
    protocol: str
    """The protocol's name ("" when the start line was lost)."""
    dose: DoseTotals
    """What it delivered."""
    ended: bool
    """Whether it wrote its end line (False: running, or it crashed)."""


def history(participant: str, directory: str | Path | None = None) -> list[SessionDose]:
    """The participant's sessions, oldest first, each with its dose (for display)."""
    sessions: dict[str, dict] = {}
    for record in read_ledger(participant, directory):
        entry = sessions.setdefault(str(record.get("session", "")), {
            "started": record["time"], "modality": record.get("modality", "?"),
            "protocol": "", "dose": DoseTotals(), "ended": False,
        })  # fmt: skip
        kind = record.get("type")
        if kind == "start":
            entry["protocol"] = str(record.get("protocol", ""))
        elif kind == "dose":
            entry["dose"] = entry["dose"] + _dose_of(record)
        elif kind == "end":
            entry["ended"] = True
    return [SessionDose(session, **entry) for session, entry in sessions.items()]


def known_participants(directory: str | Path | None = None) -> list[str]:
    """Participants with a ledger file in ``directory`` (default :func:`ledger_dir`)."""
    folder = ledger_dir() if directory is None else Path(directory)
    return sorted(p.stem for p in folder.glob("*.jsonl") if PARTICIPANT_PATTERN.fullmatch(p.stem))


class LedgerWriter:
    """Appends one session's dose to the participant's ledger while the session runs.

    A daemon thread reads ``read_totals()`` (the governor's session totals: plain attributes,
    no device) every ``poll_s`` and appends the increment since the last line written, at most
    every ``min_interval_s``, each line flushed to the disk. :meth:`close` writes the last
    increment and the end line. A write that fails is retried at the next poll (the increment
    keeps growing, nothing is lost) and said by :meth:`check`.

    Parameters
    ----------
    path : Path
        The participant's ledger file (:func:`ledger_path`); its folder is created (mode 0700).
    session : str
        The session id.
    modality : str
        tdcs | tacs | tms | pulse_train.
    read_totals : callable
        ``() -> DoseTotals``: this session's totals so far.
    protocol : str
        The protocol's name, for :func:`history`.
    stimulator : str
        The stimulator kind (simulated, tes, magstim), for the start line.
    poll_s, min_interval_s : float
        How often the totals are read, and the least time between two dose lines, s.
    clock : callable
        Wall clock, s since the epoch.
    """

    def __init__(self, path: Path, session: str, modality: str,
                 read_totals: Callable[[], DoseTotals], protocol: str = "",
                 stimulator: str = "", poll_s: float = 0.25, min_interval_s: float = 0.5,
                 clock: Callable[[], float] = _time.time) -> None:  # fmt: skip
        if not session:
            raise ValueError(f"session must be a non-empty session id, got {session!r}.")
        if not 0 < poll_s <= min_interval_s:
            raise ValueError(f"poll_s must be within (0, min_interval_s = {min_interval_s}] s, "
                             f"got {poll_s!r}.")  # fmt: skip
        self.path, self.session, self.modality = Path(path), session, modality
        self.read_totals, self.clock = read_totals, clock
        self.poll_s, self.min_interval_s = poll_s, min_interval_s
        self._start = {"protocol": protocol, "host": socket.gethostname(),
                       "stimulator": stimulator}  # fmt: skip
        self.written = DoseTotals()
        """The session totals the ledger holds so far."""
        self.error: str | None = None
        """Why the latest write failed; None once one succeeds."""
        self._fd: int | None = None
        self._last_write = -float("inf")
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, background: bool = True) -> LedgerWriter:
        """Open the ledger, write the start line, start the thread (``background`` False: no
        thread, the caller calls :meth:`flush`); returns self."""
        if self._fd is not None:
            raise RuntimeError("the ledger writer is already started; close() it first.")
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:  # one session per participant at a time: its budget was read for it alone
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            self._fd = None
            raise DoseLimitError(
                f"another session of this participant is running now (it holds {self.path}); "
                "one participant has one session at a time, so that each starts from the "
                "other's dose: end that session first"
            ) from None
        try:
            if os.fstat(self._fd).st_size:
                with self.path.open("rb") as file:
                    file.seek(-1, os.SEEK_END)
                    if file.read(1) != b"\n":  # a line torn by a crash stays its own line
                        os.write(self._fd, b"\n")
            self._append("start", **self._start)
        except OSError:
            os.close(self._fd)
            self._fd = None
            raise
        if background:
            self._thread = threading.Thread(target=self._run, name="dose-ledger", daemon=True)
            self._thread.start()
        return self

    def check(self) -> str | None:
        """What is wrong with the ledger now (a failing write), or None (an engine monitor)."""
        return self.error

    def _append(self, kind: str, **fields) -> None:
        record = {"type": kind, "session": self.session, "time": self.clock(),
                  "modality": self.modality, **fields}  # fmt: skip
        data = (json.dumps(record, separators=(",", ":")) + "\n").encode()
        while data:
            data = data[os.write(self._fd, data) :]
        os.fsync(self._fd)

    def flush(self, force: bool = False) -> bool:
        """Append the increment since the last line if anything changed (and, unless
        ``force``, ``min_interval_s`` has passed); True if a line was written."""
        with self._lock:
            if self._fd is None:
                raise RuntimeError("the ledger writer is not started; call start() first.")
            totals = self.read_totals()
            due = force or self.clock() - self._last_write >= self.min_interval_s
            if totals == self.written or not due:
                return False
            delta = DoseTotals(
                max(totals.on_time_s - self.written.on_time_s, 0.0),
                max(totals.charge_mc - self.written.charge_mc, 0.0),
                max(totals.pulses - self.written.pulses, 0),
            )
            self._append("dose", on_time_s=delta.on_time_s, charge_mc=delta.charge_mc,
                         pulses=delta.pulses)  # fmt: skip
            self.written, self._last_write = totals, self.clock()
            return True

    def _run(self) -> None:
        next_poll = _time.monotonic()
        while not self._stop.is_set():
            try:
                self.flush()
                self.error = None
            except Exception as err:  # retried at the next poll; check() reports it
                self.error = f"dose ledger {self.path}: cannot write ({err}); retrying"
            next_poll += self.poll_s
            self._stop.wait(max(next_poll - _time.monotonic(), 0.0))

    def close(self) -> None:
        """Stop the thread, append the last increment and the end line, close the file.

        Raises ``OSError`` when the last lines cannot be written (the session must say so:
        its dose is then missing from the ledger). Closing twice does nothing.
        """
        if self._fd is None:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        try:
            self.flush(force=True)
            self._append("end")
        finally:
            with self._lock:
                os.close(self._fd)
                self._fd = None


@dataclass(frozen=True)
class DoseSession:
    """A session's place in the dose ledger: the participant's prior totals, and the writer
    that records the session (:func:`open_dose`)."""

    participant: str
    session: str
    modality: str
    path: Path
    """The participant's ledger file."""
    prior: DoseTotals
    """The participant's totals over the 24 h before the session (``Governor(prior=...)``)."""
    protocol: str = ""
    stimulator: str = ""

    def start_writer(self, read_totals: Callable[[], DoseTotals], **kwargs) -> LedgerWriter:
        """A started :class:`LedgerWriter` of this session (``read_totals``: the governor's
        ``session_totals``, e.g. ``lambda: engine.governor.session_totals``)."""
        return LedgerWriter(self.path, self.session, self.modality, read_totals, self.protocol,
                            self.stimulator, **kwargs).start()  # fmt: skip


def open_dose(protocol: Protocol, session_id: str, site: SiteLimits | None = None,
              now: float | None = None,
              directory: str | Path | None = None) -> DoseSession | None:  # fmt: skip
    """Where a session's dose goes, and how much the participant already had today.

    Parameters
    ----------
    protocol : Protocol
        The session's protocol (``session.participant``, the stimulator and its limits).
    session_id : str
        An id unique to the session (the output folder's name).
    site : SiteLimits | None
        The site layer (None: the one in force, :func:`bci.safety.site.load_site_limits`).
    now : float | None
        Wall time, s since the epoch (default now).
    directory : str | Path | None
        The ledger folder (default :func:`ledger_dir`).

    Returns
    -------
    DoseSession | None
        None when the protocol names no participant (a simulated stimulator: no ledger).

    Raises
    ------
    DoseLimitError
        When the participant's totals over the last 24 h leave no budget to stimulate at all
        (the message says when it frees up).
    """
    participant = protocol.session.participant
    stimulator = protocol.stimulator
    if not participant:
        if stimulator.kind != "simulated":
            raise ValueError(f"session.participant is required with a {stimulator.kind} "
                             "stimulator: set it to the participant's id.")  # fmt: skip
        return None
    settings = stimulator.governor_settings(protocol.safety.stop_ramp_s, site=site)
    now = _time.time() if now is None else now
    lines = dose_lines(participant, stimulator.modality, now, DAY_S, directory)
    prior = sum((delta for _, delta in lines), DoseTotals())
    refuse_if_exhausted(settings, prior, participant, frees_at(settings, lines))
    return DoseSession(participant, session_id, stimulator.modality,
                       ledger_path(participant, directory), prior, protocol.session.name,
                       stimulator.kind)  # fmt: skip
