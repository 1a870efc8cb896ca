"""Real-time replay of recordings as LSL outlets, received back on the real loopback transport:
values, timing (clock-paced, scaled by speed, looping) and metadata."""

from __future__ import annotations

import math
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pylsl
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from bci.record import Recorder
from bci.replay.player import Player, ReplaySchedule, replay_realtime
from bci.replay.recording import RecordedStream, Recording, load_recording
from tests.conftest import wait_for
from tests.train.recordings import simulate, write_mne, write_snirf, write_xdf

DTYPES = {"float32": np.float32, "double64": np.float64, "int32": np.int32}


def regular(name: str, srate: float, n: int, n_channels: int = 2, fmt: str = "float32",
            t_first: float = 1000.0, desc: dict | None = None) -> RecordedStream:  # fmt: skip
    """Random channels and a ``SampleIndex`` last channel, regular time stamps."""
    data = np.random.default_rng(0).standard_normal((n, n_channels + 1))
    data[:, -1] = np.arange(n)
    return RecordedStream(
        name, "EEG", f"{name}-sid", srate, fmt,
        [f"EEG{i}" for i in range(n_channels)] + ["SampleIndex"],
        ["EEG"] * n_channels + ["MISC"], ["microvolts"] * n_channels + ["samples"],
        data, t_first + np.arange(n) / srate, desc or {},
    )  # fmt: skip


def markers(name: str, labels: list[str], times: list[float]) -> RecordedStream:
    data = np.empty((len(labels), 1), dtype=object)
    data[:, 0] = labels
    return RecordedStream(name, "Markers", f"{name}-sid", 0.0, "string", ["marker"], [""], [""],
                          data, np.asarray(times, dtype=float))  # fmt: skip


def recording(*streams: RecordedStream) -> Recording:
    return Recording(Path("/data/session.xdf"), "XDF", list(streams), [])


class Receiver:
    """An inlet on one replayed stream pulling in its own thread: samples, their LSL time stamps
    (as pushed: no clock correction) and local arrival times."""

    def __init__(self, name: str, timeout_s: float = 10.0) -> None:
        found = pylsl.resolve_byprop("name", name, 1, timeout_s)
        assert found, f"stream {name} not found"
        self.inlet = pylsl.StreamInlet(found[0], max_buflen=360, recover=False)
        self.info = self.inlet.info(timeout_s)
        self.inlet.open_stream(timeout_s)
        self.is_string = self.info.channel_format() == pylsl.cf_string
        self.samples: list = []
        self.stamps: list[float] = []
        self.arrivals: list[float] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._pull(0.05)

    def _pull(self, timeout: float) -> None:
        data, stamps = self.inlet.pull_chunk(timeout=timeout, max_samples=4096, min_samples=1,
                                             as_numpy=not self.is_string)  # fmt: skip
        if len(stamps):
            now = pylsl.local_clock()
            with self._lock:
                self.samples.extend(list(data))
                self.stamps.extend(np.asarray(stamps).tolist())
                self.arrivals.extend([now] * len(stamps))

    @property
    def n(self) -> int:
        with self._lock:
            return len(self.stamps)

    def stop(self) -> Receiver:
        self._stop.set()
        self._thread.join()
        self._pull(0.0)
        self.inlet.close_stream()
        return self

    def data(self, dtype) -> np.ndarray:
        return np.asarray(self.samples, dtype=dtype)


def receive(player: Player) -> list[Receiver]:
    """Open the player's outlets and subscribe to each before it starts."""
    player.open()
    receivers = [Receiver(name) for name in player.names]
    assert player.wait_for_consumers(10)
    return receivers


