"""The dose ledger: append-only lines flushed to the disk, a rolling 24 h window, torn lines
skipped, and a second session starting from the first one's dose."""

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time

import pytest

from bci.protocol import load_protocol
from bci.safety.dose import DAY_S, DoseLimitError, DoseTotals
from bci.safety.governor import Governor
from bci.safety.ledger import (
    LEDGER_DIR_ENV,
    LedgerWarning,
    LedgerWriter,
    check_participant,
    history,
    known_participants,
    ledger_dir,
    ledger_path,
    open_dose,
    participant_totals,
    read_ledger,
)
from tests.conftest import wait_for


class Totals:
    """A governor's session totals, as the writer thread reads them."""

    def __init__(self) -> None:
        self.value = DoseTotals()

    def __call__(self) -> DoseTotals:
        return self.value


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def writer(tmp_path, totals, participant="P017", session="s1", **kw) -> LedgerWriter:
    return LedgerWriter(ledger_path(participant, tmp_path), session, "tdcs", totals,
                        protocol="mi_tdcs", stimulator="tes", **kw)  # fmt: skip


@pytest.mark.parametrize("name", ["P017", "a", "sub-01_ses.2", "X" * 64])
def test_valid_participant_ids(name):
    assert check_participant(name) == name


@pytest.mark.parametrize("name", ["", "../etc", "-x", "a b", "X" * 65, "P/1", ".hidden", 17])
def test_invalid_participant_ids_say_what_is_allowed(name):
    with pytest.raises(ValueError, match=r"participant must be 1-64 letters, digits.*got"):
        check_participant(name)


def test_the_ledger_folder_comes_from_the_environment(tmp_path, monkeypatch):
    assert ledger_dir() == ledger_dir()  # the tests' own folder (conftest)
    monkeypatch.setenv(LEDGER_DIR_ENV, str(tmp_path / "l"))
    assert ledger_dir() == tmp_path / "l"
    monkeypatch.delenv(LEDGER_DIR_ENV)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert ledger_dir() == tmp_path / "xdg" / "neuroloop" / "ledger"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert ledger_dir() == tmp_path / "home" / ".local" / "share" / "neuroloop" / "ledger"


