"""LabRecorder driven by NeuroLoop: real LabRecorderCLI, real LSL, file read back by pyxdf."""

import pylsl
import pytest
import pyxdf

from bci.record import Recorder
from tests.conftest import wait_for


def test_records_named_streams_to_an_xdf_pyxdf_reads(index_source, unique_name, tmp_path):
    source = index_source(n_channels=2, sfreq=200.0)
    markers = pylsl.StreamOutlet(
        pylsl.StreamInfo(f"{unique_name}-M", "Markers", 1, 0, "string", f"{unique_name}-M")
    )
    path = tmp_path / "rec.xdf"
    with Recorder(path, [source.name, f"{unique_name}-M"]) as recorder:
        assert recorder.recording
        assert markers.wait_for_consumers(5)
        markers.push_sample(["hello"])
        # LabRecorder writes what it pulled about every 0.5 s and its last pull can miss the
        # file at stop: record 2 s so that > 0.5 s of the 200 Hz source is in it on a busy day
        wait_for(lambda: False, 2.0)
        assert recorder.size_bytes > 0
    assert not recorder.recording
    streams, _ = pyxdf.load_xdf(str(path))
    by_name = {s["info"]["name"][0]: s for s in streams}
    assert len(by_name[source.name]["time_stamps"]) > 100
    assert by_name[f"{unique_name}-M"]["time_series"][0] == ["hello"]
    with pytest.raises(FileExistsError, match="exists"):
        Recorder(path, [source.name]).start()


def test_a_missing_stream_is_named_and_leaves_no_process(unique_name, tmp_path):
    recorder = Recorder(tmp_path / "none.xdf", [f"{unique_name}-absent"])
    with pytest.raises(RuntimeError, match=f"{unique_name}-absent"):
        recorder.start(timeout_s=5, attempts=2)
    assert not recorder.recording
    recorder.stop()  # idempotent after a failed start


def test_a_stream_that_appears_later_is_added_as_a_part_file(index_source, unique_name, tmp_path):
    from bci.replay import load_recording

    first = index_source(n_channels=2, sfreq=200.0)
    path = tmp_path / "rec.xdf"
    added = []
    with Recorder(path, [first.name]) as recorder:
        recorder.watch(f"starts-with(name,'{unique_name}')", lambda names, p: added.append(names),
                       every_s=0.5)  # fmt: skip
        second = index_source(n_channels=3, sfreq=100.0)  # a second amplifier, switched on late
        assert wait_for(lambda: added, 20), "the late stream was never added"
        wait_for(lambda: False, 2.0)
        assert recorder.size_bytes > path.stat().st_size  # the part is counted
        assert "part" in recorder.status() and "MB" in recorder.status()
    assert added == [[second.name]]
    recording = load_recording(path)  # the part file is read with the recording
    names = {stream.name: stream for stream in recording.streams}
    assert {first.name, second.name} <= names.keys()
    assert names[second.name].n_samples > 50 and names[second.name].n_channels == 4


def test_bci_record_records_chosen_streams_and_shows_its_progress(index_source, tmp_path, capsys):
    from bci.cli import main

    source = index_source(n_channels=2, sfreq=200.0)
    out = tmp_path / "cli.xdf"
    assert main(["record", "--name", source.name, "--out", str(out), "--seconds", "3"]) == 0
    shown = capsys.readouterr().out
    assert str(out) in shown and "MB" in shown and "0:00:0" in shown
    streams, _ = pyxdf.load_xdf(str(out))
    assert [s["info"]["name"][0] for s in streams] == [source.name]
    assert main(["record", "--name", source.name, "--out", str(out)]) == 2  # exists
    assert main(["record", "--name", "no-such-stream-anywhere", "--out", str(tmp_path / "x.xdf"),
                 "--wait", "0.5"]) == 2  # fmt: skip
    assert "no stream on the network matches" in capsys.readouterr().err


def test_labrecorder_ending_by_itself_is_seen(index_source, tmp_path):
    import psutil

    source = index_source(n_channels=2, sfreq=200.0)
    recorder = Recorder(tmp_path / "dies.xdf", [source.name])
    recorder.start()
    try:
        (labrecorder,) = psutil.Process(recorder.pid).children()
        labrecorder.kill()
        assert wait_for(lambda: not recorder.recording, 10), "the guard outlived LabRecorder"
    finally:
        with pytest.raises(RuntimeError, match="exited with code"):
            recorder.stop()
