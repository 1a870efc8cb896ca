"""How `bci run` ends when something outside ends it: SIGTERM and SIGHUP ramp to a recorded zero
and write the summary; SIGKILL leaves a session folder whose summary says it is incomplete and
whose figures are at most 2 s old. Watched as an operator would: from outside the process, by
its files."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from bci.replay import load_recording
from bci.safety.ledger import participant_totals, read_ledger
from bci.streams import STIM_CHANNELS, STIM_ORIGINS
from tests.conftest import wait_for
from tests.faults.harness import (
    BETA_VIRTUAL,
    REPO_ROOT,
    SessionThread,
    session_overrides,
    stop_session,
)


def _start_run(prefix: str, out: Path, *extra: str) -> subprocess.Popen:
    overrides = session_overrides(prefix, *BETA_VIRTUAL, *extra, record=True)
    command = [sys.executable, "-m", "bci", "run", "beta_adaptive", "--out", str(out)]
    for item in overrides:
        command += ["--set", item]
    return subprocess.Popen(command, cwd=REPO_ROOT, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # fmt: skip


def _summary(out: Path) -> dict | None:
    try:
        return json.loads((out / "summary.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None  # not written yet; a half-written one would fail the test below instead


def _stimulating(out: Path) -> bool:
    summary = _summary(out)
    return bool(summary and not summary["complete"] and summary["block"]
                and summary["block"]["kind"] == "closed_loop"
                and summary["stimulation"]["amplitude"] > 0.5)  # fmt: skip


def _wait_stimulating(process: subprocess.Popen, out: Path) -> None:
    if not wait_for(lambda: _stimulating(out) or process.poll() is not None, 90, poll_s=0.1):
        process.kill()
    assert process.poll() is None, process.communicate()[1][-3000:]
    assert _stimulating(out), "the session never stimulated"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_terminating_signal_ramps_to_a_recorded_zero_and_writes_the_summary(
    signum, unique_name, tmp_path
):
    out = tmp_path / "session"
    process = _start_run(unique_name, out)
    try:
        _wait_stimulating(process, out)
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr[-3000:]
    assert f"{signum.name}: ending the session" in stderr
    summary = _summary(out)
    assert summary["complete"] is True and summary["reason"] is None
    assert summary["events"]["stop"] == 1 and summary["stimulation"]["estop"] is None
    # the recording ends on the zero, and the ramp before it never rose
    stim = load_recording(summary["recording"]["path"]).stream(name=f"{unique_name}-Stim")
    amplitude = stim.data[:, STIM_CHANNELS.index("amplitude")]
    origins = stim.data[:, STIM_CHANNELS.index("origin")].astype(int)
    assert amplitude[-1] == 0.0 and STIM_ORIGINS[origins[-1]] == "end"
    ending = next(i for i in range(len(origins) - 1, -1, -1) if STIM_ORIGINS[origins[i]] not in
                  ("hold", "end"))  # fmt: skip
    assert all(b <= a + 1e-9 for a, b in itertools.pairwise(amplitude[ending:]))
    written = stim.data[:, STIM_CHANNELS.index("write_time")]
    assert written[-1] - written[ending] <= 0.5 + 0.2  # beta_adaptive: stop_ramp_s 0.5 s


def test_a_killed_session_leaves_an_incomplete_summary_at_most_2_s_old(unique_name, tmp_path):
    out = tmp_path / "session"
    process = _start_run(unique_name, out)
    try:
        _wait_stimulating(process, out)
        # a dose that has grown over a few of the summary's rewrites
        since = _summary(out)["elapsed_s"]
        assert wait_for(lambda: (_summary(out) or {}).get("elapsed_s", 0) > since + 2.5, 10,
                        poll_s=0.1)  # fmt: skip
        killed = datetime.now().astimezone()
        os.killpg(process.pid, signal.SIGKILL)  # the engine and its children, no goodbye
        process.wait(10)
    finally:
        if process.poll() is None:
            process.kill()
    summary = _summary(out)
    assert summary is not None, "summary.json does not parse after a SIGKILL"
    assert summary["complete"] is False and summary["reason"].startswith("running")
    updated = datetime.fromisoformat(summary["updated"])
    assert (killed - updated).total_seconds() <= 2.0
    assert summary["stimulation"]["charge_mC"] > 0 and summary["stimulation"]["on_time_s"] > 0.5
    # the participant's ledger lost at most 1 s of dose: the summary's figures, from before the
    # kill, are a lower bound of what was delivered
    assert read_ledger(unique_name)[0]["type"] == "start"
    total = participant_totals(unique_name, "pulse_train")
    assert total.on_time_s >= summary["stimulation"]["on_time_s"] - 1.0
    assert total.charge_mc >= summary["stimulation"]["charge_mC"] - 1.0 * 2.0  # ≤ 2 mA
    # the protocol that ran, overrides applied, is there from the start and loads as it is
    resolved = (out / "protocol.toml").read_text()
    assert f"session.prefix={unique_name}" in resolved and "[stimulator.limits]" in resolved
    from bci.protocol import load_protocol

    protocol, _ = load_protocol(str(out / "protocol.toml"))
    assert protocol.session.prefix == unique_name and protocol.source.kind == "virtual"


def test_a_folder_holding_a_session_is_refused(unique_name, tmp_path):
    out = tmp_path / "session"
    out.mkdir()
    (out / "summary.json").write_text("{}")
    overrides = session_overrides(unique_name, *BETA_VIRTUAL)
    command = [sys.executable, "-m", "bci", "run", "beta_adaptive", "--out", str(out)]
    for item in overrides:
        command += ["--set", item]
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "already holds a session (summary.json)" in done.stderr
    assert (out / "summary.json").read_text() == "{}"


def test_a_second_session_starts_from_the_first_ones_dose_and_stops_at_the_daily_limit(
    unique_name, tmp_path, monkeypatch
):
    """Stop then Start gives no fresh budget: the participant's ledger carries the first
    session's dose into the second, whose governor latches at the site's daily limit."""
    site = tmp_path / "site-limits.toml"
    site.write_text("[pulse_train]\nmax_daily_s = 14\n")
    monkeypatch.setenv("NEUROLOOP_SITE_LIMITS", str(site))
    first = SessionThread("beta_adaptive", session_overrides(unique_name, *BETA_VIRTUAL),
                          tmp_path / "first").start()  # fmt: skip
    first.wait_until(lambda: first.engine.governor.state.on_time_s > 4, 40, "4 s of stimulation")
    stop_session(first)
    assert first.error is None, first.error
    had = first.summary["stimulation"]["on_time_s"]
    second = SessionThread("beta_adaptive", session_overrides(unique_name, *BETA_VIRTUAL),
                           tmp_path / "second").start()  # fmt: skip
    try:
        governor = second.engine.governor
        assert abs(governor.prior.on_time_s - had) < 1.5  # the ledger's last second at most
        second.wait_until(lambda: governor.state.latched is not None, 40, "the daily limit")
        assert "daily limit" in governor.state.latched
        # the two sessions together stay within the day's 14 s (the reserve covers the ramp)
        assert governor.prior.on_time_s + governor.state.on_time_s <= 14.0
    finally:
        stop_session(second)
    assert second.error is None, second.error
    assert second.summary["dose_before"]["on_time_s"] == governor.prior.on_time_s
