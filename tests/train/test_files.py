"""Reading recordings (EDF, BDF, FIF, BrainVision, SNIRF, XDF) and cutting their windows exactly
as the engine cuts its calibration windows."""

from __future__ import annotations

import numpy as np
import pylsl
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from bci.acquire import RingBuffer
from bci.engine.calibration import calibration_windows
from bci.engine.fitting import holdout_mask
from bci.engine.preprocess import eeg_pipeline, fnirs_pipeline
from bci.protocol.schema import DecoderSection, PreprocessingSection
from bci.train.epochs import (
    Epoching,
    TrialWindows,
    matching_trials,
    preprocess_eeg,
    trial_windows,
)
from bci.train.files import TrainingInputError, file_format, read_recording
from bci.train.scoring import score_trials, trial_proba, wilson_interval
from bci.train.settings import parse_events, resolve_picks
from tests.conftest import wait_for
from tests.train.recordings import (
    simulate,
    write_mne,
    write_session_xdf,
    write_snirf,
    write_xdf,
)

CODES = {"left": "T1", "right": "T2"}


@pytest.fixture(scope="module")
def session():
    return simulate(seed=2, n_trials=8, fnirs=True)


@pytest.mark.parametrize(
    ("suffix", "kind", "tolerance_uv", "prefix"),
    [
        (".edf", "EDF", 5e-3, ""),  # 16-bit samples over the channel's range
        (".bdf", "BDF", 1e-4, ""),  # 24-bit
        (".fif", "FIF", 1e-4, ""),  # float32
        (".vhdr", "BrainVision", 1e-4, "Comment/"),  # markers read back with their type
    ],
)
def test_mne_formats_read_eeg_in_microvolts_and_events(session, tmp_path, suffix, kind,
                                                       tolerance_uv, prefix):  # fmt: skip
    path = write_mne(session, tmp_path / f"run{suffix}", CODES)
    recording = read_recording(path)
    assert recording.format == kind
    assert recording.nirs is None
    assert recording.eeg.ch_names == session.eeg_names
    assert recording.eeg.sfreq == session.sfreq
    assert_allclose(recording.eeg.data, session.eeg, atol=tolerance_uv)
    assert_allclose(recording.eeg.times, np.arange(len(session.eeg)) / session.sfreq)
    assert [e.code for e in recording.events] == [prefix + CODES[lab] for lab in session.labels]
    assert_allclose([e.onset for e in recording.events], session.onsets)
    assert len(recording.sha256) == 64


def test_without_annotations_the_stim_channel_gives_the_codes(session, tmp_path):
    import mne

    stim = np.zeros(len(session.eeg))
    onsets = np.round(session.onsets * session.sfreq).astype(int)
    stim[onsets] = [769 if label == "left" else 770 for label in session.labels]
    info = mne.create_info([*session.eeg_names, "STI 014"], session.sfreq,
                           ["eeg"] * len(session.eeg_names) + ["stim"])  # fmt: skip
    raw = mne.io.RawArray(np.vstack([session.eeg.T * 1e-6, stim]), info, verbose="error")
    raw.save(tmp_path / "trig_raw.fif", verbose="error")
    recording = read_recording(tmp_path / "trig_raw.fif")
    assert recording.eeg.ch_names == session.eeg_names  # the stim channel is not EEG
    assert [e.code for e in recording.events] == [
        "769" if label == "left" else "770" for label in session.labels
    ]
    assert_allclose([e.onset for e in recording.events], session.onsets)


def test_snirf_reads_raw_intensities_and_annotations(session, tmp_path):
    recording = read_recording(write_snirf(session, tmp_path / "run.snirf"))
    assert recording.format == "SNIRF" and recording.eeg is None
    assert recording.nirs.ch_names == session.nirs_names
    assert recording.nirs.sfreq == pytest.approx(session.nirs_sfreq)
    assert_allclose(recording.nirs.data, session.nirs, rtol=1e-6)
    assert [e.code for e in recording.events] == list(session.labels)
    assert_allclose([e.onset for e in recording.events], session.onsets, atol=1e-6)


