"""The virtual subject process over real LSL on loopback: metadata, pacing, sample continuity,
and cues/stimulation received from the session's streams."""

from __future__ import annotations

import threading
import time
import uuid

import numpy as np
import pylsl
import pytest

from bci.streams import (
    EEG_TYPE,
    MARKERS_TYPE,
    NIRS_TYPE,
    STIM_CHANNELS,
    STIM_TYPE,
    stream_names,
)
from devices.virtual_subject import SimulateOptions, run_virtual_subject


def _wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _channels(info: pylsl.StreamInfo) -> list[dict[str, str]]:
    channel = info.desc().child("channels").child("channel")
    out = []
    while not channel.empty():
        out.append(
            {
                key: channel.child_value(key)
                for key in ("label", "unit", "type", "wavelength", "source", "detector")
            }
        )
        channel = channel.next_sibling()
    return out


def test_streams_metadata_pacing_continuity_and_commands():
    prefix = f"vs-{uuid.uuid4().hex[:10]}"
    names = stream_names(prefix)
    # The session's cue and stimulation outlets exist before the subject starts, as in a session.
    cues = pylsl.StreamOutlet(
        pylsl.StreamInfo(
            names["cues"], MARKERS_TYPE, 1, pylsl.IRREGULAR_RATE, "string", f"{prefix}-cues"
        )
    )
    stim_info = pylsl.StreamInfo(
        names["stim"],
        STIM_TYPE,
        len(STIM_CHANNELS),
        pylsl.IRREGULAR_RATE,
        "double64",
        f"{prefix}-stim",
    )
    for key, value in (("modality", "tms"), ("anode", "Cz"), ("cathode", "")):
        stim_info.desc().append_child_value(key, value)
    stim = pylsl.StreamOutlet(stim_info)  # fmt: skip

    options = SimulateOptions(prefix=prefix, seed=7, eeg_channels=8, eeg_srate=500.0,
                              sample_index=True, duration_s=3.0)  # fmt: skip
    result = {}
    thread = threading.Thread(target=lambda: result.update(summary=run_virtual_subject(options)))
    started = time.monotonic()
    thread.start()
    try:
        eeg_info = _wait_for(lambda: pylsl.resolve_byprop("name", names["eeg"], 1, 0.2), 5,
                             "the EEG stream")[0]  # fmt: skip
        nirs_info = pylsl.resolve_byprop("name", names["nirs"], 1, 5.0)[0]
        inlet = pylsl.StreamInlet(eeg_info, processing_flags=pylsl.proc_clocksync)
        inlet.open_stream(timeout=5.0)  # buffer from now on, not from the first pull
        full = inlet.info(timeout=5.0)
        nirs_full = pylsl.StreamInlet(nirs_info).info(timeout=5.0)

        # The subject subscribes to both command streams; then they are sent.
        _wait_for(lambda: cues.have_consumers() and stim.have_consumers(), 5, "the subject")
        cues.push_sample(["right"])
        cues.push_sample(["block_start"])  # other session markers are ignored
        pulse_time = pylsl.local_clock()
        stim.push_sample([100.0, 0.0, 1.0, pulse_time, pulse_time, pulse_time, 3.0, 0.0],
                         pulse_time)  # fmt: skip

        samples, stamps = [], []
        while thread.is_alive() or inlet.samples_available():
            chunk, times = inlet.pull_chunk(timeout=0.1)
            samples += chunk
            stamps += times
    finally:
        thread.join(timeout=10)
    elapsed = time.monotonic() - started
    summary = result["summary"]

    # Metadata: names, types, source ids, channel descriptions.
    assert full.type() == EEG_TYPE and full.source_id() == f"{prefix}-eeg-7"
    assert full.nominal_srate() == 500.0 and full.channel_format() == pylsl.cf_float32
    channels = _channels(full)
    assert [c["label"] for c in channels][-1] == "SampleIndex"
    assert {"C3", "Cz", "C4"} <= {c["label"] for c in channels}
    assert all(c["unit"] == "microvolts" and c["type"] == "EEG" for c in channels[:-1])
    assert channels[-1]["type"] == "MISC"
    acquisition = full.desc().child("acquisition")
    assert acquisition.child_value("manufacturer") == "NeuroLoop"
    assert acquisition.child_value("model") == "virtual subject"
    assert acquisition.child_value("seed") == "7"
    assert nirs_full.type() == NIRS_TYPE and nirs_full.source_id() == f"{prefix}-nirs-7"
    nirs_channels = _channels(nirs_full)
    assert nirs_channels[0] == {
        "label": "S1_D1 760",
        "unit": "intensity",
        "type": "NIRS",
        "wavelength": "760",
        "source": "S1",
        "detector": "D1",
    }
    assert nirs_full.desc().child("fnirs").child_value("source_detector_distance") == "0.03"

    # Pacing: 3 s of signal took about 3 s; every sample was published exactly once.
    assert summary.eeg_samples == 1500 and summary.nirs_samples == 30
    assert 2.9 < elapsed < 6.0
    data, stamps = np.array(samples), np.array(stamps)
    index = data[:, -1]
    np.testing.assert_array_equal(np.diff(index), 1.0)  # no drop, no duplicate
    assert index[-1] == 1499
    np.testing.assert_allclose(np.diff(stamps), 1 / 500.0, atol=1e-6)  # regular time stamps
    np.testing.assert_allclose(stamps - index / 500.0, summary.start_time, atol=1e-3)

    # Commands arrived and changed the signal: the TMS pulse at Cz, at its time stamp.
    assert summary.cues == 1 and summary.stim_commands == 1
    cz = [c["label"] for c in channels].index("Cz")
    after = (stamps >= pulse_time - 1e-3) & (stamps < pulse_time + 0.05)
    before = stamps < pulse_time - 0.1
    assert before.sum() > 100 and after.any()
    baseline = data[before, cz] - data[before, cz].mean()
    assert np.abs(data[after, cz] - data[before, cz].mean()).max() > 5 * np.abs(baseline).max()


