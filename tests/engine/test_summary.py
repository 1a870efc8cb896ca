"""The session summary from an engine record: figures of the right types for summary.json, trial
accuracy scored from the decisions, and a summary.png for each kind of controller input."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from bci.engine.record import EngineRecord
from bci.engine.summary import build_summary, closed_loop_accuracy, plot_summary
from bci.protocol import load_protocol
from bci.safety.governor import GovernorState
from bci.streams import LATENCY_CHANNELS
from devices.stimulators import StimCommand

START = 1000.0
CLOSED_LOOP = 3
"""The demo protocol's closed-loop block."""


def _record(protocol) -> EngineRecord:
    """Ten closed-loop trials, the decoder right on eight; a command and a latency row per
    decision; every third command a pulse."""
    record = EngineRecord(start_time=START, stop_time=START + 60)
    classes = protocol.decoder.classes
    for trial in range(10):
        onset, label = START + 5 * trial, classes[trial % 2]
        record.cues.append((onset, label, CLOSED_LOOP))
        right = trial < 8
        for t in onset + np.arange(0.0, 3.0, 0.1):
            p = 0.8 if (label == classes[0]) == right else 0.2
            record.decisions.append((float(t), np.array([p, 1 - p])))
            i = len(record.commands)
            command = StimCommand(p, 10.0, int(i % 3 == 0), float(t) + 0.004, float(t))
            record.commands.append(command)
            record.latency_ms.append(np.r_[np.full(len(LATENCY_CHANNELS) - 1, 0.5), 4.0])
            record.latency_times.append(command.write_time)
    record.blocks.append((CLOSED_LOOP, "closed_loop", START, START + 60))
    record.events.append({"kind": "gap", "time": START + 20, "stop": START + 20.5})
    return record


def _summary(protocol, record) -> dict:
    eeg = SimpleNamespace(name="EEG", n_samples=15_000, n_missing=12, gaps=[1], sfreq=250.0,
                          srate_measured=250.01)  # fmt: skip
    outlets = SimpleNamespace(counts={"decoder": 300}, names={"decoder": "Decoder"})
    state = GovernorState(charge_mc=1.5, on_time_s=30.0, n_pulses=100)
    return build_summary(protocol, "demo", record, eeg, None, outlets, state, None)


def test_trial_accuracy_is_scored_from_the_decisions_inside_each_cue():
    protocol, _ = load_protocol("demo")
    assert protocol.blocks[CLOSED_LOOP].kind == "closed_loop"
    assert closed_loop_accuracy(_record(protocol), protocol) == (0.8, 10)
    assert closed_loop_accuracy(EngineRecord(), protocol)[1] == 0


def test_the_summary_holds_plain_json_figures(tmp_path):
    protocol, _ = load_protocol("demo")
    record = _record(protocol)
    summary = _summary(protocol, record)
    json.dumps(summary)  # no numpy scalars: no default= needed
    stim = summary["stimulation"]
    assert stim["commands"] == 300 and stim["pulses"] == 100 and type(stim["pulses"]) is int
    assert stim["max_amplitude_ma"] == 0.8 and type(stim["max_amplitude_ma"]) is float
    assert summary["decoder"]["n_decisions"] == 300
    assert summary["decoder"]["closed_loop_accuracy"] == 0.8
    latency = summary["latency_ms"]
    assert latency["n"] == 300 and latency["p50"] == 4.0
    assert set(latency["stages_p99"]) == set(LATENCY_CHANNELS[:-1])
    empty = _summary(protocol, EngineRecord(start_time=START, stop_time=START + 1))
    assert empty["latency_ms"]["n"] == 0 and empty["stimulation"]["max_amplitude_ma"] == 0.0
    assert empty["stimulation"]["pulses"] == 0
    plot_summary(summary, record, protocol, tmp_path / "summary.png")
    assert (tmp_path / "summary.png").stat().st_size > 0


@pytest.mark.parametrize("name", ["beta_adaptive", "alpha_phase_tacs"])
def test_a_summary_png_for_a_biomarker_and_for_phase_locked_pulses(name, tmp_path):
    protocol, _ = load_protocol(name)
    record = EngineRecord(start_time=START, stop_time=START + 10)
    for i in range(50):
        t = START + i / 10
        if name == "beta_adaptive":
            record.biomarker.append((t, 1.0 + np.sin(i / 5)))
        else:
            record.pulse_latency_ms.append(1.0 + i / 100)
        record.commands.append(StimCommand(1.0, 10.0, int(name != "beta_adaptive"), t, t))
    summary = _summary(protocol, record)
    assert summary["stimulation"]["pulse_latency_ms"]["n"] == len(record.pulse_latency_ms)
    plot_summary(summary, record, protocol, tmp_path / "summary.png")
    assert (tmp_path / "summary.png").stat().st_size > 0
