"""Faults on the output side: the serial stimulator's cable pulled (its emulator process killed
mid-session) and a decoder that raises in the closed loop. Both end the session: the output is
at zero, the emergency stop is latched (stimulator) or the stop ramp followed (decoder), the
failure is one message, recorded and published, and the XDF recorded so far loads."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys

import numpy as np
import pytest

from bci.replay import load_recording
from devices.stimulators import StimulatorError
from tests.faults.harness import (
    REPO_ROOT,
    SLACK_S,
    EventsListener,
    SessionThread,
    assert_ramps_down,
    assert_within_limits,
    first_event,
    kinds,
    session_overrides,
)

pytestmark = pytest.mark.slow

TACS_SHORT = ["blocks.0.duration_s=3", "blocks.1.duration_s=60", "blocks.2.duration_s=1"]
"""alpha_phase_tacs: 3 s baseline (the phase gate), a closed loop the fault ends, 1 s rest."""


def _emulator(device: str) -> tuple[subprocess.Popen, str]:
    """``bci emulate DEVICE`` as its own process; returns it and the pty it serves."""
    process = subprocess.Popen([sys.executable, "-m", "bci", "emulate", device], cwd=REPO_ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                               start_new_session=True)  # fmt: skip
    line = process.stdout.readline()
    port = re.search(r"(/dev/pts/\d+)", line)
    assert port, f"bci emulate printed {line!r}"
    return process, port.group(1)


def _recorded_events(path) -> list[dict]:
    import json

    recording = load_recording(path)
    events = next(s for s in recording.streams if s.name.endswith("-Events"))
    return [json.loads(row[0]) for row in events.data], recording


def test_a_serial_stimulator_unplugged_latches_the_estop_and_ends_the_session(
    unique_name, tmp_path
):
    """The tES emulator's process is killed: its pty goes away as a USB-serial adapter pulled
    out does, and the driver's next read or write fails."""
    emulator, port = _emulator("tes")
    try:
        tes = ["stimulator.kind=tes", f"stimulator.port={port}", *TACS_SHORT]
        overrides = session_overrides(unique_name, *tes, record=True)
        session = SessionThread("alpha_phase_tacs", overrides, tmp_path).start()
        listener = EventsListener(unique_name)
        engine = session.engine
        try:
            session.wait_until(lambda: engine.governor.amplitude > 0.2, 40, "tACS output")
            os.kill(emulator.pid, signal.SIGKILL)
            session.join(30)
        finally:
            listener.close()
    finally:
        if emulator.poll() is None:
            emulator.kill()
        emulator.wait()
    error = session.error
    # one message: which device, what failed, what to do
    assert isinstance(error, StimulatorError), error
    assert re.search(rf"tES stimulator on {port}.*(port failed|no reply).*check", str(error))
    record, protocol = engine.record, session.protocol  # it raised: no returned record
    assert engine.stim.failed == str(error)
    assert engine.governor.estopped and engine.governor.amplitude == 0.0
    failed = first_event(record.events, "stimulator_failed")
    estop = first_event(record.events, "safety.estop")
    assert estop["time"] == failed["time"] and "stimulator failed" in estop["detail"]
    assert kinds(record.events)[-1] == "end"
    # nothing was written to the dead device after it failed, nothing ever above the limits
    assert all(c.write_time <= failed["time"] for c in record.commands)
    assert_within_limits(record.commands, protocol)
    listener.assert_published(record.events, {"stimulator_failed", "safety.estop", "error"})
    # the summary says the session failed and why; what was recorded up to the failure loads
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["complete"] is False and "StimulatorError" in summary["reason"]
    events, recording = _recorded_events(tmp_path / "alpha_phase_tacs.xdf")
    assert {"stimulator_failed", "safety.estop", "error"} <= set(kinds(events))
    eeg = next(s for s in recording.streams if s.name.endswith("-EEG"))
    assert eeg.timestamps[0] <= record.start_time and eeg.timestamps[-1] >= failed["time"] - 1


class DecoderFailure(RuntimeError):
    pass


def test_a_decoder_that_raises_ramps_to_zero_and_ends_the_session(unique_name, tmp_path):
    """The fitted decoder's ``predict_proba`` starts raising mid closed loop (the fault is
    injected by replacing it on the live engine's decoder)."""
    overrides = session_overrides(
        unique_name, "decoder.kind=riemann", "decoder.model=", "source.fnirs=false",
        "blocks.0.duration_s=1", "blocks.1.trials=8", "blocks.1.cue_s=2.0",
        "blocks.1.iti_s=[0.3, 0.4]", "blocks.3.duration_s=60", "blocks.4.duration_s=1",
        "decoder.epoch_tmin_s=0.3", "decoder.epoch_tmax_s=1.8",
        # p_low=0: the output rises on any decision, so "ramps to zero" means something
        "controller.p_low=0.0", "controller.p_high=0.5", "controller.abstain_below=0.0",
        record=True,
    )  # fmt: skip
    session = SessionThread("demo", overrides, tmp_path).start()
    listener = EventsListener(unique_name)
    engine = session.engine
    try:
        session.wait_until(lambda: engine.decoder is not None and engine.governor.amplitude > 0.3,
                           60, "the closed loop's output")  # fmt: skip

        def predict_proba(inputs):
            raise DecoderFailure("the decoder's weights are corrupt (injected)")

        engine.decoder.predict_proba = predict_proba
        session.join(30)
    finally:
        listener.close()
    assert isinstance(session.error, DecoderFailure), session.error
    record, protocol = engine.record, session.protocol  # it raised: no returned record
    error = first_event(record.events, "error")
    assert error["error"] == "DecoderFailure: the decoder's weights are corrupt (injected)"
    assert [e["kind"] for e in record.events if e["kind"] == "error"] == ["error"]
    ending = first_event(record.events, "ending", error["time"] - SLACK_S)
    # from the failure on, the output follows the stop ramp down and ends at zero
    assert_ramps_down(record.commands, ending["time"], np.inf, protocol.safety.stop_ramp_s)
    assert record.commands[-1].amplitude == 0.0
    assert record.commands[-1].write_time - error["time"] < protocol.safety.stop_ramp_s + 0.2
    assert_within_limits(record.commands, protocol)
    assert kinds(record.events)[-1] == "end"
    listener.assert_published(record.events, {"error", "ending", "end"})
    events, recording = _recorded_events(tmp_path / "session.xdf")
    assert "error" in kinds(events) and "end" in kinds(events)
    stim = next(s for s in recording.streams if s.name.endswith("-Stim"))
    assert stim.n_samples == len(record.commands)  # every command, the last zero included