# fast ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("speed", [2.0, 8.0])
def test_timing_scales_with_speed(speed):
    eeg = regular(f"eeg-{uuid.uuid4().hex[:8]}", 100.0, 200)
    cues = markers(f"cue-{uuid.uuid4().hex[:8]}", ["left", "rest", "right"], [1000.5, 1001, 1001.5])
    player = Player(recording(eeg, cues), speed=speed)
    got, got_cues = receive(player)
    with player:
        assert player.join(timeout_s=10)
        assert player.finished and player.progress == 1.0
        assert player.samples_pushed == {eeg.name: 200, cues.name: 3}
        assert wait_for(lambda: got.n == 200 and got_cues.n == 3, 5)
        got.stop()
        got_cues.stop()
    assert_array_equal(got.data(np.float32), eeg.data.astype(np.float32))
    stamps = np.asarray(got.stamps)
    assert_allclose(np.diff(stamps), 1 / (100 * speed), atol=1e-6)
    assert_allclose(np.asarray(got_cues.stamps) - stamps[0], [0.5 / speed, 1 / speed, 1.5 / speed],
                    atol=1e-6)  # fmt: skip
    assert [s[0] for s in got_cues.samples] == ["left", "rest", "right"]
    # paced by the clock: each sample arrives soon after its due time (its time stamp), so the
    # pass lasts 1.99 s / speed of wall time
    assert np.max(np.asarray(got.arrivals) - stamps) < 0.1
    assert_allclose(np.asarray(got_cues.arrivals) - np.asarray(got_cues.stamps), 0, atol=0.1)
    assert got.arrivals[-1] - got.arrivals[0] == pytest.approx(1.99 / speed, abs=0.1)
    assert player.summary()["wall_s"] == pytest.approx(1.99 / speed, abs=0.1)


def test_loop_repeats_with_increasing_time_stamps():
    eeg = regular(f"eeg-{uuid.uuid4().hex[:8]}", 100.0, 50)  # 0.49 s, a pass of 0.5 s
    cues = markers(f"cue-{uuid.uuid4().hex[:8]}", ["go"], [1000.2])
    player = Player(recording(eeg, cues), speed=2.0, loop=True)
    assert player.period_s == pytest.approx(0.5)
    got, got_cues = receive(player)
    with player:
        assert wait_for(lambda: got.n >= 160, 5)  # 3+ passes
        assert not player.finished and player.running
        assert 0.0 <= player.progress < 1.0
        player.stop()
        assert not player.running and not player.finished
        assert wait_for(lambda: got.n == player.samples_pushed[eeg.name], 2)
        assert wait_for(lambda: got_cues.n == player.samples_pushed[cues.name], 2)
        got.stop()
        got_cues.stop()
    n = got.n
    assert n == player.samples_pushed[eeg.name]
    assert_array_equal(got.data(np.float32), eeg.data.astype(np.float32)[np.arange(n) % 50])
    assert_allclose(np.diff(got.stamps), 1 / 200, atol=1e-6)  # seamless across passes
    assert_allclose(np.diff(got_cues.stamps), 0.25, atol=1e-6)
    assert_allclose(got_cues.stamps[0] - got.stamps[0], 0.1, atol=1e-6)


def test_string_markers_keep_text_and_times():
    labels = ["left", "right", "é ünïcode", '{"kind": "fit", "ok": true}', ""]
    times = [50.0, 50.05, 50.3, 50.3, 50.7]
    cues = markers(f"cue-{uuid.uuid4().hex[:8]}", labels, times)
    player = Player(recording(cues), speed=2.0)
    assert player.duration_s == pytest.approx(0.7)
    (got,) = receive(player)
    with player:
        assert player.join(timeout_s=5)
        assert wait_for(lambda: got.n == len(labels), 2)
        got.stop()
    assert [s[0] for s in got.samples] == labels
    assert_allclose(np.asarray(got.stamps) - got.stamps[0], (np.asarray(times) - 50) / 2,
                    atol=1e-6)  # fmt: skip
    assert got.stamps[0] == pytest.approx(player.start_time, abs=1e-6)  # the first is due at once


@pytest.mark.parametrize("speed", [0, -1.0, math.nan, math.inf, "fast", True, None])
def test_bad_speed_is_refused(speed):
    with pytest.raises(ValueError, match="speed must be a finite number > 0"):
        Player(recording(regular("x", 10.0, 5)), speed=speed)