def test_lines_are_appended_and_each_is_flushed_to_the_disk(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    totals, clock = Totals(), FakeClock()
    w = writer(tmp_path / "ledger", totals, clock=clock).start(background=False)
    folder = tmp_path / "ledger"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(ledger_path("P017", folder).stat().st_mode) == 0o600
    assert not w.flush()  # nothing changed
    totals.value = DoseTotals(1.0, 1.5, 0)
    clock.now += 1.0
    assert w.flush()
    totals.value = DoseTotals(1.4, 2.0, 0)
    clock.now += 0.25
    assert not w.flush()  # at most two lines a second
    clock.now += 0.25
    assert w.flush()
    totals.value = DoseTotals(1.5, 2.1, 0)
    w.close()
    w.close()  # twice does nothing
    records = read_ledger("P017", folder)
    assert [r["type"] for r in records] == ["start", "dose", "dose", "dose", "end"]
    assert len(synced) == 5  # one fsync a line
    start = records[0]
    assert (start["session"], start["modality"], start["protocol"], start["stimulator"]) == (
        "s1", "tdcs", "mi_tdcs", "tes",
    )  # fmt: skip
    assert start["host"] and start["time"] == 1_700_000_000.0
    assert sum(r["on_time_s"] for r in records[1:4]) == pytest.approx(1.5)
    assert sum(r["charge_mc"] for r in records[1:4]) == pytest.approx(2.1)
    with pytest.raises(RuntimeError, match="not started"):
        w.flush()


def test_the_thread_writes_what_the_governor_counts(tmp_path):
    gov = Governor(load_protocol("demo")[0].stimulator.governor_settings())
    w = writer(tmp_path, lambda: gov.session_totals, poll_s=0.02, min_interval_s=0.05).start()
    t = 0.0
    while t < 5.0:  # governor time (the ledger's lines are stamped with the wall clock)
        gov.request(1.0, t)
        t += 0.1
    assert wait_for(lambda: participant_totals("P017", "tdcs", directory=tmp_path)
                    == gov.session_totals, 5.0)  # fmt: skip
    w.close()
    assert participant_totals("P017", "tdcs", directory=tmp_path) == gov.session_totals
    assert w.check() is None


def test_the_rolling_window_counts_the_last_24_hours_per_modality(tmp_path):
    clock = FakeClock(1_000_000.0)
    totals = Totals()
    w = writer(tmp_path, totals, clock=clock).start(background=False)
    totals.value = DoseTotals(100.0, 200.0, 0)
    w.flush(force=True)  # at 1_000_000
    clock.now += 3600.0
    totals.value = DoseTotals(150.0, 300.0, 0)
    w.flush(force=True)  # at 1_003_600
    w.close()
    at = lambda now: participant_totals("P017", "tdcs", now=now, directory=tmp_path)  # noqa: E731
    assert at(1_003_600.0) == DoseTotals(150.0, 300.0, 0)
    assert at(1_000_000.0 + DAY_S + 1) == DoseTotals(50.0, 100.0, 0)
    assert at(1_003_600.0 + DAY_S + 1) == DoseTotals()
    assert participant_totals("P017", "tms", now=1_003_600.0, directory=tmp_path) == DoseTotals()
    assert participant_totals("P999", "tdcs", directory=tmp_path) == DoseTotals()


def test_a_torn_last_line_is_skipped_said_once_and_healed_by_the_next_session(tmp_path):
    totals = Totals()
    w = writer(tmp_path, totals).start()
    totals.value = DoseTotals(10.0, 20.0, 0)
    w.close()
    path = ledger_path("P017", tmp_path)
    with path.open("a") as file:
        file.write('{"type":"dose","session":"s1","time":1e9,"modality":"tdcs","on_t')
    with pytest.warns(LedgerWarning, match=r"skipped 1 unreadable line\(s\)") as caught:
        assert participant_totals("P017", "tdcs", directory=tmp_path) == DoseTotals(10, 20, 0)
    assert len(caught) == 1
    totals = Totals()
    second = writer(tmp_path, totals, session="s2").start()  # ends the torn line first
    totals.value = DoseTotals(1.0, 2.0, 0)
    second.close()
    with pytest.warns(LedgerWarning):
        records = read_ledger("P017", tmp_path)
    assert [r["session"] for r in records if r["type"] == "start"] == ["s1", "s2"]
    with pytest.warns(LedgerWarning):
        assert participant_totals("P017", "tdcs", directory=tmp_path) == DoseTotals(11, 22, 0)


def test_a_sigkill_loses_at_most_about_a_second(tmp_path):
    """A writer process killed mid-session: what it wrote is whole, and short of the dose it
    counted by at most one write interval (plus one poll)."""
    script = textwrap.dedent(f"""
        import time
        from bci.safety.dose import DoseTotals
        from bci.safety.ledger import LedgerWriter, ledger_path
        t0 = time.time()
        LedgerWriter(ledger_path("P017", {str(tmp_path)!r}), "killed", "tdcs",
                     lambda: DoseTotals(time.time() - t0, 0.0, 0), poll_s=0.1,
                     min_interval_s=0.2).start()
        time.sleep(60)
    """)  # fmt: skip
    child = subprocess.Popen([sys.executable, "-c", script], cwd=os.getcwd())
    try:
        count = lambda: sum(r["type"] == "dose" for r in read_ledger("P017", tmp_path))  # noqa: E731
        assert wait_for(lambda: count() >= 4, 30.0, poll_s=0.02), "no dose lines"
        started = read_ledger("P017", tmp_path)[0]["time"]
    finally:
        killed_at = time.time()
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    counted = killed_at - started  # what the child's "governor" counted, give or take the kill
    kept = participant_totals("P017", "tdcs", now=started, directory=tmp_path).on_time_s
    # one write interval (0.2 s) and one poll (0.1 s) at most, and slack for a busy machine
    assert counted - 0.2 - 0.1 - 0.7 <= kept <= time.time() - started
    assert [r["type"] for r in read_ledger("P017", tmp_path)][-1] == "dose"  # no end line


def test_a_second_session_starts_from_the_first_ones_dose(tmp_path, monkeypatch):
    monkeypatch.setenv(LEDGER_DIR_ENV, str(tmp_path))
    overrides = ["stimulator.kind=tes", "session.participant=P042",
                 "stimulator.limits.max_daily_s=60"]  # fmt: skip
    protocol, _ = load_protocol("demo", overrides)
    first = open_dose(protocol, "session-1")
    assert first.prior == DoseTotals() and first.path == tmp_path / "P042.jsonl"
    gov = Governor(protocol.stimulator.governor_settings(), prior=first.prior)
    w = first.start_writer(lambda: gov.session_totals)
    for t in range(400):  # 40 s at 1 mA, then Stop
        gov.request(1.0, t / 10)
    w.close()
    second = open_dose(protocol, "session-2")
    assert second.prior == gov.session_totals and second.prior.on_time_s > 35
    gov2 = Governor(protocol.stimulator.governor_settings(), prior=second.prior)
    for t in range(400):
        gov2.request(1.0, t / 10)
    assert gov2.state.latched.startswith("daily limit reached for the participant")
    assert second.prior.on_time_s + gov2.state.on_time_s <= 60.0
    w2 = second.start_writer(lambda: gov2.session_totals)
    w2.close()
    with pytest.raises(DoseLimitError, match=r"participant 'P042'.*frees up at"):
        open_dose(protocol, "session-3")
    # a day later the budget is back
    assert open_dose(protocol, "session-4", now=time.time() + DAY_S + 60).prior == DoseTotals()
    sessions = history("P042", tmp_path)
    assert [s.session for s in sessions] == ["session-1", "session-2"]
    assert all(s.ended and s.protocol == "demo" for s in sessions)
    assert sessions[0].dose == gov.session_totals
    assert known_participants(tmp_path) == ["P042"]


def test_no_ledger_for_a_simulated_stimulator_without_a_participant():
    protocol, _ = load_protocol("demo")
    assert protocol.session.participant == ""
    assert open_dose(protocol, "s") is None


def test_a_ledger_line_is_one_json_object(tmp_path):
    totals = Totals()
    w = writer(tmp_path, totals).start()
    totals.value = DoseTotals(0.5, 0.25, 3)
    w.close()
    lines = ledger_path("P017", tmp_path).read_text().splitlines()
    dose = json.loads(lines[1])
    assert dose == {"type": "dose", "session": "s1", "time": dose["time"], "modality": "tdcs",
                    "on_time_s": 0.5, "charge_mc": 0.25, "pulses": 3}  # fmt: skip


def test_a_failing_write_is_reported_and_retried_without_losing_dose(tmp_path, monkeypatch):
    totals = Totals()
    w = writer(tmp_path, totals, poll_s=0.02, min_interval_s=0.02).start()
    real_write = os.write

    def full_disk(fd, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", full_disk)
    totals.value = DoseTotals(3.0, 4.0, 0)
    assert wait_for(lambda: w.check() is not None, 5.0)
    assert "cannot write" in w.check() and "No space left" in w.check()
    monkeypatch.setattr(os, "write", real_write)
    assert wait_for(lambda: w.check() is None and w.written == totals.value, 5.0)
    w.close()
    assert participant_totals("P017", "tdcs", directory=tmp_path) == DoseTotals(3.0, 4.0, 0)


def test_one_participant_has_one_session_at_a_time(tmp_path):
    path = tmp_path / "P017.jsonl"
    first = LedgerWriter(path, "s1", "tdcs", DoseTotals).start(background=False)
    try:
        with pytest.raises(DoseLimitError, match="another session of this participant"):
            LedgerWriter(path, "s2", "tdcs", DoseTotals).start(background=False)
    finally:
        first.close()
    LedgerWriter(path, "s3", "tdcs", DoseTotals).start(background=False).close()  # after it
