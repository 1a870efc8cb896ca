"""Faults of the EEG source: a NaN/inf burst, a clock that jumps, a source killed and restarted,
a source that comes back with another number of channels.

Each runs beta_adaptive (beta power → a 2 mA pulse train) on a real source process over LSL on
loopback, breaks the source once the pulse train is on, and checks that the output ramps to zero
and never rises while the input is unusable, that the engine records and publishes why, and that
the session then carries on (or holds safe) and ends cleanly.
"""

from __future__ import annotations

import numpy as np
import pylsl
import pytest

from bci.engine.control import send_command
from bci.engine.preprocess import channels_read
from bci.protocol import load_protocol
from bci.replay import load_recording
from bci.replay.offline import replay_offline
from bci.streams import SAMPLE_INDEX_CHANNEL
from tests.faults.harness import (
    BETA_FAST,
    SLACK_S,
    EventsListener,
    SessionThread,
    SourceProcess,
    amplitude_at,
    assert_ramps_down,
    assert_within_limits,
    first_event,
    kinds,
    session_overrides,
    sources,
    stop_session,
    wait_for_pulses,
)

pytestmark = pytest.mark.slow


def _run_until_recovered(session: SessionThread, after: float, timeout_s: float = 20) -> dict:
    """Wait until the watchdog lifts its trip after ``after`` and the output rises again."""
    events = session.engine.record.events
    session.wait_until(
        lambda: any(e["kind"] == "watchdog" and e["action"] == "recover" and e["time"] > after
                    for e in list(events)), timeout_s, "the watchdog's recovery",
    )  # fmt: skip
    recovered = first_event(list(events), "watchdog", after, action="recover")
    session.wait_until(lambda: session.engine.governor.amplitude > 0, 15, "output after recovery")
    return recovered


@pytest.mark.parametrize(("value", "record"), [("nan", True), ("inf", False)])
def test_a_nan_or_inf_burst_trips_to_zero_then_the_loop_recovers(value, record, unique_name,
                                                                 tmp_path):  # fmt: skip
    """200 ms of NaN (or inf) on every channel: the watchdog trips at once, the filters never
    read the burst (it would poison their state for good), they restart after it as after a
    gap, and the trip lifts at the first decision on clean data. The burst stays in the XDF,
    and the session replays offline to the same commands."""
    overrides = session_overrides(unique_name, *BETA_FAST, record=record)
    with sources() as started:
        started.append(SourceProcess.faulty(unique_name))
        session = SessionThread("beta_adaptive", overrides, tmp_path).start()
        listener = EventsListener(unique_name)
        try:
            wait_for_pulses(session)
            burst_at = started[0].inject(value, 0.2)
            recovered = _run_until_recovered(session, burst_at)
        finally:
            stop_session(session)
            listener.close()
    assert session.error is None, session.error
    record_, protocol = session.record, session.protocol
    events = record_.events
    trip = first_event(events, "watchdog", burst_at - SLACK_S, action="trip")
    # the burst reached the engine within a chunk or two; the trip came with it
    assert trip["reason"] == "non-finite input" and trip["time"] - burst_at < 0.2, trip
    gap = first_event(events, "gap", trip["time"] - SLACK_S)
    assert gap["reason"] == "non-finite input" and gap["missing"] == 200
    # (within a quarter sample: the inlet's clock correction moves timestamps by microseconds)
    assert gap["stop"] == pytest.approx(burst_at + 0.2, abs=0.25e-3)
    assert amplitude_at(record_.commands, trip["time"]) > 0  # it was on: "down" means something
    assert_ramps_down(record_.commands, trip["time"], recovered["time"],
                      protocol.safety.stop_ramp_s)  # fmt: skip
    assert_within_limits(record_.commands, protocol)
    # no decision read a non-finite value, and decisions came back after the burst
    assert np.isfinite(np.array([v for _, v in record_.biomarker])).all()
    assert any(t > gap["stop"] for t, _ in record_.biomarker)
    listener.assert_published(events, {"watchdog", "gap"})
    assert kinds(events)[-1] == "end" and record_.commands[-1].amplitude == 0.0
    if not record:
        return
    xdf = session.summary["recording"]["path"]
    eeg = next(s for s in load_recording(xdf).streams if s.name == session.engine.eeg.name)
    burst = (eeg.timestamps > burst_at - 0.5e-3) & (eeg.timestamps < gap["stop"] - 0.5e-3)
    assert burst.sum() == 200 and np.isnan(eeg.data[burst]).all()
    assert np.isfinite(eeg.data[~burst]).all()
    replayed = replay_offline(xdf, progress=False)
    assert replayed["reproduces"] and replayed["n_commands"] == replayed["recorded_commands"]
    assert replayed["stim_max_abs_diff"] <= 1e-6