def test_bad_options_are_refused():
    rec = recording(regular("EEG", 10.0, 5), markers("Cues", ["a"], [1000.0]))
    with pytest.raises(ValueError, match=r"no \['Nope'\].*choose among \['EEG', 'Cues'\]"):
        Player(rec, streams=["Nope"])
    with pytest.raises(TypeError, match="list of stream names"):
        Player(rec, streams="EEG")
    with pytest.raises(ValueError, match="chunk_s"):
        Player(rec, chunk_s=0)
    with pytest.raises(ValueError, match="hold no samples"):
        Player(recording(markers("Cues", [], [])))
    player = Player(rec)
    with pytest.raises(RuntimeError, match="call start"):
        player.join()


def test_outlets_carry_the_original_header_and_channel_metadata():
    name = f"eeg-{uuid.uuid4().hex[:8]}"
    desc = {
        "channels": [{"channel": [
            {"label": ["C3"], "unit": ["uV"], "location": [{"X": ["-50"], "Y": ["0"]}]},
            {"label": ["C4"], "unit": ["uV"]}, {"label": ["SampleIndex"]},
        ]}],
        "acquisition": [{"manufacturer": ["Brain Products"], "model": ["actiCHamp"]}],
        "line_frequency": ["50"],
        "empty": [None],
    }  # fmt: skip
    eeg = regular(name, 500.0, 10, fmt="int32", desc=desc)
    rec = recording(eeg, markers("Cues", ["a"], [1000.0]))
    player = Player(rec, streams=[name], name_suffix="-replay")
    assert player.names == [f"{name}-replay"]
    (got,) = receive(player)
    info = got.info
    assert (info.name(), info.type(), info.channel_count(), info.nominal_srate(),
            info.channel_format(), info.source_id()) == (
        f"{name}-replay", "EEG", 3, 500.0, pylsl.cf_int32, f"{name}-sid-replay")  # fmt: skip
    channel = info.desc().child("channels").child("channel")
    seen = []
    while not channel.empty():
        seen.append(tuple(channel.child_value(k) for k in ("label", "unit", "type")))
        if channel.child_value("label") == "EEG0":
            assert channel.child("location").child_value("X") == "-50"
        channel = channel.next_sibling()
    assert seen == [("EEG0", "microvolts", "EEG"), ("EEG1", "microvolts", "EEG"),
                    ("SampleIndex", "samples", "MISC")]  # fmt: skip
    desc_out = info.desc()
    assert desc_out.child("acquisition").child_value("manufacturer") == "Brain Products"
    assert desc_out.child_value("line_frequency") == "50"
    assert not desc_out.child("empty").empty()
    assert desc_out.child("replay").child_value("file") == "/data/session.xdf"
    assert desc_out.child("replay").child_value("original_name") == name
    with player:
        assert player.join(timeout_s=5)
        assert wait_for(lambda: got.n == 10, 2)
        got.stop()
    assert_array_equal(got.data(np.int32), eeg.data.astype(np.int32))
    with pytest.raises(RuntimeError, match="already played"):
        player.start()


def test_stop_mid_way_ends_at_once_with_what_was_pushed():
    eeg = regular(f"eeg-{uuid.uuid4().hex[:8]}", 200.0, 2000)  # 10 s
    player = Player(recording(eeg))
    (got,) = receive(player)
    player.start()
    assert wait_for(lambda: got.n >= 40, 5)
    began = pylsl.local_clock()
    player.stop()
    assert pylsl.local_clock() - began < 0.2
    assert not player.running and not player.finished
    assert 0.0 < player.progress < 0.5
    pushed = player.samples_pushed[eeg.name]
    assert wait_for(lambda: got.n == pushed, 2)
    got.stop()
    player.close()
    assert_array_equal(got.data(np.float32), eeg.data[:pushed].astype(np.float32))