def test_neuroloop_xdf_reads_eeg_nirs_and_cue_markers(session, tmp_path):
    recording = read_recording(write_session_xdf(session, tmp_path / "session.xdf", t0=500.0))
    eeg = recording.eeg
    assert eeg.source == "stream 'Test-EEG'"
    assert eeg.ch_names == (*session.eeg_names, "SampleIndex")
    assert eeg.eeg_names == session.eeg_names  # the MISC index stays out of CAR and "all"
    assert_allclose(eeg.data[:, :-1], session.eeg)
    assert_array_equal(eeg.data[:, -1], np.arange(len(session.eeg)))
    assert_allclose(eeg.times[0], 500.0)
    assert recording.nirs.ch_names == session.nirs_names
    assert_allclose(recording.nirs.data, session.nirs)
    cues = [e for e in recording.events if e.code != "rest"]
    assert [e.code for e in cues] == list(session.labels)  # the JSON Events stream is not read
    assert_allclose([e.onset for e in cues], 500.0 + session.onsets)
    assert recording.code_counts()["rest"] == len(session.labels)


def test_generic_xdf_picks_eeg_by_type_largest_montage_and_numeric_markers(tmp_path):
    rng = np.random.default_rng(0)
    times = 10.0 + np.arange(500) / 100.0
    streams = [
        {"name": "Aux", "type": "EEG", "srate": 100, "data": rng.normal(size=(500, 2)),
         "times": times, "channels": ["X1", "X2"], "ch_type": "EEG", "unit": "microvolts"},
        {"name": "Cap", "type": "EEG", "srate": 100, "data": rng.normal(size=(500, 4)),
         "times": times, "channels": ["C3", "Cz", "C4", "Pz"], "ch_type": "EEG",
         "unit": "microvolts"},
        {"name": "Trig", "type": "Markers", "srate": 0, "markers": ["769", "770"],
         "times": np.array([11.0, 13.0])},
        {"name": "Keys", "type": "Markers", "srate": 0, "markers": ["space"],
         "times": np.array([12.0])},
    ]  # fmt: skip
    recording = read_recording(write_xdf(tmp_path / "lab.xdf", streams))
    assert recording.eeg.ch_names == ("C3", "Cz", "C4", "Pz")
    assert_allclose(recording.eeg.data, streams[1]["data"])
    assert [(e.onset, e.code) for e in recording.events] == [
        (11.0, "769"), (12.0, "space"), (13.0, "770"),
    ]  # fmt: skip


def test_labrecorder_xdf_of_real_lsl_outlets_is_read(index_source, unique_name, tmp_path):
    from bci.record import Recorder

    source = index_source(n_channels=3, sfreq=200.0)
    markers = pylsl.StreamOutlet(
        pylsl.StreamInfo(f"{unique_name}-M", "Markers", 1, 0, "string", f"{unique_name}-M")
    )
    path = tmp_path / "lab.xdf"
    with Recorder(path, [source.name, f"{unique_name}-M"]):
        assert markers.wait_for_consumers(5)
        wait_for(lambda: False, 0.5)
        sent_at = pylsl.local_clock()
        markers.push_sample(["left"], sent_at)
        # LabRecorder writes what it pulled about every 0.5 s: wait long enough that EEG from
        # after the marker is in the file when it stops
        wait_for(lambda: False, 1.5)
    recording = read_recording(path)
    assert recording.eeg.ch_names == ("EEG000", "EEG001", "EEG002", "SampleIndex")
    assert recording.eeg.sfreq == 200.0
    index = recording.eeg.data[:, -1]
    assert_array_equal(np.diff(index), 1)  # nothing dropped or repeated
    assert [e.code for e in recording.events] == ["left"]
    assert recording.eeg.times[0] < recording.events[0].onset < recording.eeg.times[-1]


def test_unknown_missing_and_corrupt_files_are_named(tmp_path):
    with pytest.raises(TrainingInputError, match=r"unknown file type '\.csv'.*EDF"):
        file_format(tmp_path / "data.csv")
    with pytest.raises(TrainingInputError, match="no such file"):
        read_recording(tmp_path / "absent.edf")
    broken = tmp_path / "broken.edf"
    broken.write_bytes(b"0       not an EDF header" * 10)
    with pytest.raises(TrainingInputError, match=r"broken\.edf: cannot read this EDF file"):
        read_recording(broken)
    not_xdf = tmp_path / "notes.xdf"
    not_xdf.write_text("meeting notes, not a recording")
    with pytest.raises(TrainingInputError, match=r"notes\.xdf: cannot read this XDF file"):
        read_recording(not_xdf)
    empty = tmp_path / "empty.xdf"
    empty.write_bytes(b"XDF:")
    with pytest.raises(TrainingInputError, match="holds no EEG channels and no raw fNIRS"):
        read_recording(empty)


