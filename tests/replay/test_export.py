"""export_recording: any recording to FIF or EDF through MNE, read back by MNE."""

from __future__ import annotations

import datetime as dt
import json
import warnings

import mne
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from bci.replay import ExportWarning, RecordingError, export_recording, load_recording
from bci.replay.export import to_mne_raw
from tests.replay.test_recording import xdf_bytes

T0 = 500.0
SFREQ = 100.0


def session_streams(n: int = 600) -> list[dict]:
    """A NeuroLoop-like session: EEG in µV with a sample index, cues, JSON events and
    session info."""
    rng = np.random.default_rng(5)
    eeg = np.column_stack([rng.normal(0, 30, (n, 3)), np.arange(n)])
    return [
        {"name": "S-EEG", "type": "EEG", "srate": SFREQ, "data": eeg,
         "times": T0 + np.arange(n) / SFREQ,
         "channels": [("C3", "EEG", "microvolts"), ("Cz", "EEG", "microvolts"),
                      ("C4", "EEG", "microvolts"), ("SampleIndex", "MISC", "")]},
        {"name": "S-Cues", "type": "Markers", "srate": 0, "fmt": "string",
         "data": [["left"], ["rest"], ["right"]], "times": T0 + np.array([1.0, 2.505, 4.0]),
         "channels": [("cue", "Markers", "")]},
        {"name": "S-Events", "type": "Events", "srate": 0, "fmt": "string",
         "data": [[json.dumps({"kind": "estop", "seq": 4, "reason": "button"})]],
         "times": np.array([T0 + 3.0]), "channels": None},
        {"name": "S-Info", "type": "SessionInfo", "srate": 0, "fmt": "string",
         "data": [[json.dumps({"kind": "session", "protocol": "x" * 500})]],
         "times": np.array([T0 + 0.2]), "channels": None},
    ]  # fmt: skip


@pytest.fixture
def session_file(tmp_path):
    path = tmp_path / "session.xdf"
    path.write_bytes(xdf_bytes(session_streams()))
    return path


def test_xdf_to_fif_is_lossless_with_markers_events_and_date(session_file):
    out = export_recording(session_file, "fif")
    assert out == session_file.with_name("session_raw.fif")
    raw = mne.io.read_raw(out, preload=True, verbose="error")
    eeg = session_streams()[0]["data"]
    assert raw.ch_names == ["C3", "Cz", "C4", "SampleIndex"]
    assert raw.get_channel_types() == ["eeg", "eeg", "eeg", "misc"]
    assert raw.info["sfreq"] == SFREQ
    assert_array_equal(raw.get_data()[:3], eeg[:, :3].T * 1e-6)  # µV → V, float64 kept
    assert_array_equal(raw.get_data()[3], np.arange(600))
    assert raw.info["meas_date"] == dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.UTC)
    notes = raw.annotations
    assert list(notes.description[:2]) == ["SessionInfo/session (protocol=" + "x" * 47 + "...",
                                           "left"]  # fmt: skip
    assert list(notes.description[2:]) == ["rest", "Events/estop (reason=button)", "right"]
    assert_allclose(notes.onset, [0.2, 1.0, 2.505, 3.0, 4.0], atol=1e-9)  # by timestamp
    assert_array_equal(notes.duration, 0.0)


def test_xdf_to_edf_within_its_16_bit_precision(session_file, tmp_path):
    out = export_recording(session_file, "EDF", out=tmp_path / "for_eeglab.edf")
    raw = mne.io.read_raw(out, preload=True, verbose="error")
    eeg = session_streams()[0]["data"]
    assert raw.ch_names[:3] == ["C3", "Cz", "C4"] and raw.info["sfreq"] == SFREQ
    step = np.ptp(eeg[:, :3], axis=0) / 65535  # µV per digital step, channelwise range
    assert_allclose(raw.get_data()[:3].T * 1e6, eeg[:, :3], atol=step.max())
    assert "left" in raw.annotations.description
    left = raw.annotations.onset[list(raw.annotations.description).index("left")]
    assert left == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize(("source", "target"), [("run.edf", "fif"), ("run_raw.fif", "edf")])
