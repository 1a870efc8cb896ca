"""Whole sessions over real LSL, a real virtual-subject process and a real LabRecorder."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import threading

import numpy as np
import pylsl
import pytest
import pyxdf

from bci.acquire import MarkerInlet, StreamQuery, resolve_streams
from bci.cli import main
from bci.decode import load_decoder
from bci.engine.session import run_session
from bci.protocol import load_protocol
from bci.replay.offline import replay_with_run
from bci.streams import stream_names
from tests.conftest import wait_for

SHORT = [
    "blocks.0.duration_s=1",
    "blocks.1.trials=12",
    "blocks.1.cue_s=2.5",
    "blocks.1.iti_s=[0.5, 0.6]",
    "blocks.4.duration_s=1",
]


@pytest.mark.slow
def test_short_session_writes_summary_plot_and_xdf(unique_name, tmp_path, capsys):
    out = tmp_path / "session"
    code = main(["run", "demo", "--out", str(out), "--set", f"session.prefix={unique_name}",
                 *(f"--set={item}" for item in [*SHORT, "blocks.3.duration_s=12"])])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    names = stream_names(unique_name)
    for key in ("protocol", "duration_s", "streams", "decoder", "latency_ms", "stimulation"):
        assert key in summary
    eeg = summary["streams"][names["eeg"]]
    assert eeg["samples"] > 0 and eeg["dropped"] == 0
    assert abs(eeg["srate_measured"] - 500) < 5
    assert summary["decoder"]["n_trials"] >= 2 and summary["latency_ms"]["n"] > 50
    assert summary["stimulation"]["max_amplitude_ma"] <= 1.5
    assert (out / "summary.png").stat().st_size > 10_000
    streams, _ = pyxdf.load_xdf(summary["recording"]["path"])
    recorded = {s["info"]["name"][0]: s for s in streams}
    for key in ("eeg", "nirs", "cues", "decoder", "stim", "events", "latency"):
        assert names[key] in recorded, f"{names[key]} missing from the XDF"
    # the recorder held the EEG before the session's first sample and after its last
    assert len(recorded[names["eeg"]]["time_stamps"]) >= eeg["samples"]
    for key in ("cues", "decoder", "stim", "events", "latency"):  # every sample in the file
        assert len(recorded[names[key]]["time_stamps"]) == summary["streams"][names[key]]["samples"]
    cues = [m[0] for m in recorded[names["cues"]]["time_series"]]
    assert cues.count("left") + cues.count("right") == summary["decoder"]["n_trials"] + 12
    # the demo fine-tunes its pretrained EEGNet and leaves the session's model and its report
    fit = summary["decoder"]["fit"]
    assert fit["kind"] == "eegnet" and fit["pretrained"] == "demo-eegnet.npz"
    assert fit["n_holdout_trials"] == 4 and fit["temperature"] > 0
    assert load_decoder(out / "model.npz").provenance.steps[-1]["step"] == "session calibration"
    assert (out / "training_report.png").stat().st_size > 10_000


@pytest.mark.slow
def test_hybrid_decoder_reads_live_eeg_and_fnirs(unique_name, tmp_path, capsys):
    out = tmp_path / "session"
    overrides = [*SHORT, "blocks.1.trials=8", "blocks.0.duration_s=6", "blocks.3.duration_s=4",
                 "decoder.kind=hybrid",
                 "decoder.model=", "recording.enabled=false"]  # fmt: skip
    code = main(["run", "demo", "--out", str(out), "--set", f"session.prefix={unique_name}",
                 *(f"--set={item}" for item in overrides)])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["decoder"]["fit"]["kind"] == "hybrid"
    assert summary["decoder"]["n_decisions"] > 20
    assert load_decoder(out / "model.npz").info.inputs == ("eeg", "nirs")


def _simulate(prefix: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "bci", "simulate", "--prefix", prefix, "--seed", "3",
               "--channels", "32", "--srate", "500", "--no-fnirs"]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.mark.slow
def test_source_killed_mid_session_is_safe_recorded_and_resumed(unique_name, tmp_path):
    subject = _simulate(unique_name)
    protocol, text = load_protocol(
        "demo",
        [
            f"session.prefix={unique_name}",
            "source.kind=lsl",
            "source.fnirs=false",
            *SHORT,
            "blocks.1.trials=8",
            "blocks.3.duration_s=24",
            "controller.p_low=0.0",
            "controller.p_high=0.5",
        ],
    )  # fmt: skip  -- p_low=0 makes the amplitude rise, so "never rises after" is meaningful
    result: dict = {}

    def run() -> None:
        result["summary"], result["record"] = run_session(
            protocol, "test", text, tmp_path, progress=False,
            on_engine=lambda engine: result.setdefault("engine", engine),
        )  # fmt: skip

    engine = threading.Thread(target=run)
    engine.start()
    try:
        events_info = resolve_streams([StreamQuery(name=stream_names(unique_name)["events"])], 30)
        with MarkerInlet(events_info[0]) as events:
            seen: list = []
            closed_loop = lambda: any("closed_loop" in text for _, text in seen)  # noqa: E731
            assert wait_for(lambda: seen.extend(events.pull()) or closed_loop(), timeout_s=90)
        governor = result["engine"].governor  # stimulation ramps up: the kill must ramp it down
        assert wait_for(lambda: governor.amplitude > 0.1 and not governor.tripped, 30), (
            governor.state)
        t_kill = pylsl.local_clock()
        os.kill(subject.pid, signal.SIGKILL)
        subject.wait()
        wait_for(lambda: False, timeout_s=2)
        subject = _simulate(unique_name)  # same prefix and seed: same source id
    finally:
        engine.join(timeout=120)
        subject.terminate()
        subject.wait()
    summary, record = result["summary"], result["record"]
    # the stall the kill caused (a loaded machine may have paused the source briefly before)
    stall = next(e for e in record.events if e["kind"] == "stall" and e["time"] > t_kill)
    resume = next(e for e in record.events if e["kind"] == "resume" and e["time"] > stall["time"])
    assert stall["time"] - t_kill <= 0.1
    after = [c for c in record.commands if stall["time"] <= c.write_time < resume["time"]]
    amplitudes = [c.amplitude for c in after]
    assert amplitudes and all(b <= a for a, b in itertools.pairwise(amplitudes))
    assert all(c.amplitude == 0 for c in after if c.write_time >= stall["time"] + 1.0)
    assert max(c.amplitude for c in record.commands if c.write_time < stall["time"]) > 0
    assert any(t > resume["time"] for t, _ in record.decisions), "the session did not resume"
    eeg = summary["streams"][stream_names(unique_name)["eeg"]]
    assert eeg["gaps"] == 1 and eeg["dropped"] > 500 and summary["events"]["gap"] == 1
    streams, _ = pyxdf.load_xdf(summary["recording"]["path"])
    events = next(s for s in streams if s["info"]["name"][0].endswith("-Events"))
    kinds = [json.loads(m[0])["kind"] for m in events["time_series"]]
    assert "stall" in kinds and "gap" in kinds
    assert np.isfinite(summary["latency_ms"]["p99"])
    # offline, the stall's watchdog trip, the gap's filter restart and the recovery replay to
    # the same commands, and the same decoder outputs (the fine-tuned EEGNet) wherever the
    # recording holds what the engine read: LabRecorder reconnects to the restarted source
    # a little after the engine does
    replayed, run = replay_with_run(summary["recording"]["path"], progress=False)
    assert replayed["reproduces"] and replayed["n_commands"] == replayed["recorded_commands"]
    lacks = [w for w in replayed["warnings"] if "lacks the first" in w]
    gap_stop = next(e["stop"] for e in record.events if e["kind"] == "gap")
    # filters that restart a quarter second late settle within about 2 s (the 50 Hz notch's
    # time constant is 0.2 s): after that, and before the gap, the outputs are the session's
    reaching = (run.decision_times > gap_stop) & (run.decision_times < gap_stop + 3.0)
    recorded = np.array([p for _, p in record.decisions])
    diff = np.abs(run.outputs - recorded).max(axis=1)
    assert diff[~reaching].max() <= 1e-6 and (lacks or diff.max() <= 1e-6)


def test_stream_without_the_picked_channels_stops_with_one_clear_message(
    unique_name, tmp_path, capsys, index_source
):
    index_source(n_channels=4, sfreq=250.0, name=f"{unique_name}-EEG")  # EEG000..EEG003 only
    args = ["run", "demo", "--out", str(tmp_path), "--set", f"session.prefix={unique_name}",
            "--set", "source.kind=lsl", "--set", "recording.enabled=false",
            "--set", "source.fnirs=false"]  # fmt: skip
    assert main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-2].startswith("error: picks") and "'FC5'" in err[-2] and "EEG000" in err[-2]
    assert err[-1].startswith("Stimulation was stopped at zero")