def test_parse_events_forms_and_mistakes():
    assert parse_events(["769=left,770=right"]) == {"769": "left", "770": "right"}
    assert parse_events(["T1=left", "T2=right, T3=right"]) == {
        "T1": "left", "T2": "right", "T3": "right",
    }  # fmt: skip
    assert parse_events(["Stimulus/S  1=left,Stimulus/S  2=right"])["Stimulus/S  1"] == "left"
    with pytest.raises(TrainingInputError, match="not CODE=label"):
        parse_events(["left"])
    with pytest.raises(TrainingInputError, match="two labels"):
        parse_events(["1=left,1=right"])
    with pytest.raises(TrainingInputError, match="at least two classes"):
        parse_events(["1=left,2=left"])


def test_default_picks_are_c3_cz_c4_else_every_eeg_channel(session, tmp_path):
    full = read_recording(write_mne(session, tmp_path / "a.fif"))
    pre = PreprocessingSection()
    assert resolve_picks(pre, None, False, [full]).picks == ["C3", "Cz", "C4"]
    assert resolve_picks(pre, "all", False, [full]).picks == list(session.eeg_names)
    assert resolve_picks(pre, "C3, C4", False, [full]).picks == ["C3", "C4"]
    with pytest.raises(TrainingInputError, match=r"\['Xx'\] not among.*'Fz'"):
        resolve_picks(pre, "C3,Xx", False, [full])
    explicit = PreprocessingSection(picks=["C3", "C4"])
    assert resolve_picks(explicit, None, True, [full]) is explicit


def test_missing_picks_and_unmatched_codes_list_what_the_file_has(session, tmp_path):
    recording = read_recording(write_mne(session, tmp_path / "a.fif", CODES))
    with pytest.raises(TrainingInputError, match=r"lacks the picked channels \['O9'\].*'Fz'"):
        preprocess_eeg(recording, PreprocessingSection(picks=["C3", "O9"]))
    with pytest.raises(
        TrainingInputError, match=r"no event matches.*the file has 'T.' ×4, 'T.' ×4"
    ):
        matching_trials(recording, {"769": "left", "770": "right"})


def test_windows_equal_the_engines_calibration_windows(session, tmp_path):
    """The same causal pipeline on the continuous record, the same windows."""
    recording = read_recording(write_mne(session, tmp_path / "a.fif", CODES))
    pre, dec = PreprocessingSection(), DecoderSection()
    epoch = Epoching(dec.epoch_tmin_s, dec.epoch_tmax_s, {"eeg": pre.window_s})
    data = trial_windows([recording], {"T1": "left", "T2": "right"}, epoch, pre)

    pipeline = eeg_pipeline(pre, session.eeg_names, session.sfreq)
    ring = RingBuffer(len(session.eeg), len(pre.picks))
    times = np.arange(len(session.eeg)) / session.sfreq
    for start in range(0, len(times), 37):  # the engine sees small chunks
        ring.write(*pipeline(session.eeg[start : start + 37], times[start : start + 37]))
    cues = list(zip(session.onsets, session.labels, strict=True))
    windows, labels, groups, *_ = calibration_windows(ring, cues, session.sfreq, dec, pre)

    assert_allclose(data.windows["eeg"], windows, atol=1e-3)  # µV; FIF stores float32
    assert_array_equal(data.labels, labels)
    assert_array_equal(data.groups, groups)
    assert data.n_dropped == 0
    assert data.ch_names["eeg"] == ("C3", "Cz", "C4")