def test_mne_files_round_trip(tmp_path, source, target):
    rng = np.random.default_rng(6)
    info = mne.create_info(["Fz", "Cz", "Pz", "EOG"], 250.0, ["eeg"] * 3 + ["eog"])
    original = mne.io.RawArray(rng.normal(0, 2e-5, (4, 1000)), info, verbose="error")
    original.set_meas_date(dt.datetime(2022, 2, 2, tzinfo=dt.UTC))
    original.set_annotations(mne.Annotations([0.4, 2.0], 0.0, ["T1", "T2"]))
    path = tmp_path / source
    if source.endswith(".fif"):
        original.save(path, verbose="error")
    else:
        mne.export.export_raw(path, original, verbose="error")
    stored = mne.io.read_raw(path, preload=True, verbose="error")
    out = export_recording(path, target)
    back = mne.io.read_raw(out, preload=True, verbose="error")
    assert back.ch_names == stored.ch_names
    expected = stored.get_channel_types() if target == "fif" else ["eeg"] * 4  # EDF: no types
    assert back.get_channel_types() == expected
    tolerance = 1e-15 if target == "fif" else np.ptp(stored.get_data(), axis=1).max() / 65535
    assert_allclose(back.get_data(), stored.get_data(), rtol=1e-12, atol=tolerance)
    assert list(back.annotations.description) == ["T1", "T2"]
    assert_allclose(back.annotations.onset, [0.4, 2.0], atol=1e-3)
    assert back.info["meas_date"] == dt.datetime(2022, 2, 2, tzinfo=dt.UTC)


def test_a_gap_is_marked_and_markers_stay_on_their_samples(tmp_path):
    streams = session_streams()[:2]
    streams[0]["times"] = streams[0]["times"] + np.where(np.arange(600) >= 150, 2.0, 0.0)
    streams[1]["times"] = np.array([T0 + 1.0, T0 + 3.5, T0 + 6.0])  # after the gap: -2 s
    path = tmp_path / "gap.xdf"
    path.write_bytes(xdf_bytes(streams))
    with pytest.warns(ExportWarning, match=r"1 gap\(s\) in its timestamps .*longest 2\.000 s"):
        raw = to_mne_raw(load_recording(path))
    notes = raw.annotations
    assert list(notes.description) == ["left", "BAD_gap", "rest", "right"]
    assert_allclose(notes.onset, [1.0, 1.49, 1.5, 4.0], atol=1e-9)  # sample 150 at 1.5 s
    assert notes.duration[1] == pytest.approx(0.01)
    assert_array_equal(raw.get_data()[3, [149, 150]], [149, 150])  # the data run on


def test_markers_outside_the_stream_and_odd_units_are_warned(tmp_path):
    streams = session_streams()[:2]
    streams[0]["channels"] = [("C3", "EEG", ""), ("Cz", "EEG", "millivolts"),
                              ("C4", "EEG", "counts"), ("SampleIndex", "", "")]  # fmt: skip
    streams[1]["times"] = np.array([T0 - 1.0, T0 + 1.0, T0 + 99.0])
    path = tmp_path / "odd.xdf"
    path.write_bytes(xdf_bytes(streams))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        raw = to_mne_raw(load_recording(path))
    said = [str(w.message) for w in caught if w.category is ExportWarning]
    assert any("channels ['C3'] declare no unit; taken as microvolts" in s for s in said)
    assert any("channels ['C4 (counts)'] are not in a voltage unit" in s for s in said)
    assert any("2 marker(s) outside the time span of stream 'S-EEG'" in s for s in said)
    data = session_streams()[0]["data"]
    assert raw.get_channel_types() == ["eeg", "eeg", "misc", "misc"]
    assert_allclose(raw.get_data()[:3].T, data[:, :3] * [1e-6, 1e-3, 1.0])
    assert list(raw.annotations.description) == ["rest"]


