"""`bci dose PARTICIPANT`: each session, and the last 24 h against the daily limits in force."""

import time

import pytest

from bci.cli import main
from bci.safety.dose import DAY_S, DoseTotals
from bci.safety.ledger import LEDGER_DIR_ENV, LedgerWriter, ledger_path
from bci.safety.site import SITE_LIMITS_ENV


def record_session(folder, participant, session, modality, dose, wall):
    w = LedgerWriter(ledger_path(participant, folder), session, modality, lambda: dose,
                     protocol="mi_tdcs", clock=lambda: wall)  # fmt: skip
    w.start()
    w.close()


@pytest.fixture
def ledger(tmp_path, monkeypatch):
    monkeypatch.setenv(LEDGER_DIR_ENV, str(tmp_path))
    now = time.time()
    record_session(tmp_path, "P017", "old", "tdcs", DoseTotals(1200.0, 2400.0, 0), now - 2 * DAY_S)
    record_session(tmp_path, "P017", "today", "tdcs", DoseTotals(600.0, 900.0, 0), now - 3600)
    record_session(tmp_path, "P017", "tms", "tms", DoseTotals(2.0, 0.0, 120), now - 600)
    return tmp_path


def test_bci_dose_shows_sessions_and_the_last_24_hours(ledger, capsys):
    assert main(["dose", "P017"]) == 0
    out = capsys.readouterr().out
    assert f"dose ledger of P017: {ledger / 'P017.jsonl'}" in out
    assert "site limits: none" in out and "sessions (3):" in out
    rows = [line for line in out.splitlines() if "mi_tdcs" in line]
    assert len(rows) == 3 and "charge   2400.0 mC" in rows[0] and "pulses   120" in rows[2]
    tdcs = out[out.index("  tdcs:"):]
    # only the session within 24 h counts: 600 s of the tDCS hard ceiling's 2400 s
    assert "on-time      600.0 s  of 2400.0 s (tdcs hard ceiling); left 1800.0 s" in tdcs
    assert "charge       900.0 mC of 7200.0 mC (tdcs hard ceiling); left 6300.0 mC" in tdcs
    assert "pulses         120    of no limit (tms hard ceiling)" in out


def test_bci_dose_uses_the_site_daily_limits(ledger, tmp_path, monkeypatch, capsys):
    site = tmp_path / "site.toml"
    site.write_text("[tdcs]\nmax_daily_s = 1200\n[tms]\nmax_daily_pulses = 200\n")
    monkeypatch.setenv(SITE_LIMITS_ENV, str(site))
    assert main(["dose", "P017"]) == 0
    out = capsys.readouterr().out
    assert f"site limits: {site}" in out
    assert "600.0 s  of 1200.0 s (site limit); left 600.0 s" in out
    assert "120    of 200 (site limit); left 80" in out


def test_bci_dose_refuses_an_unknown_or_invalid_participant(ledger, capsys):
    assert main(["dose", "P018"]) == 2
    err = capsys.readouterr().err
    assert f"no dose ledger for participant 'P018' in {ledger} (participants there: P017)" in err
    assert main(["dose", "../P017"]) == 2
    assert "participant must be 1-64 letters" in capsys.readouterr().err


def test_bci_dose_has_help_for_operators(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["dose", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "usage: bci dose" in out and "last 24 hours" in out and "daily limits" in out