def test_fnirs_windows_are_hbo_hbr_of_the_engine_pipeline_and_end_with_eeg(session, tmp_path):
    recording = read_recording(write_session_xdf(session, tmp_path / "s.xdf", t0=0.0))
    pre = PreprocessingSection()
    epoch = Epoching(0.5, 2.5, {"eeg": 1.0, "nirs": 5.0})
    data = trial_windows([recording], {"left": "left", "right": "right"}, epoch, pre)
    hb, hb_times = fnirs_pipeline(session.nirs_names)(
        session.nirs, np.arange(len(session.nirs)) / session.nirs_sfreq
    )
    assert data.ch_names["nirs"] == tuple(fnirs_pipeline(session.nirs_names).ch_names_out)
    assert data.windows["nirs"].shape[1:] == (50, 16)
    # the first trial (cue at 3 s) has no 5 s of fNIRS before its first window ends: dropped
    assert data.n_dropped == 1
    # trial 1's first EEG window is [cue + 0.5 s, cue + 1.5 s): its last sample ends the fNIRS one
    first_end = session.onsets[1] + 1.5 - 1 / session.sfreq
    stop = np.searchsorted(hb_times, first_end, side="right")
    assert_allclose(data.windows["nirs"][0], hb[stop - 50 : stop])
    assert_array_equal(np.unique(data.groups), np.arange(1, len(session.labels)))


def test_a_trial_across_a_gap_or_past_the_end_is_dropped(session, tmp_path):
    recording = read_recording(write_mne(session, tmp_path / "a.fif", CODES))
    eeg = recording.eeg
    gap = eeg.times.copy()
    gap[gap >= session.onsets[2] + 1.0] += 5.0  # 5 s lost inside trial 2's epoch
    moved = type(recording)(
        recording.path, recording.format, recording.sha256,
        type(eeg)(eeg.data, gap, eeg.sfreq, eeg.ch_names, eeg.ch_types, eeg.source),
        None, recording.events,
    )  # fmt: skip
    epoch = Epoching(0.5, 2.5, {"eeg": 1.0})
    data = trial_windows([moved], {"T1": "left", "T2": "right"}, epoch, PreprocessingSection())
    assert 2 not in data.groups
    assert data.n_dropped == 1
    late = Epoching(0.5, 60.0, {"eeg": 1.0})
    with pytest.raises(TrainingInputError, match=r"no trial.*runs past the end"):
        trial_windows([recording], {"T1": "left", "T2": "right"}, late, PreprocessingSection())


def test_epoch_shorter_than_the_window_is_refused():
    with pytest.raises(TrainingInputError, match="shorter than the eeg window"):
        Epoching(0.5, 1.0, {"eeg": 1.0})


def test_trial_probabilities_and_wilson_interval():
    proba = np.array([[0.9, 0.1], [0.3, 0.7], [0.2, 0.8], [0.4, 0.6]])
    trials, mean = trial_proba(proba, np.array([5, 5, 7, 7]))
    assert_array_equal(trials, [5, 7])
    assert_allclose(mean, [[0.6, 0.4], [0.3, 0.7]])
    # Wilson (1927) 95 % interval for 8 of 10: 0.490–0.943 (e.g. Newcombe 1998, table I)
    assert_allclose(wilson_interval(8, 10), (0.4902, 0.9433), atol=1e-4)
    assert wilson_interval(0, 10)[0] == 0.0


def test_holdout_takes_whole_trials_of_every_class_and_scores_are_per_trial():
    groups = np.repeat(np.arange(10), 3)  # 10 trials of 3 windows
    labels = np.repeat(["left"] * 7 + ["right"] * 3, 3)
    data = TrialWindows({}, labels, groups, {}, {}, 0)
    held = holdout_mask(data.labels, data.groups, 0.25)
    held_trials = np.unique(groups[held])
    assert all(held[groups == trial].all() for trial in held_trials)  # trials stay whole
    assert sorted(labels[held][::3]) == ["left", "left", "right"]  # round(0.25·7), ≥ 1 of 3
    assert not holdout_mask(data.labels, data.groups, 0.0).any()

    proba = np.tile([[0.8, 0.2]], (30, 1))  # always "left"
    score = score_trials(proba, data, ("left", "right"))
    assert score["accuracy"] == score["chance"] == 0.7 and score["n_trials"] == 10
    assert score["confusion"] == [[7, 0], [3, 0]]
