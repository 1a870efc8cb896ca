"""Supervisor threads: they watch what the session needs beside the loop (the recorder and its
disk, the source's stream on the network) and post facts to the engine's inbox. They never
touch a device, and the loop never waits on them: it reads their facts with the operator's
commands, once per iteration.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

HEADROOM_S = 30.0
"""Stimulation stops when the recording's disk holds less than this many seconds at the rate
the session writes, s."""

_CHECK_EVERY_S = 0.2
"""How often the supervisor looks, s (a recorder killed is seen within this)."""

STILL_S = 5.0
"""A recording whose file has not grown for this long has stopped, s (LabRecorder writes every
~0.5 s while any stream flows)."""


class Supervisor:
    """Runs ``name → check()`` every :data:`_CHECK_EVERY_S` on its own thread; the first problem
    a check reports is posted once to the inbox as a ``monitor`` fact and said on the terminal.

    Parameters
    ----------
    inbox : ControlInbox
        The engine's inbox (:meth:`ControlInbox.post_fact`).
    consequence : dict
        ``name → text``: what the session does about that check's problem, appended to the
        message (``"stimulation ramps to zero and stays there"``).
    """

    def __init__(self, inbox, consequence: dict[str, str] | None = None) -> None:
        self.inbox = inbox
        self.checks: dict[str, Callable[[], str | None]] = {}
        self.problems: dict[str, str] = {}
        """What each check reported (so that each is reported once; the engine keeps its own
        copy as the facts arrive, :attr:`Engine.monitor_problems`)."""
        self.consequence = dict(consequence or {})
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="supervisor", daemon=True)

    def start(self) -> Supervisor:
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            self._watch()
        except BaseException as err:  # nothing watches any more: stimulation must not go on
            self._report("supervisor", f"the supervisor thread failed ({type(err).__name__}: "
                         f"{err}): the recorder, its disk and the dose ledger are not watched")

    def _watch(self) -> None:
        while not self._stop.wait(_CHECK_EVERY_S):
            for name, check in list(self.checks.items()):
                if name in self.problems:
                    continue
                try:
                    problem = check()
                except Exception as err:  # a check that fails is itself the problem
                    problem = f"the {name} check failed: {type(err).__name__}: {err}"
                if problem:
                    self._report(name, problem)

    def _report(self, name: str, problem: str) -> None:
        self.problems[name] = problem
        self.inbox.post_fact("monitor", process=name, error=problem)  # first: it acts
        then = self.consequence.get(name)
        with contextlib.suppress(OSError, ValueError):  # the terminal may be gone (SIGHUP)
            print(f"\nWARNING: {problem}" + (f". {then}" if then else ""), file=sys.stderr,
                  flush=True)  # fmt: skip

    def stop(self) -> None:
        """Stop watching (idempotent)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)


class RecordingCheck:
    """The recorder's health: LabRecorder alive, and room on its disk for at least
    :data:`HEADROOM_S` at the rate this session's file grows.

    Parameters
    ----------
    recorder : Recorder
        The session's recorder (``problem()``, ``size_bytes``, ``path``).
    headroom_s : float
        Seconds of recording the disk must still hold, s.
    still_s : float
        A file that has not grown for this long while the input flows has stopped, s.
    flowing : callable
        ``flowing() -> bool``: whether the session's input flows now (while the source is
        silent the file may not grow; that is the watchdog's business, not the recorder's).
    """

    def __init__(self, recorder, headroom_s: float = HEADROOM_S, still_s: float = STILL_S,
                 flowing: Callable[[], bool] = lambda: True) -> None:  # fmt: skip
        self.recorder, self.headroom_s, self.still_s = recorder, headroom_s, still_s
        self.flowing = flowing
        self._sizes: deque[tuple[float, int]] = deque(maxlen=64)
        self._grew: float | None = None
        """When the file last grew (monotonic clock, s); None before it first did."""

    def rate_bytes_per_s(self) -> float:
        """How fast the file grew over the last ~10 s (0 until 1 s of growth is known)."""
        if len(self._sizes) < 2:
            return 0.0
        (t0, s0), (t1, s1) = self._sizes[0], self._sizes[-1]
        return (s1 - s0) / (t1 - t0) if t1 - t0 >= 1.0 else 0.0

    def __call__(self) -> str | None:
        problem = self.recorder.problem()
        if problem:
            return problem
        now = time.monotonic()
        size = self.recorder.size_bytes
        if not self._sizes or size > self._sizes[-1][1]:
            self._grew = now if self._sizes else None
        elif self._grew is not None and not self.flowing():
            self._grew = now  # counts from when the input flows again
        self._sizes.append((now, size))
        if self._grew is not None and now - self._grew > self.still_s:
            return (f"LabRecorder has written nothing to {self.recorder.path} for "
                    f"{now - self._grew:.0f} s although it runs: nothing from now on is "
                    "recorded; stop the session and check the recorder")  # fmt: skip
        while now - self._sizes[0][0] > 10.0 and len(self._sizes) > 2:
            self._sizes.popleft()
        rate = self.rate_bytes_per_s()
        path = Path(self.recorder.path)
        free = shutil.disk_usage(path.parent).free
        if rate > 0 and free < rate * self.headroom_s:
            return (f"the disk holding {path} has {free / 1e6:.1f} MB free: {free / rate:.0f} s "
                    f"at the {rate / 1e3:.0f} kB/s this session records, less than the "
                    f"{self.headroom_s:g} s it must hold; free space on it or record elsewhere "
                    "(recording.filename)")  # fmt: skip
        return None


class SourceWatch:
    """While the EEG input stalls, looks for its stream on the network (a resolve takes up to a
    second, so it runs here, not in the loop). liblsl never reconnects an inlet to a source that
    comes back under the same name and source id with another channel count, rate or format,
    so without this the stall would never say why it lasts.

    Use it as a check of :class:`Supervisor` (``supervisor.checks["source"] = watch``).

    Parameters
    ----------
    stalled : callable
        ``stalled() -> bool``: whether the engine's input is stalled now.
    inlet : Inlet
        The session's EEG inlet (its layout is what the session reads).
    every_s : float
        How often to look while stalled, s.
    """

    def __init__(self, stalled: Callable[[], bool], inlet, every_s: float = 1.0) -> None:
        self._stalled, self._inlet, self._every_s = stalled, inlet, every_s
        self._next = 0.0

    def __call__(self) -> str | None:
        import pylsl

        now = time.monotonic()
        if now < self._next or not self._stalled():
            return None
        self._next = now + self._every_s
        info = self._inlet.info
        wanted = (info.channel_count(), info.nominal_srate(), info.channel_format())
        for found in pylsl.resolve_byprop("name", info.name(), 0, min(self._every_s, 0.5)):
            layout = (found.channel_count(), found.nominal_srate(), found.channel_format())
            if found.source_id() == info.source_id() and layout != wanted:
                return (
                    f"{info.name()} is back with {_layout(layout)} instead of "
                    f"{_layout(wanted)}: this session cannot read it, and stimulation "
                    "holds at zero. Stop the session and start a new one on the new stream."
                )  # fmt: skip
        return None


_FORMATS = {1: "float32", 2: "double64", 3: "string", 4: "int32", 5: "int16", 6: "int8",
            7: "int64"}  # fmt: skip
"""LSL channel formats by their liblsl number."""


def _layout(layout: tuple[int, float, int]) -> str:
    channels, rate, fmt = layout
    return f"{channels} channels at {rate:g} Hz ({_FORMATS.get(fmt, fmt)})"