def test_schedule_takes_everything_due_after_a_stall_without_drift():
    schedule = ReplaySchedule([np.arange(10) * 0.1, np.array([0.25, 0.55])], 1.0, loop=True)
    assert schedule.take(0.0) == [[(0, 1, 0.0)], []]
    assert schedule.next_time(0) == pytest.approx(0.1)
    assert schedule.take(0.05) == [[], []]
    # a stall of 2.2 s: every sample of two passes and a bit is due, each at its own time
    assert schedule.take(2.25) == [
        [(1, 10, 0.0), (0, 10, 1.0), (0, 3, 2.0)],
        [(0, 2, 0.0), (0, 2, 1.0), (0, 1, 2.0)],
    ]
    assert schedule.next_time(0) == pytest.approx(2.3)
    assert schedule.next_time(1) == pytest.approx(2.55)
    once = ReplaySchedule([np.arange(3) * 0.1], 0.3, loop=False)
    assert once.take(100.0) == [[(0, 3, 0.0)]]
    assert once.done and once.take(200.0) == [[]] and once.next_time(0) == math.inf


def test_replay_realtime_prints_outlets_and_warnings_and_stops_on_request(tmp_path, capsys):
    name = f"cli-{uuid.uuid4().hex[:8]}"
    n = 400  # 2 s at 200 Hz
    path = write_xdf(tmp_path / "short.xdf", [
        {"name": f"{name}-EEG", "type": "EEG", "srate": 200.0, "data": np.ones((n, 2)),
         "times": 10 + np.arange(n) / 200, "channels": ["C3", "C4"], "ch_type": "EEG",
         "unit": "microvolts"},
        {"name": f"{name}-M", "type": "Markers", "srate": 0, "markers": ["a", "b"],
         "times": np.array([10.5, 11.0])},
    ])  # fmt: skip
    summary = replay_realtime(path, speed=8.0, progress=False)
    assert summary["samples"] == {f"{name}-EEG": n, f"{name}-M": 2}
    assert summary["finished"] and not summary["interrupted"]
    assert summary["speed"] == pytest.approx(8.0, rel=0.3)
    out = capsys.readouterr().out
    assert f"{name}-EEG: EEG, 2 ch, 200 Hz" in out and f"{name}-M: Markers, 1 ch, irregular" in out

    cut = tmp_path / "cut.xdf"
    cut.write_bytes(path.read_bytes()[:-150])  # recorder killed: no footers
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    summary = replay_realtime(cut, speed=1.0, stop=stop, progress=True)
    assert summary["interrupted"] and not summary["finished"]
    assert summary["wall_s"] < 0.6
    assert 0 < summary["samples"][f"{name}-EEG"] < n
    assert "warning: cut.xdf:" in capsys.readouterr().err


# a minute, in real time ----------------------------------------------------------------------
N_XDF = 61 * 500
XDF_MARKERS = 2.5 + 5.0 * np.arange(12)


def record_xdf(path: Path, prefix: str) -> Path:
    """A LabRecorder file of 61 s of a 500 Hz EEG (with SampleIndex) and markers every 5 s,
    recorded in seconds: the source pushes the whole minute at once with explicit time stamps,
    which LabRecorder keeps."""
    info = pylsl.StreamInfo(f"{prefix}-EEG", "EEG", 9, 500.0, "float32", f"{prefix}-EEG")
    channels = info.desc().append_child("channels")
    for i in range(9):
        channel = channels.append_child("channel")
        channel.append_child_value("label", f"EEG{i}" if i < 8 else "SampleIndex")
        channel.append_child_value("unit", "microvolts" if i < 8 else "samples")
        channel.append_child_value("type", "EEG" if i < 8 else "MISC")
    eeg = pylsl.StreamOutlet(info, chunk_size=0, max_buffered=120)
    cues = pylsl.StreamOutlet(pylsl.StreamInfo(f"{prefix}-Cues", "Markers", 1, 0, "string",
                                               f"{prefix}-Cues"))  # fmt: skip
    data = np.random.default_rng(1).standard_normal((N_XDF, 9)).astype(np.float32) * 20
    data[:, -1] = np.arange(N_XDF)
    with Recorder(path, [f"{prefix}-EEG", f"{prefix}-Cues"]) as recorder:
        assert eeg.wait_for_consumers(5) and cues.wait_for_consumers(5)
        t_first = pylsl.local_clock() - 100.0
        for start in range(0, N_XDF, 500):
            eeg.push_chunk(data[start:start + 500], (t_first + np.arange(start, start + 500)
                                                     / 500).tolist())  # fmt: skip
        for i, when in enumerate(XDF_MARKERS):
            cues.push_sample([f"cue{i}"], t_first + when)
        # LabRecorder writes what it pulled every ~0.5 s: wait for the whole minute on disk
        assert wait_for(lambda: recorder.size_bytes > N_XDF * 9 * 4, 10)
        wait_for(lambda: False, 0.7)
    return path


