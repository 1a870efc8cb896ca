"""load_recording: every stream of XDF (whole, truncated, corrupt, split into parts, recorded by
LabRecorder) and of the files MNE reads (EDF, BDF, FIF, BrainVision, SNIRF), in one shape."""

from __future__ import annotations

import datetime as dt
import gzip
import struct
from pathlib import Path

import mne
import numpy as np
import pylsl
import pytest
import pyxdf
from numpy.testing import assert_allclose, assert_array_equal

from bci.replay import NoStreamsError, RecordingError, load_recording
from tests.conftest import wait_for

DATETIME = "2024-05-06T07:08:09+0000"
_DTYPES = {"float32": "<f4", "double64": "<f8", "int8": "<i1", "int16": "<i2", "int32": "<i4",
           "int64": "<i8"}  # fmt: skip


# A small XDF writer: minimal-width length fields (1 or 4 bytes, as LabRecorder writes them),
# sample chunks interleaved across streams, optional footers and clock offsets ------------------
def _varlen(n: int) -> bytes:
    return b"\x01" + bytes([n]) if n < 256 else b"\x04" + struct.pack("<I", n)


def _chunk(tag: int, content: bytes) -> bytes:
    return _varlen(len(content) + 2) + struct.pack("<H", tag) + content


def _header(s: dict) -> bytes:
    channels = s.get("channels")
    desc = "<acquisition><manufacturer>Test</manufacturer></acquisition>"
    if channels is not None:
        desc += "<channels>" + "".join(
            "<channel>" + (f"<label>{label}</label>" if label else "") + f"<type>{kind}</type>"
            f"<unit>{unit}</unit></channel>" for label, kind, unit in channels
        ) + "</channels>"  # fmt: skip
    n_channels = s.get("channel_count", len(s["data"][0]) if len(s["data"]) else 1)
    return (
        f'<?xml version="1.0"?><info><name>{s["name"]}</name><type>{s["type"]}</type>'
        f"<channel_count>{n_channels}</channel_count><nominal_srate>{s['srate']}"
        f"</nominal_srate><channel_format>{s.get('fmt', 'double64')}</channel_format>"
        f"<source_id>{s['name']}-id</source_id><desc>{desc}</desc></info>"
    ).encode()


def _samples(s: dict, rows: range) -> bytes:
    fmt = s.get("fmt", "double64")
    body = bytearray()
    for i in rows:
        if s.get("omit_stamps") and i % 2:  # deduced from the previous one + 1/srate
            body += b"\x00"
        else:
            body += b"\x08" + struct.pack("<d", s["times"][i])
        if fmt == "string":
            for value in s["data"][i]:
                body += _varlen(len(value.encode())) + value.encode()
        else:
            body += np.asarray(s["data"][i]).astype(_DTYPES[fmt]).tobytes()
    return _varlen(len(rows)) + bytes(body)


def xdf_bytes(streams: list[dict], footers: bool = True, offsets: bool = True,
              chunk_samples: int = 40) -> bytes:  # fmt: skip
    """An XDF file of ``streams`` (dicts: name, type, srate, fmt, data, times, channels as
    (label, type, unit) tuples or None, optional channel_count and omit_stamps)."""
    info = f'<?xml version="1.0"?><info><version>1.0</version><datetime>{DATETIME}</datetime>'
    out = [b"XDF:", _chunk(1, (info + "</info>").encode())]
    ids = [struct.pack("<I", sid) for sid in range(1, len(streams) + 1)]
    out += [_chunk(2, sid + _header(s)) for sid, s in zip(ids, streams, strict=True)]
    longest = max(len(s["times"]) for s in streams)
    for start in range(0, longest, chunk_samples):
        for sid, s in zip(ids, streams, strict=True):
            rows = range(start, min(start + chunk_samples, len(s["times"])))
            if len(rows):
                out.append(_chunk(3, sid + _samples(s, rows)))
    for sid, s in zip(ids, streams, strict=True):
        if offsets:
            out += [_chunk(4, sid + struct.pack("<dd", t, 0.0)) for t in (0.0, 1e4)]
        if footers:
            footer = f'<?xml version="1.0"?><info><sample_count>{len(s["times"])}</sample_count>'
            out.append(_chunk(6, sid + (footer + "</info>").encode()))
    return b"".join(out)