def test_a_clock_jumping_forward_is_a_gap_the_loop_recovers_from(unique_name, tmp_path):
    """The source's timestamps leap 3 s ahead: to the engine that is 3 s of missing samples."""
    with sources() as started:
        started.append(SourceProcess.faulty(unique_name))
        session = SessionThread("beta_adaptive", session_overrides(unique_name, *BETA_FAST),
                                tmp_path).start()  # fmt: skip
        listener = EventsListener(unique_name)
        try:
            wait_for_pulses(session)
            jumped_to = started[0].inject("jump", 3.0)
            recovered = _run_until_recovered(session, jumped_to - 3.0)
        finally:
            stop_session(session)
            listener.close()
    assert session.error is None, session.error
    record, protocol = session.record, session.protocol
    gap = first_event(record.events, "gap")
    assert gap["stop"] == pytest.approx(jumped_to, abs=1e-3) and 2.9 < gap["duration_s"] < 3.1
    # no window straddles the jump: the decoder is silent for a window, so the watchdog trips
    trip = first_event(record.events, "watchdog", gap["time"] - SLACK_S, action="trip")
    assert trip["reason"] == "decoder silent" and trip["time"] < recovered["time"]
    assert trip["time"] - gap["time"] < session.engine.decision_timeout_s + SLACK_S
    assert_ramps_down(record.commands, trip["time"], recovered["time"], protocol.safety.stop_ramp_s)
    assert_within_limits(record.commands, protocol)
    assert [t for t, _ in record.biomarker if t > gap["stop"]], "no decision after the jump"
    listener.assert_published(record.events, {"gap", "watchdog"})
    assert kinds(record.events)[-1] == "end" and record.commands[-1].amplitude == 0.0


def test_a_clock_jumping_back_is_reported_and_the_loop_keeps_deciding(unique_name, tmp_path):
    """The source's timestamps go 2 s back: the samples are continuous, so the filters carry
    on; the decision schedule follows the new clock at once instead of waiting 2 s for it."""
    with sources() as started:
        started.append(SourceProcess.faulty(unique_name))
        session = SessionThread("beta_adaptive", session_overrides(unique_name, *BETA_FAST),
                                tmp_path).start()  # fmt: skip
        listener = EventsListener(unique_name)
        engine = session.engine
        try:
            wait_for_pulses(session)
            # (the block start is on the local clock: jump back no further than into the block)
            session.wait_until(lambda: engine.elapsed_s > 3 + 3, 20, "3 s of closed loop")
            jumped_to = started[0].inject("jump", -2.0)
            n_before = len(engine.record.biomarker)
            session.wait_until(lambda: len(engine.record.biomarker) > n_before + 20, 10,
                               "decisions after the jump")  # fmt: skip
        finally:
            stop_session(session)
            listener.close()
    assert session.error is None, session.error
    record, protocol = session.record, session.protocol
    jump = first_event(record.events, "clock_jump")
    assert jump["seconds"] == pytest.approx(-2.0, abs=0.01)
    # decided on every hop across the jump, so nothing tripped the watchdog
    decided_at = np.array(
        [c.write_time for c in record.commands if c.write_time > jump["time"] - 1]
    )
    assert np.diff(decided_at[decided_at < jump["time"] + 1]).max() < 0.25
    assert not [e for e in record.events if e["kind"] == "watchdog" and e["time"] > jump["time"]
                and e["time"] < jump["time"] + 1]  # fmt: skip
    # the first decisions on the new clock came within a hop or two of its first sample
    assert [c for c in record.commands if c.write_time > jump["time"]
            and jumped_to <= c.sample_time < jumped_to + 0.25]  # fmt: skip
    assert_within_limits(record.commands, protocol)
    listener.assert_published(record.events, {"clock_jump"})
    assert kinds(record.events)[-1] == "end" and record.commands[-1].amplitude == 0.0