def test_runs_without_listening_for_its_duration():
    options = SimulateOptions(prefix=f"vs-{uuid.uuid4().hex[:10]}", eeg_srate=250.0,
                              fnirs=False, listen=False, duration_s=0.5)  # fmt: skip
    stop = threading.Event()
    summary = run_virtual_subject(options, stop)
    assert summary.eeg_samples == 125 and summary.nirs_samples == 0 and summary.cues == 0


def test_stop_event_ends_a_run_without_duration():
    options = SimulateOptions(prefix=f"vs-{uuid.uuid4().hex[:10]}", eeg_srate=250.0,
                              fnirs=False, listen=False)  # fmt: skip
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    started = time.monotonic()
    summary = run_virtual_subject(options, stop)
    assert time.monotonic() - started < 2.0
    # it streamed, and stopped well before a second's worth (how much came before the stop
    # depends on how fast a loaded machine starts the outlet)
    assert 0 < summary.eeg_samples < 250


@pytest.mark.parametrize(
    ("field", "value"),
    [("prefix", ""), ("seed", -3), ("eeg_channels", 1), ("eeg_srate", 20.0),
     ("chunk_s", 0.0), ("duration_s", -1.0), ("bad_channel", "Q9"), ("fnirs_srate", 0.1)],
)  # fmt: skip
def test_bad_options_name_the_field(field, value):
    with pytest.raises((ValueError, TypeError), match=field.split("_")[0]):
        SimulateOptions(**{field: value})


def test_sigterm_stops_the_process_cleanly():
    import pathlib
    import signal
    import subprocess
    import sys

    prefix = f"vs-{uuid.uuid4().hex[:10]}"
    code = (
        "from devices.virtual_subject import SimulateOptions, run_virtual_subject\n"
        f"s = run_virtual_subject(SimulateOptions(prefix={prefix!r}, eeg_srate=250.0,"
        " fnirs=False, listen=False))\n"
        "print('pushed', s.eeg_samples)\n"
    )
    root = pathlib.Path(__file__).resolve().parents[2]
    process = subprocess.Popen(
        [sys.executable, "-c", code], cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        _wait_for(
            lambda: pylsl.resolve_byprop("name", stream_names(prefix)["eeg"], 1, 0.2), 20,
            "the subprocess's EEG stream",
        )  # fmt: skip
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=10)
    finally:
        process.kill()
    assert process.returncode == 0
    assert int(out.split()[-1]) > 0