def check_minute(player: Player, receivers: list[Receiver], onsets: np.ndarray) -> list[str]:
    """Every sample in order, rates within 1 %, markers at their times; returns a report."""
    order = sorted(range(2), key=lambda k: player.streams[k].is_string)  # data, then markers
    data_stream, marker_stream = (player.streams[k] for k in order)
    got, got_markers = (receivers[k] for k in order)
    n = data_stream.n_samples
    assert got.n == n, f"{got.info.name()}: received {got.n} of {n}"
    dtype = DTYPES[data_stream.channel_format]
    assert_array_equal(got.data(dtype), data_stream.data.astype(dtype))
    stamps, arrivals = np.asarray(got.stamps), np.asarray(got.arrivals)
    stamp_rate = (n - 1) / (stamps[-1] - stamps[0])
    arrival_rate = (n - 1) / (arrivals[-1] - arrivals[0])
    srate = data_stream.srate
    assert abs(stamp_rate / srate - 1) < 0.01 and abs(arrival_rate / srate - 1) < 0.01
    t_file = data_stream.timestamps - data_stream.timestamps[0]
    assert_allclose(stamps - stamps[0], t_file, atol=1e-6)
    assert [s[0] for s in got_markers.samples] == list(marker_stream.data[:, 0])
    marker_times = np.asarray(got_markers.stamps) - stamps[0]
    assert_allclose(marker_times, onsets, atol=1e-3)
    return [f"{got.info.name()}: {n} samples equal, rate {stamp_rate:.4f} Hz by time stamps "
            f"({(stamp_rate / srate - 1) * 100:+.4f} %), {arrival_rate:.4f} Hz by arrival "
            f"({(arrival_rate / srate - 1) * 100:+.4f} %), {len(marker_times)} markers, worst "
            f"{np.max(np.abs(marker_times - onsets)) * 1e3:.3f} ms off"]  # fmt: skip


@pytest.mark.slow
def test_a_minute_of_xdf_edf_and_snirf_replays_in_real_time(tmp_path):
    suffix = f"-{uuid.uuid4().hex[:8]}"
    # LabRecorder takes ~8 s to start and close a file: it records while the other files are
    # written and start playing, and the XDF is replayed beside them once it is closed
    with ThreadPoolExecutor(1) as pool:
        recorded = pool.submit(record_xdf, tmp_path / "lab.xdf", f"rec{suffix}")
        session = simulate(seed=3, n_trials=10, trial_s=5.5, fnirs=True)  # 61 s
        files = [write_mne(session, tmp_path / "eeg.edf"),
                 write_snirf(session, tmp_path / "nirs.snirf")]  # fmt: skip
        players = [Player(load_recording(path), name_suffix=suffix) for path in files]
        receivers = [receive(player) for player in players]
        for player in players:
            player.start()
        xdf = load_recording(recorded.result(timeout=60))
    assert xdf.warnings == []
    players.append(Player(xdf, name_suffix=suffix))
    receivers.append(receive(players[-1]))
    players[-1].start()
    try:
        for player in players:
            assert player.join(timeout_s=90) and player.finished
    finally:
        for player in players:
            player.stop()
    for player, pair in zip(players, receivers, strict=True):
        total = sum(player.samples_pushed.values())
        assert wait_for(lambda pair=pair, total=total: sum(r.n for r in pair) == total, 5)
        for receiver in pair:
            receiver.stop()
    report = []
    for player, pair in zip(players, receivers, strict=True):
        onsets = session.onsets if player is not players[-1] else XDF_MARKERS
        report += check_minute(player, pair, onsets)
        player.close()
    print("\n".join(report))