def test_numeric_markers_and_a_chosen_stream(tmp_path):
    streams = session_streams()[:1]
    streams.append(
        {
            "name": "Aux",
            "type": "EEG",
            "srate": 50.0,
            "data": np.ones((100, 1)),
            "times": T0 + np.arange(100) / 50,
            "channels": [("X", "EEG", "volts")],
        }
    )
    streams.append({"name": "Trig", "type": "Markers", "srate": 0, "fmt": "int32",
                    "data": np.array([[769], [770]]), "times": T0 + np.array([0.5, 1.0]),
                    "channels": None})  # fmt: skip
    path = tmp_path / "two.xdf"
    path.write_bytes(xdf_bytes(streams))
    with pytest.raises(
        RecordingError,
        match=r"2 EEG streams to export \('S-EEG'.*'Aux'.*"
        r"name the one to export \(stream=NAME\)",
    ):
        export_recording(path, "fif")
    out = export_recording(path, "fif", stream="Aux", out=tmp_path / "aux_eeg.fif")
    raw = mne.io.read_raw(out, verbose="error")
    assert raw.info["sfreq"] == 50.0 and raw.ch_names == ["X"]
    assert_array_equal(raw.get_data(), 1.0)  # volts stay volts
    assert list(raw.annotations.description) == ["769", "770"]
    assert_allclose(raw.annotations.onset, [0.5, 1.0], atol=1e-9)


def test_snirf_exports_raw_intensities_as_fnirs_channels(tmp_path):
    from tests.train.recordings import simulate, write_snirf

    session = simulate(seed=4, n_trials=2, fnirs=True, trial_s=4.0)
    out = export_recording(write_snirf(session, tmp_path / "optodes.snirf"), "fif")
    raw = mne.io.read_raw(out, verbose="error")
    assert set(raw.get_channel_types()) == {"fnirs_cw_amplitude"}
    assert raw.info["chs"][0]["loc"][9] == float(raw.ch_names[0].split()[1])  # wavelength
    assert_allclose(raw.get_data().T, session.nirs, rtol=1e-6)
    assert list(raw.annotations.description) == list(session.labels)


def test_mistakes_are_named_before_anything_is_written(session_file, tmp_path):
    with pytest.raises(ValueError, match=r"to='csv': export writes 'fif' or 'edf'"):
        export_recording(session_file, "csv")
    with pytest.raises(ValueError, match=r"named \*_raw\.fif or \*_eeg\.fif.*e\.g\. x_raw\.fif"):
        export_recording(session_file, "fif", out=tmp_path / "x.fif")
    with pytest.raises(ValueError, match=r"an EDF export is named \*\.edf"):
        export_recording(session_file, "edf", out=tmp_path / "x.bdf")
    taken = tmp_path / "taken_raw.fif"
    taken.write_bytes(b"")
    with pytest.raises(FileExistsError, match=r"taken_raw\.fif exists; export never overwrites"):
        export_recording(session_file, "fif", out=taken)
    with pytest.raises(
        RecordingError,
        match=r"stream 'S-Cues' holds text; MNE needs a "
        r"regularly sampled numeric stream",
    ):
        export_recording(session_file, "fif", stream="S-Cues")
    with pytest.raises(RecordingError, match=r"no stream named 'Nope'; the file holds: 'S-EEG'"):
        export_recording(session_file, "fif", stream="Nope")
    with pytest.raises(RecordingError, match=r"no such file"):
        export_recording(tmp_path / "absent.xdf", "fif")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["session.xdf", "taken_raw.fif"]


def test_an_irregular_stream_or_truncated_file_is_said(tmp_path):
    streams = session_streams()
    streams.append({"name": "Decoder", "type": "Decoder", "srate": 0, "data": np.ones((3, 2)),
                    "times": T0 + np.arange(3.0), "channels": None})  # fmt: skip
    whole = xdf_bytes(streams, footers=False)
    path = tmp_path / "cut.xdf"
    path.write_bytes(whole[: len(whole) - 30])
    with pytest.raises(RecordingError, match=r"stream 'Decoder' is irregular \(nominal rate 0\)"):
        to_mne_raw(load_recording(path), stream="Decoder")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = export_recording(path, "fif")
    said = [str(w.message) for w in caught if w.category is ExportWarning]
    assert said[0].startswith("the file is truncated") and "no clock offsets" in said[1]
    assert mne.io.read_raw(out, verbose="error").n_times == 600
