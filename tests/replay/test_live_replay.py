"""A recording replayed in real time is a live source: a session runs on it as on an amplifier."""

from __future__ import annotations

import mne
import numpy as np
import pytest

from bci.engine.session import run_session
from bci.protocol import load_protocol
from bci.replay import load_recording
from bci.replay.player import Player


@pytest.mark.slow
def test_a_session_runs_on_a_replayed_edf_as_if_live(unique_name, tmp_path):
    protocol, _ = load_protocol("demo")
    names = [*protocol.preprocessing.picks, "Fp1", "Fp2", "O1", "O2"]
    sfreq, seconds = 500.0, 20.0
    t = np.arange(int(seconds * sfreq)) / sfreq
    rng = np.random.default_rng(1)
    alpha = 10e-6 * np.sin(2 * np.pi * 11 * t) * (1 + (t % 4 > 2))  # mu bursts every 4 s
    data = rng.normal(0, 5e-6, (len(names), len(t))) + alpha
    raw = mne.io.RawArray(data, mne.create_info(names, sfreq, "eeg"), verbose="error")
    mne.export.export_raw(tmp_path / "lab.edf", raw, verbose="error")
    recording = load_recording(tmp_path / "lab.edf")
    suffix = f"-{unique_name}"
    overrides = [
        f"session.prefix={unique_name}", "control.address=tcp://127.0.0.1:0",
        "recording.enabled=false", "source.kind=lsl", f"source.eeg_stream=lab{suffix}",
        "source.fnirs=false", "decoder.model=", "controller.input=biomarker",
        "controller.p_low=0.5", "controller.p_high=3", "controller.abstain_below=0",
        "blocks=[{kind='baseline', duration_s=4}, {kind='closed_loop', duration_s=8, "
        "cued=false}]",
    ]  # fmt: skip
    protocol, text = load_protocol("demo", overrides)
    with Player(recording, name_suffix=suffix).open() as player:
        summary, record = run_session(protocol, "live replay", text, tmp_path / "s",
                                      progress=False)  # fmt: skip
        assert not player.finished  # the session ended on its own timeline, not the file's
    eeg = summary["streams"][f"lab{suffix}"]
    assert eeg["dropped"] == 0 and abs(eeg["srate_measured"] - sfreq) / sfreq < 0.01
    assert eeg["samples"] >= 11 * sfreq
    assert len(record.biomarker) >= 60  # a decision every 0.1 s of the closed loop
    assert max(c.amplitude for c in record.commands) > 0
