"""What the fault tests share: sources to break, the events a session publishes, and the safety
assertions every fault must pass (nothing above the protocol's limits, a ramp to zero that never
rises, data recorded before the fault kept).

Sessions run on a thread with :class:`tests.engine.sessions.SessionThread` over real
LSL on loopback; every source is a separate process, as an amplifier would be.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import threading

import pylsl

from bci.acquire import MarkerInlet, StreamQuery, resolve_streams
from bci.engine.control import send_command
from bci.streams import stream_names
from tests.conftest import wait_for
from tests.engine.sessions import REPO_ROOT, SessionThread, session_overrides

__all__ = ["REPO_ROOT", "SessionThread", "session_overrides"]

BETA_FAST = [
    "source.kind=lsl", "source.fnirs=false",
    "blocks.0.duration_s=3", "blocks.1.duration_s=60", "blocks.2.duration_s=1",
    # low thresholds: resting beta crosses them within a second or two, so the pulse train is
    # on (2 mA) when the fault comes, and "ramps to zero" means something
    "controller.lower=0.8", "controller.upper=1.1", "controller.blanking_s=0.5",
]  # fmt: skip
"""beta_adaptive (biomarker → pulse train, 2 mA, 4 mA/s, 1 kHz EEG) over an external source, with
a closed loop the test ends."""

BETA_VIRTUAL = [item for item in BETA_FAST if item != "source.kind=lsl"]
"""The same, on the virtual subject the session starts itself."""

SLACK_S = 0.05
"""Loop and scheduling slack on a 2-core machine, s."""


# --- sources ---------------------------------------------------------------------------------
class SourceProcess:
    """A source process publishing the session's EEG; ``kill()`` is the fault, not a cleanup."""

    def __init__(self, command: list[str]) -> None:
        self.process = subprocess.Popen(
            command, cwd=REPO_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, text=True, start_new_session=True,
        )  # fmt: skip

    @classmethod
    def simulate(cls, prefix: str, channels: int = 32, seed: int = 0) -> SourceProcess:
        """``bci simulate``: the virtual subject, EEG only (1 kHz, stream id from the seed)."""
        return cls([sys.executable, "-m", "bci", "simulate", "--prefix", prefix, "--seed",
                    str(seed), "--channels", str(channels), "--srate", "1000", "--no-fnirs",
                    "--no-listen", "--stop-on-stdin-eof"])  # fmt: skip

    @classmethod
    def faulty(cls, prefix: str, seed: int = 0) -> SourceProcess:
        """:mod:`tests.faults.faulty_source`: the same stream, corrupted on request."""
        return cls([sys.executable, "-m", "tests.faults.faulty_source", "--prefix", prefix,
                    "--seed", str(seed)])  # fmt: skip

    def inject(self, fault: str, value: float) -> float:
        """Ask a faulty source for ``fault`` (jump, nan, inf); returns the LSL timestamp of the
        first sample it affects, once the source has pushed it."""
        self.process.stdin.write(f"{fault} {value}\n")
        self.process.stdin.flush()
        reply = self.process.stdout.readline().split()
        assert reply[:2] == ["ok", fault], reply
        return float(reply[3])

    def kill(self) -> None:
        """SIGKILL: the source dies without closing anything."""
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def close(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(OSError):
                self.process.stdin.close()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextlib.contextmanager
def sources():
    """Start sources with ``started.append(SourceProcess...)``; all are gone afterwards."""
    started: list[SourceProcess] = []
    try:
        yield started
    finally:
        for source in started:
            source.close()


# --- the session's events, as another process on the network sees them ------------------------
class EventsListener:
    """Subscribes to a session's events outlet and keeps every event it publishes from now on."""

    def __init__(self, prefix: str) -> None:
        info = resolve_streams([StreamQuery(name=stream_names(prefix)["events"])], 10)[0]
        self._inlet = MarkerInlet(info).connect()
        self.connected_at = pylsl.local_clock()
        self.events: list[dict] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._pull, daemon=True)
        self._thread.start()

    def _pull(self) -> None:
        while not self._stop.is_set():
            for _, text in self._inlet.pull(timeout_s=0.05):
                self.events.append(json.loads(text))

    def close(self) -> None:
        """Stop listening, after what is still in flight has arrived."""
        wait_for(lambda: False, 0.3)
        self._stop.set()
        self._thread.join()
        self._inlet.disconnect()

    def assert_published(self, record_events: list[dict], kinds: set[str]) -> None:
        """Every event of ``kinds`` the engine recorded after we connected was published."""
        published = {(e["kind"], e["time"]) for e in self.events}
        wanted = [(e["kind"], e["time"]) for e in record_events
                  if e["kind"] in kinds and e["time"] > self.connected_at + SLACK_S]  # fmt: skip
        assert wanted, f"no {kinds} event recorded after the listener connected"
        missing = [w for w in wanted if w not in published]
        assert not missing, f"recorded but never published: {missing}"


# --- safety -----------------------------------------------------------------------------------
def kinds(events: list[dict]) -> list[str]:
    return [event["kind"] for event in events]


def first_event(events: list[dict], kind: str, after: float = -float("inf"), **match) -> dict:
    """The first event of ``kind`` after time ``after`` whose fields equal ``match``."""
    for event in events:
        if event["kind"] == kind and event["time"] > after:
            if all(event.get(key) == value for key, value in match.items()):
                return event
    raise AssertionError(f"no {kind} {match} event after {after:.3f}: {kinds(events)[-15:]}")


def assert_within_limits(commands: list, protocol) -> None:
    """No command above the protocol's amplitude limit, none faster than its slew limit."""
    limits = protocol.stimulator.limits
    assert commands, "nothing was written to the stimulator"
    assert max(abs(c.amplitude) for c in commands) <= limits.max_amplitude + 1e-9
    for before, after in itertools.pairwise(commands):
        dt = after.write_time - before.write_time
        step = abs(after.amplitude - before.amplitude)
        # the governor counts a silence as at most its longest step (≤ 0.15 s): never one jump
        assert step <= limits.max_slew_per_s * max(dt, 0.0) + 0.15 * limits.max_slew_per_s + 1e-6


def assert_ramps_down(commands: list, since: float, until: float, stop_ramp_s: float) -> None:
    """From ``since`` to ``until`` the output never rises, and is zero after the stop ramp."""
    held = [c for c in commands if since <= c.write_time < until]
    amplitudes = [abs(c.amplitude) for c in held]
    assert all(b <= a + 1e-9 for a, b in itertools.pairwise(amplitudes)), amplitudes
    late = [c.amplitude for c in held if c.write_time > since + stop_ramp_s + SLACK_S]
    assert all(a == 0.0 for a in late), late


def amplitude_at(commands: list, t: float) -> float:
    """The output the stimulator held at time ``t``."""
    before = [c.amplitude for c in commands if c.write_time <= t]
    return before[-1] if before else 0.0


def wait_for_pulses(session: SessionThread, timeout_s: float = 40.0) -> None:
    """Wait until the closed loop drives the stimulator above 0.5 (mA), so that a fault's
    "ramps to zero" means something."""
    engine = session.engine
    session.wait_until(
        lambda: engine.block is not None and engine.block.kind == "closed_loop"
        and engine.governor.amplitude > 0.5, timeout_s, "stimulation in the closed loop",
    )  # fmt: skip


def stop_session(session: SessionThread) -> None:
    """End the session as an operator does (the control channel's stop), and wait for it."""
    if session.alive:
        send_command(session.engine.control_address, {"cmd": "stop"})
    session.join(30)