def chunk_starts(data: bytes) -> list[tuple[int, int]]:
    """(offset, tag) of each chunk of an XDF file's bytes."""
    pos, starts = 4, []
    while pos < len(data):
        n = data[pos]
        length = int.from_bytes(data[pos + 1 : pos + 1 + n], "little")
        starts.append((pos, int.from_bytes(data[pos + 1 + n : pos + 3 + n], "little")))
        pos += 1 + n + length
    return starts


def lab_streams(t0: float = 100.0, n: int = 200) -> list[dict]:
    """An EEG stream (float32, µV, with a MISC sample index), a Markers stream and a 16-bit
    accelerometer without labels."""
    rng = np.random.default_rng(3)
    eeg = np.column_stack([rng.normal(0, 20, (n, 3)), np.arange(n)]).astype(np.float32)
    return [
        {"name": "Amp-EEG", "type": "EEG", "srate": 100.0, "fmt": "float32", "data": eeg,
         "times": t0 + np.arange(n) / 100.0,
         "channels": [("C3", "EEG", "microvolts"), ("Cz", "EEG", "microvolts"),
                      ("C4", "EEG", "microvolts"), ("SampleIndex", "MISC", "")]},
        {"name": "Cues", "type": "Markers", "srate": 0, "fmt": "string",
         "data": [["left"], ["rest"], ["right"]], "times": t0 + np.array([0.5, 1.0, 1.5]),
         "channels": None},
        {"name": "Accel", "type": "Accelerometer", "srate": 50.0, "fmt": "int16",
         "data": rng.integers(-500, 500, (n // 2, 2)), "times": t0 + np.arange(n // 2) / 50,
         "channels": [(None, "", ""), (None, "", "")], "omit_stamps": True},
    ]  # fmt: skip


@pytest.fixture
def lab_file(tmp_path) -> Path:
    path = tmp_path / "lab.xdf"
    path.write_bytes(xdf_bytes(lab_streams()))
    return path


# XDF -----------------------------------------------------------------------------------------
def test_xdf_streams_keep_headers_channels_samples_and_timestamps(lab_file):
    recording = load_recording(lab_file)
    source = lab_streams()
    assert recording.format == "XDF" and recording.warnings == [] and recording.parts == []
    assert recording.meas_date == dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.UTC)
    eeg, cues, accel = recording.streams
    assert (eeg.name, eeg.type, eeg.source_id, eeg.srate, eeg.channel_format) == (
        "Amp-EEG", "EEG", "Amp-EEG-id", 100.0, "float32")  # fmt: skip
    assert eeg.ch_names == ["C3", "Cz", "C4", "SampleIndex"]
    assert eeg.ch_types == ["EEG", "EEG", "EEG", "MISC"]
    assert eeg.units == ["microvolts"] * 3 + [""]
    assert eeg.data.dtype == np.float64 and eeg.data.shape == (200, 4)
    assert_array_equal(eeg.data, source[0]["data"])
    assert_array_equal(eeg.timestamps, source[0]["times"])  # as recorded, not dejittered
    assert eeg.desc["acquisition"][0]["manufacturer"] == ["Test"]
    assert eeg.duration_s == pytest.approx(1.99)
    assert cues.is_string and cues.srate == 0.0 and cues.data.dtype == object
    assert cues.data[:, 0].tolist() == ["left", "rest", "right"]
    assert cues.ch_names == ["ch1"] and cues.ch_types == [""] and cues.units == [""]
    assert accel.ch_names == ["ch1", "ch2"] and not accel.is_string
    assert_array_equal(accel.data, source[2]["data"])
    assert_allclose(accel.timestamps, source[2]["times"], atol=1e-9)  # half deduced by rate
    assert recording.duration_s == pytest.approx(1.99)


def test_streams_are_found_by_name_and_type_or_named_in_the_error(lab_file):
    recording = load_recording(lab_file)
    assert recording.stream(type="eeg").name == "Amp-EEG"  # type: any case
    assert recording.stream(name="Cues", type="Markers").n_samples == 3
    assert recording.find(name="Absent") is None
    with pytest.raises(
        RecordingError,
        match=r"no stream named 'Absent'.*holds: 'Amp-EEG' "
        r"\(EEG, 4 ch, 100 Hz, 200 samples\); 'Cues'",
    ):
        recording.stream(name="Absent")
    with pytest.raises(RecordingError, match=r"no stream of type 'NIRS'"):
        recording.stream(type="NIRS")
    doubled = type(recording)(recording.path, "XDF", recording.streams * 2, [])
    with pytest.raises(RecordingError, match=r"2 streams match a stream of type 'EEG': 'Amp-EEG'"
                                             r".*Ask for one by name"):  # fmt: skip
        doubled.find(type="EEG")
    with pytest.raises(
        RecordingError, match=r"lab\.xdf holds 3 streams \('Amp-EEG'.*ask for one by name or type"
    ):
        recording.find()


def test_part_files_are_appended_and_a_part_alone_loads_alone(tmp_path):
    streams = lab_streams()
    (tmp_path / "session.xdf").write_bytes(xdf_bytes(streams[:1]))
    (tmp_path / "session.part10.xdf").write_bytes(xdf_bytes(streams[2:]))
    (tmp_path / "session.part2.xdf").write_bytes(xdf_bytes(streams[1:2]))
    (tmp_path / "session.part3.xdf").write_bytes(b"XDF:")  # the recorder stopped at once
    (tmp_path / "other.part4.xdf").write_bytes(xdf_bytes(streams[2:]))
    recording = load_recording(tmp_path / "session.xdf")
    assert [s.name for s in recording.streams] == ["Amp-EEG", "Cues", "Accel"]
    assert [p.name for p in recording.parts] == [
        "session.part2.xdf", "session.part3.xdf", "session.part10.xdf"]  # fmt: skip
    assert recording.warnings == [
        "session.part3.xdf: skipped, "
        f"{tmp_path / 'session.part3.xdf'}: holds no streams; nothing was recorded into it. "
        "Check that the recorder saw the streams (bci streams)."
    ]
    assert_array_equal(recording.stream("Cues").timestamps, streams[1]["times"])  # one clock
    part = load_recording(tmp_path / "session.part2.xdf")
    assert [s.name for s in part.streams] == ["Cues"] and part.parts == []


def test_compressed_xdfz_reads_like_xdf(tmp_path, lab_file):
    path = tmp_path / "lab.xdfz"
    path.write_bytes(gzip.compress(lab_file.read_bytes()))
    recording = load_recording(path)
    assert [s.n_samples for s in recording.streams] == [200, 3, 100]
    path.write_bytes(gzip.compress(lab_file.read_bytes())[:-400])  # cut, as a killed writer
    assert "truncated" in load_recording(path).warnings[0]


def test_truncated_at_any_byte_loads_what_precedes_the_cut(tmp_path):
    """Every cut of a small file: a prefix of each stream and a warning, or no streams yet."""
    streams = lab_streams(n=30)
    for s in streams:
        s.pop("omit_stamps", None)
    whole = xdf_bytes(streams, chunk_samples=10, offsets=False)  # pyxdf fits offsets slowly
    full = load_recording(_written(tmp_path / "full.xdf", whole))
    boundaries = {pos for pos, _ in chunk_starts(whole)}
    empty, loaded = [], []
    cuts = sorted({*range(5, len(whole), 3), *boundaries, *(b + 1 for b in boundaries)})
    for cut in cuts:
        path = _written(tmp_path / "cut.xdf", whole[:cut])
        try:
            recording = load_recording(path)
        except NoStreamsError as error:
            assert "holds no streams" in str(error)  # "before it is cut" unless on a boundary
            empty.append(cut)
            continue
        loaded.append(cut)
        if cut in boundaries:  # cut between chunks: as if the recorder were killed there
            assert recording.warnings[0].startswith("no footer for stream(s)"), cut
        else:
            assert recording.warnings[0].startswith("the file is truncated"), cut
            assert f"of {cut:,} bytes" in recording.warnings[0]
        for got, want in zip(recording.streams, full.streams, strict=False):
            assert_array_equal(got.data, want.data[: got.n_samples])
            assert_array_equal(got.timestamps, want.timestamps[: got.n_samples])
    assert max(empty) < min(loaded)  # no streams only while the first header is cut
    assert len(loaded) > len(cuts) * 0.7


@pytest.mark.parametrize("fraction", [0.3, 0.5, 0.9, 0.999])
def test_truncated_labrecorder_style_file_says_how_much_was_read(tmp_path, fraction):
    whole = xdf_bytes(lab_streams(n=400), footers=False, offsets=False)
    cut = int(len(whole) * fraction)
    recording = load_recording(_written(tmp_path / "killed.xdf", whole[:cut]))
    eeg = recording.stream("Amp-EEG")
    assert 0 < eeg.n_samples < 400
    assert_array_equal(eeg.data[:, -1], np.arange(eeg.n_samples))  # nothing stale or skipped
    assert f"of {cut:,} bytes" in recording.warnings[0]
    assert "no clock offsets" in recording.warnings[-1]


def test_no_footers_without_a_cut_is_a_warning(tmp_path):
    path = _written(tmp_path / "open.xdf", xdf_bytes(lab_streams(), footers=False))
    recording = load_recording(path)
    assert [s.n_samples for s in recording.streams] == [200, 3, 100]
    assert recording.warnings == [
        "no footer for stream(s) ['Amp-EEG', 'Cues', 'Accel']: the recorder did not close the "
        "file (stopped abruptly?); everything it wrote was read."
    ]


def test_corrupt_chunks_are_refused_with_their_offset(tmp_path):
    whole = xdf_bytes(lab_streams())
    at = [pos for pos, tag in chunk_starts(whole) if tag == 3][3]  # the 4th Samples chunk
    path = _written(tmp_path / "bad.xdf", whole[:at] + b"\x07" + whole[at + 1 :])
    with pytest.raises(RecordingError, match=rf"bad\.xdf: corrupt XDF at byte {at:,}: a chunk "
                                             r"length field of 7 bytes.*head -c"):  # fmt: skip
        load_recording(path)
    # what the message says to do: the part before the corrupt chunk loads
    _written(tmp_path / "cut.xdf", whole[:at])
    assert load_recording(tmp_path / "cut.xdf").streams[0].n_samples > 0

    unknown_tag = whole[:at] + _chunk(9, b"????") + whole[at:]
    with pytest.raises(RecordingError, match=r"unknown tag 9"):
        load_recording(_written(tmp_path / "tag.xdf", unknown_tag))
    orphan = whole[:at] + _chunk(3, struct.pack("<I", 7) + b"\x01\x00") + whole[at:]
    with pytest.raises(RecordingError, match=r"stream id 7, whose header has not come yet"):
        load_recording(_written(tmp_path / "orphan.xdf", orphan))


def test_sample_rows_that_do_not_match_channel_count_are_corrupt(tmp_path):
    streams = lab_streams()
    streams[0]["channel_count"] = 5  # the rows hold 4 values
    whole = xdf_bytes(streams)
    first = next(pos for pos, tag in chunk_starts(whole) if tag == 3)
    # 40 rows of 4 float32 values with stamps fit the length 40 rows of 5 could have (fewer
    # stamps), so the chunk is refused when pyxdf's reading does not end at the chunk's end
    with pytest.raises(RecordingError, match=rf"rows\.xdf: corrupt XDF at byte {first:,}: a "
                                             r"Samples chunk of stream 'Amp-EEG' whose samples "
                                             r"do not fill it exactly: the header's "
                                             r"channel_count"):  # fmt: skip
        load_recording(_written(tmp_path / "rows.xdf", whole))
    streams[0]["channel_count"] = 7  # 40 × (1 + 28) > 1000 bytes: seen in the framing
    with pytest.raises(RecordingError, match=r"cannot hold 40 samples of 7 float32 channels"):
        load_recording(_written(tmp_path / "rows.xdf", xdf_bytes(streams)))


def test_channel_labels_that_disagree_with_channel_count_get_generic_names(tmp_path):
    streams = lab_streams()
    streams[0]["channels"] = streams[0]["channels"][:3]
    recording = load_recording(_written(tmp_path / "labels.xdf", xdf_bytes(streams)))
    eeg = recording.stream("Amp-EEG")
    assert eeg.ch_names == ["ch1", "ch2", "ch3", "ch4"] and eeg.ch_types == [""] * 4
    assert recording.warnings == [
        "stream 'Amp-EEG' declares 4 channels but describes 3; its channels are named "
        "ch1…ch4 instead."
    ]


def test_missing_unknown_and_non_xdf_files_are_named(tmp_path):
    with pytest.raises(RecordingError, match=r"absent\.xdf: no such file"):
        load_recording(tmp_path / "absent.xdf")
    with pytest.raises(RecordingError, match=r"folder\.edf: is a folder"):
        (tmp_path / "folder.edf").mkdir()
        load_recording(tmp_path / "folder.edf")
    with pytest.raises(
        RecordingError,
        match=r"unknown file type '\.csv'; readable recordings "
        r"are BDF, BrainVision, EDF.*XDF \(\.edf, \.bdf",
    ):
        load_recording(_written(tmp_path / "data.csv", b"1,2"))
    noise = np.random.default_rng(0).bytes(3000)
    with pytest.raises(
        RecordingError,
        match=r"noise\.xdf: cannot read this XDF file: it starts "
        r"with b'.*', not with the XDF magic",
    ):
        load_recording(_written(tmp_path / "noise.xdf", noise))
    with pytest.raises(RecordingError, match=r"it is empty"):
        load_recording(_written(tmp_path / "empty.xdf", b""))
    with pytest.raises(NoStreamsError, match=r"magic\.xdf: holds no streams; nothing was"):
        load_recording(_written(tmp_path / "magic.xdf", b"XDF:"))
    with pytest.raises(RecordingError, match=r"broken\.edf: cannot read this EDF file"):
        load_recording(_written(tmp_path / "broken.edf", b"0       not an EDF header" * 10))


def test_labrecorder_recording_of_real_outlets(index_source, unique_name, tmp_path):
    from bci.record import Recorder

    source = index_source(n_channels=2, sfreq=250.0)
    name = f"{unique_name}-M"
    markers = pylsl.StreamOutlet(pylsl.StreamInfo(name, "Markers", 1, 0, "string", name))
    path = tmp_path / "lab.xdf"
    with Recorder(path, [source.name, name]):
        assert markers.wait_for_consumers(5)
        wait_for(lambda: False, 0.3)
        markers.push_sample(["go"], pylsl.local_clock())
        wait_for(lambda: False, 1.2)  # LabRecorder writes about every 0.5 s
    recording = load_recording(path)
    assert recording.warnings == []
    assert recording.meas_date is not None
    eeg, cue = recording.stream(source.name), recording.stream(name)
    assert eeg.ch_names == ["EEG000", "EEG001", "SampleIndex"] and eeg.srate == 250.0
    assert eeg.channel_format == "float32" and eeg.source_id == source.name
    assert_array_equal(np.diff(eeg.data[:, -1]), 1)  # nothing dropped or repeated
    raw = {s["info"]["name"][0]: s for s in pyxdf.load_xdf(
        str(path), synchronize_clocks=True, dejitter_timestamps=False)[0]}  # fmt: skip
    assert_array_equal(eeg.timestamps, raw[source.name]["time_stamps"])  # not dejittered
    assert cue.data[:, 0].tolist() == ["go"]
    assert eeg.timestamps[0] < cue.timestamps[0] < eeg.timestamps[-1]


# MNE-readable files ------------------------------------------------------------------------------
def _raw(n_channels: int = 4, sfreq: float = 200.0, seconds: float = 4.0) -> mne.io.RawArray:
    rng = np.random.default_rng(1)
    names = ["Fz", "C3", "Cz", "C4", "Pz"][:n_channels]
    info = mne.create_info(names, sfreq, "eeg")
    raw = mne.io.RawArray(rng.normal(0, 20e-6, (n_channels, int(seconds * sfreq))), info,
                          verbose="error")  # fmt: skip
    raw.set_annotations(mne.Annotations([0.5, 1.25, 3.0], 0.0, ["T1", "T2", "T1"]))
    return raw


def _written(path: Path, content) -> Path:
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif path.suffix == ".fif":
        content.save(path, verbose="error")
    else:
        mne.export.export_raw(path, content, verbose="error")
    return path


@pytest.mark.parametrize(
    ("name", "kind", "atol_uv", "prefix"),
    [("run.edf", "EDF", 5e-3, ""), ("run.bdf", "BDF", 1e-4, ""),
     ("run_raw.fif", "FIF", 1e-4, ""), ("run.vhdr", "BrainVision", 1e-4, "Comment/")],
)  # fmt: skip
def test_mne_files_give_one_microvolt_stream_and_annotations_as_markers(
    tmp_path, name, kind, atol_uv, prefix
):
    raw = _raw()
    recording = load_recording(_written(tmp_path / name, raw))
    assert recording.format == kind and recording.warnings == []
    stem = name.split(".")[0]
    assert [s.name for s in recording.streams] == [stem, f"{stem}-Markers"]
    eeg, markers = recording.streams
    assert (eeg.type, eeg.srate, eeg.channel_format, eeg.source_id) == (
        "EEG", 200.0, "double64", name)  # fmt: skip
    assert eeg.ch_names == raw.ch_names and eeg.ch_types == ["eeg"] * 4
    assert eeg.units == ["microvolts"] * 4 and eeg.desc == {}
    assert_allclose(eeg.data, raw.get_data().T * 1e6, atol=atol_uv)
    assert_allclose(eeg.timestamps, raw.times)
    assert (markers.type, markers.srate, markers.ch_names) == ("Markers", 0.0, ["marker"])
    assert markers.data[:, 0].tolist() == [prefix + d for d in ("T1", "T2", "T1")]
    assert_allclose(markers.timestamps, [0.5, 1.25, 3.0], atol=1e-9)


def test_voltage_channels_in_microvolts_others_in_their_unit_and_cropped_time_base(tmp_path):
    types = ["eeg", "eog", "ecg", "emg", "seeg", "misc", "stim", "resp"]
    info = mne.create_info([f"X{i}" for i in range(len(types))], 100.0, types)
    data = np.random.default_rng(2).normal(0, 1e-4, (len(types), 1000))
    raw = mne.io.RawArray(data, info, verbose="error")
    start = dt.datetime(2023, 3, 4, 5, 6, 7, tzinfo=dt.UTC)
    raw.set_meas_date(start)
    raw.set_annotations(mne.Annotations([2.0, 7.5], [0.0, 1.0], ["a", "b"], orig_time=start))
    raw.crop(tmin=1.5)  # the file's first sample is now 1.5 s after meas_date
    path = _written(tmp_path / "mixed_raw.fif", raw)
    recording = load_recording(path)
    stream = recording.streams[0]
    assert stream.type == "EEG" and stream.ch_types == types
    assert stream.units == ["microvolts"] * 5 + ["", "V", "V"]  # MNE's units: misc has none
    stored = mne.io.read_raw(path, verbose="error").get_data().T
    assert_array_equal(stream.data[:, :5], stored[:, :5] * 1e6)
    assert_array_equal(stream.data[:, 5:], stored[:, 5:])
    assert stream.timestamps[0] == 0.0
    assert_allclose(recording.stream(type="Markers").timestamps, [0.5, 6.0], atol=1e-9)
    assert recording.meas_date == start + dt.timedelta(seconds=1.5)


def test_without_annotations_there_is_no_markers_stream(tmp_path):
    raw = _raw().set_annotations(None)
    recording = load_recording(_written(tmp_path / "plain_raw.fif", raw))
    assert [s.name for s in recording.streams] == ["plain_raw"]
    assert recording.find(type="Markers") is None


def test_snirf_is_a_nirs_stream_of_raw_intensities(tmp_path):
    from tests.train.recordings import simulate, write_snirf

    session = simulate(seed=4, n_trials=2, fnirs=True, trial_s=4.0)
    recording = load_recording(write_snirf(session, tmp_path / "optodes.snirf"))
    nirs, markers = recording.streams
    assert recording.format == "SNIRF" and nirs.type == "NIRS"
    assert nirs.ch_names == list(session.nirs_names)
    assert set(nirs.ch_types) == {"fnirs_cw_amplitude"} and set(nirs.units) == {"V"}
    assert_allclose(nirs.data, session.nirs, rtol=1e-6)
    assert markers.data[:, 0].tolist() == list(session.labels)
    assert_allclose(markers.timestamps, session.onsets, atol=1e-6)
    assert recording.meas_date == dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