def test_a_source_killed_and_restarted_stalls_trips_and_resumes(unique_name, tmp_path):
    """SIGKILL of the virtual subject's process, then the same streams again (same names, same
    source id): stall → watchdog trip → ramp to zero → resume → gap → recovery. The XDF keeps
    the EEG from before the kill and gets it again after."""
    with sources() as started:
        started.append(SourceProcess.simulate(unique_name))
        session = SessionThread(
            "beta_adaptive", session_overrides(unique_name, *BETA_FAST, record=True), tmp_path
        ).start()
        listener = EventsListener(unique_name)
        try:
            wait_for_pulses(session)
            killed = pylsl.local_clock()
            started[0].kill()
            session.wait_until(lambda: session.engine.governor.amplitude == 0, 5, "zero output")
            started.append(SourceProcess.simulate(unique_name))
            _run_until_recovered(session, killed)
        finally:
            stop_session(session)
            listener.close()
    assert session.error is None, session.error
    record, protocol = session.record, session.protocol
    stall = first_event(record.events, "stall", killed)
    assert stall["time"] - killed < 0.1 + SLACK_S  # watchdog_stall_s 50 ms, 10 ms chunks
    trip = first_event(record.events, "watchdog", killed, action="trip")
    assert trip["reason"] == "input stall" and trip["time"] == stall["time"]
    resume = first_event(record.events, "resume", stall["time"])
    gap = first_event(record.events, "gap", stall["time"])
    # (all three in one loop iteration when the first chunk after the restart fills a window)
    recovered = first_event(record.events, "watchdog", stall["time"], action="recover")
    assert resume["time"] <= gap["time"] <= recovered["time"] and gap["missing"] > 100
    assert amplitude_at(record.commands, stall["time"]) > 0
    assert_ramps_down(record.commands, stall["time"], recovered["time"],
                      protocol.safety.stop_ramp_s)  # fmt: skip
    assert_within_limits(record.commands, protocol)
    assert any(t > gap["stop"] for t, _ in record.biomarker), "no decision after the restart"
    listener.assert_published(record.events, {"stall", "watchdog", "resume", "gap"})
    # nothing acquired was lost: the file holds the EEG up to the kill and after the restart
    summary = session.summary
    eeg_name = session.engine.eeg.name
    assert summary["streams"][eeg_name]["gaps"] == 1 and summary["events"]["stall"] >= 1
    recorded = summary["recording"]["streams"]
    assert recorded[eeg_name]["samples"] >= summary["streams"][eeg_name]["samples"] - 1000
    recording = load_recording(summary["recording"]["path"])
    eeg = next(s for s in recording.streams if s.name == eeg_name)
    assert eeg.timestamps[0] <= record.start_time and eeg.timestamps[-1] > gap["stop"]
    before = eeg.timestamps[eeg.timestamps < stall["time"]]
    assert len(before) > 3000 and np.diff(before).max() < 0.002  # every ms up to the kill


def test_a_source_back_with_another_channel_count_is_held_safe_and_said(unique_name, tmp_path):
    """The source comes back under the same name and source id with 33 channels instead of 32:
    its samples would not fit the session's filters and picks. liblsl never reconnects an inlet
    to another channel count, so to the loop the source stays stalled and the output holds zero
    for the rest of the session; the session's source watch finds the new stream and says, once,
    why the stall lasts and what to do. The session ends cleanly when the operator stops it."""
    with sources() as started:
        started.append(SourceProcess.simulate(unique_name, channels=32))
        session = SessionThread("beta_adaptive", session_overrides(unique_name, *BETA_FAST),
                                tmp_path).start()  # fmt: skip
        listener = EventsListener(unique_name)
        engine = session.engine
        try:
            wait_for_pulses(session)
            killed = pylsl.local_clock()
            started[0].kill()
            started.append(SourceProcess.simulate(unique_name, channels=33))
            session.wait_until(lambda: "source" in engine.monitor_problems, 15, "the report")
            status = send_command(engine.control_address, {"cmd": "status"})
        finally:
            stop_session(session)
            listener.close()
    assert session.error is None, session.error
    assert status["stalled"] is True and status["amplitude"] == 0.0  # what an operator sees
    record, protocol = session.record, session.protocol
    stall = first_event(record.events, "stall", killed)
    (report,) = [e for e in record.events if e["kind"] == "monitor"]
    assert report["process"] == "source" and report["time"] > stall["time"]
    assert report["error"].startswith(f"{engine.eeg.name} is back with 33 channels at 1000 Hz")
    assert "instead of 32 channels" in report["error"] and "start a new one" in report["error"]
    assert not [e for e in record.events if e["kind"] in ("resume", "gap")]
    assert engine.eeg.n_channels == 32 and engine.eeg.newest_time < stall["time"]
    assert_ramps_down(record.commands, stall["time"], record.stop_time, protocol.safety.stop_ramp_s)
    assert_within_limits(record.commands, protocol)
    listener.assert_published(record.events, {"stall", "watchdog", "monitor"})
    assert kinds(record.events)[-1] == "end" and session.summary["events"]["monitor"] == 1


def test_only_the_channels_the_filters_read_are_checked_for_nan():
    """A NaN in a channel the pipeline never reads (an accelerometer, the sample index, an
    unpicked channel without CAR) is no fault: the engine checks the columns it reads."""
    protocol, _ = load_protocol("beta_adaptive", [])
    pre = protocol.preprocessing  # CAR over EEG channels; picks C3, FC1, FC5, CP1, CP5, Cz, C4
    names = ("C3", "Cz", "C4", "Fp1", "AccX", SAMPLE_INDEX_CHANNEL)
    types = ("EEG", "EEG", "EEG", "EEG", "ACC", "MISC")
    assert channels_read(pre, names, types) == [0, 1, 2, 3]  # CAR reads Fp1 too
    no_car = pre.model_copy(update={"car": False})
    assert channels_read(no_car, names, types) == [0, 1, 2]
    assert channels_read(pre, names[:4]) == [0, 1, 2, 3]  # no types: all EEG
