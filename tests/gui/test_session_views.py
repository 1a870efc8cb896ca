"""The session views and the participant window, fed by the engine's own outlets over LSL."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import math
from collections.abc import Callable, Iterator

import numpy as np
import pylsl
import pytest
from PySide6 import QtGui

from bci.acquire import Inlet, InletSettings, MarkerInlet
from bci.engine.outlets import SessionOutlets
from bci.streams import LATENCY_CHANNELS, STIM_CHANNELS
from devices.stimulators.base import StimCommand
from gui.feeds import MarkerHistory
from gui.participant import ParticipantWindow
from gui.views.decoder import DecoderView, RowHistory
from gui.views.latency import LatencyView
from gui.views.stim import StimView
from tests.conftest import wait_for

CLASSES = ("left", "right")


class Session:
    """The engine's outlets under a unique prefix, and the GUI's inlets on them."""

    def __init__(self, prefix: str, modality: str) -> None:
        self.outlets = SessionOutlets(prefix, CLASSES, modality, "C3", "C4")
        self._opened: list = []

    def _info(self, key: str) -> pylsl.StreamInfo:
        found = pylsl.resolve_byprop("name", self.outlets.names[key], 1, 5.0)
        assert found, f"stream {key} not found"
        return found[0]

    def inlet(self, key: str, buffer_s: float = 30.0) -> Inlet:
        inlet = Inlet(self._info(key), InletSettings(buffer_s=buffer_s)).connect()
        self._opened.append(inlet)
        inlet.clock_offset(5.0)  # liblsl's first clock sync would hold up the first pull
        assert getattr(self.outlets, key).wait_for_consumers(5.0)
        return inlet

    def markers(self, key: str) -> MarkerHistory:
        history = MarkerHistory(MarkerInlet(self._info(key)).connect())
        self._opened.append(history.inlet)
        assert getattr(self.outlets, key).wait_for_consumers(5.0)
        return history

    def close(self) -> None:
        for inlet in self._opened:
            inlet.disconnect()
        self.outlets.close()


@pytest.fixture
def session(unique_name) -> Iterator[Callable[[str], Session]]:
    made: list[Session] = []

    def make(modality: str = "tdcs") -> Session:
        made.append(Session(f"{unique_name}-{len(made)}", modality))
        return made[-1]

    yield make
    for each in made:
        each.close()


def pull_until(inlet: Inlet, n_samples: int) -> None:
    assert wait_for(lambda: inlet.pull(0.0) is not None and inlet.n_samples >= n_samples, 5.0)


def pull_markers_until(history: MarkerHistory, n_markers: int) -> None:
    assert wait_for(lambda: history.pull() is not None and history.n_received >= n_markers, 5.0)


def publish_decisions(outlets: SessionOutlets, proba: np.ndarray, times: np.ndarray) -> None:
    for row, time in zip(proba, times, strict=True):
        outlets.decision(row, time)


def command(amplitude: float, time: float, frequency_hz: float = 0.0, pulses: int = 0):
    return StimCommand(amplitude, frequency_hz, pulses, time, time - 0.005)


# RowHistory -----------------------------------------------------------------------------------
def test_row_history_keeps_more_than_the_inlet_ring(session):
    s = session()
    inlet = s.inlet("latency", buffer_s=5.0)  # an irregular stream: a ring of 5 rows
    history = RowHistory(100, len(LATENCY_CHANNELS))
    history.follow(inlet)
    sent = np.arange(32.0)[:, None] * np.ones(len(LATENCY_CHANNELS))
    now = pylsl.local_clock()
    for batch in range(5):  # 4 rows a look: all kept although the ring holds 5
        for i in range(4 * batch, 4 * batch + 4):
            s.outlets.latency_sample(sent[i], now - 10 + i)
        pull_until(inlet, 4 * batch + 4)
        assert history.update() == 4
    data, times = history.latest(len(history))
    np.testing.assert_array_equal(data, sent[:20])
    np.testing.assert_allclose(times, now - 10 + np.arange(20), atol=1e-3)
    assert history.n_missed == 0
    for i in range(20, 32):  # 12 rows between two looks: the ring overwrote 7
        s.outlets.latency_sample(sent[i], now - 10 + i)
    pull_until(inlet, 32)
    assert history.update() == 5
    assert history.n_missed == 7
    np.testing.assert_array_equal(history.latest(5)[0], sent[27:])
    later, _ = history.since(now - 10 + 29.5)
    np.testing.assert_array_equal(later, sent[30:])


# DecoderView ----------------------------------------------------------------------------------
def test_decoder_view_draws_probabilities_cues_and_threshold(qtbot, session):
    view = DecoderView(CLASSES, abstain_below=0.6, window_s=30.0)
    qtbot.addWidget(view)
    view.attach(None, None)
    view.redraw()
    assert view.waiting and "waiting for" in view.waiting_label.text()

    s = session()
    decoder, cues = s.inlet("decoder"), s.markers("cues")
    now = pylsl.local_clock()
    times = now - 8.0 + 0.25 * np.arange(20)
    p_left = np.linspace(0.1, 0.9, 20)
    proba = np.column_stack([p_left, 1 - p_left])
    publish_decisions(s.outlets, proba, times)
    cue_times = (now - 7.0, now - 5.0, now - 3.0)
    for label, time in zip(("left", "rest", "right"), cue_times, strict=True):
        s.outlets.cue(label, time)
    pull_until(decoder, 20)
    pull_markers_until(cues, 3)

    view.attach(decoder, cues)
    view.redraw()
    after = pylsl.local_clock()
    assert not view.waiting and view.n_frames == 1
    for i, name in enumerate(CLASSES):
        x, y = view.curves[name].getData()
        np.testing.assert_array_equal(y, proba[:, i])
        np.testing.assert_allclose(np.diff(x), np.diff(times), atol=1e-6)
        assert -(after - times[-1]) - 1e-3 <= x[-1] <= -(now - times[-1]) + 1e-3
    np.testing.assert_array_equal(view.confidence_curve.getData()[1], proba.max(axis=1))
    assert view.abstain_line.value() == 0.6

    (left, start, stop), (right, start2, stop2) = view.spans
    assert (left, right) == ("left", "right")
    np.testing.assert_allclose([start, stop, start2], cue_times, atol=1e-3)
    assert now <= stop2 <= after  # the right cue is still running
    x, y = view.cue_curves["left"].getData()
    np.testing.assert_array_equal(y, [0, 1, 1, 0])
    np.testing.assert_allclose(x[2] - x[0], cue_times[1] - cue_times[0], atol=1e-3)
    assert view.cue_curves["right"].getData()[0][-1] == pytest.approx(0.0, abs=1e-9)
    legend = [label.text for _, label in view.legend.items]
    assert {"p(left)", "p(right)", "confidence", "cue left", "cue right"} <= set(legend)
    assert "left" in view.status.text() or "right" in view.status.text()

    view.attach(None, None)
    assert view.waiting and "waiting for" in view.waiting_label.text()
    assert len(view.curves["left"].getData()[1]) == 0


def test_decoder_view_refuses_a_stream_without_its_classes(qtbot, session):
    decoder = session().inlet("decoder")
    view = DecoderView(("rest", "move"))
    qtbot.addWidget(view)
    with pytest.raises(ValueError, match="classes"):
        view.attach(decoder, None)
    with pytest.raises(ValueError, match="abstain_below"):
        DecoderView(CLASSES, abstain_below=1.5)


# StimView -------------------------------------------------------------------------------------
def test_stim_view_draws_amplitude_steps_and_limit(qtbot, session):
    view = StimView("tdcs", "mA", 1.5)
    qtbot.addWidget(view)
    view.attach(None)
    view.redraw()
    assert view.waiting and "waiting for" in view.waiting_label.text()
    assert view.limit_line.value() == 1.5
    assert view.negative_limit_line.value() == -1.5
    assert "limit ±1.5 mA" in view.limit_line.label.toPlainText()

    s = session("tdcs")
    stim = s.inlet("stim")
    now = pylsl.local_clock()
    amplitudes = (0.0, 0.5, 1.0, 1.2)
    times = now - 4.0 + np.arange(4)
    origins = ("start", "decision", "decision", "hold")
    for amplitude, time, origin in zip(amplitudes, times, origins, strict=True):
        s.outlets.stimulation(command(amplitude, time), time - 0.001, origin)
    pull_until(stim, 4)
    view.attach(stim)
    view.redraw()
    x, y = view.amplitude_curve.getData()
    np.testing.assert_array_equal(y[0::2], amplitudes)
    np.testing.assert_array_equal(y[1::2], amplitudes)  # each holds until the next
    np.testing.assert_allclose(x[1:-1:2] - x[0:-2:2], 1.0, atol=1e-6)
    assert y[-1] == amplitudes[-1] and x[-1] == 0.0
    assert view.amplitude_label.text() == "+1.20 mA"
    assert "hold" in view.status.text()
    assert not view.frequency_plot.isVisible() and len(view.pulse_markers.getData()[0]) == 0

    view.set_limit(1.0)
    assert view.limit_line.value() == 1.0 and view.negative_limit_line.value() == -1.0
    assert "limit ±1 mA" in view.limit_line.label.toPlainText()
    with pytest.raises(ValueError, match="max_amplitude"):
        view.set_limit(float("nan"))
    with pytest.raises(ValueError, match="tdcs"):
        StimView("tms", "%MSO", 60.0).attach(stim)  # a tDCS stream in a TMS view
    view.attach(None)
    assert view.waiting and len(view.amplitude_curve.getData()[0]) == 0


def test_stim_view_marks_tms_pulses(qtbot, session):
    view = StimView("tms", "%MSO", 60.0)
    qtbot.addWidget(view)
    s = session("tms")
    stim = s.inlet("stim")
    now = pylsl.local_clock()
    pulses = (0, 1, 0, 1, 1)
    for i, pulse in enumerate(pulses):
        time = now - 5.0 + i
        origin = "pulse" if pulse else "decision"
        s.outlets.stimulation(command(55.0, time, pulses=pulse), time, origin)
    pull_until(stim, 5)
    view.attach(stim)
    view.redraw()
    x, y = view.pulse_markers.getData()
    assert len(x) == 3 and np.all(y == 55.0)
    np.testing.assert_allclose(np.diff(x), [2.0, 1.0], atol=1e-6)
    assert view.amplitude_label.text() == "55 %MSO"
    assert "limit 60 %MSO" in view.limit_line.label.toPlainText()
    assert view.negative_limit_line is None


def test_stim_view_draws_tacs_frequency(qtbot, session):
    view = StimView("tacs", "mA", 2.0)
    qtbot.addWidget(view)
    s = session("tacs")
    stim = s.inlet("stim")
    now = pylsl.local_clock()
    for i, (amplitude, frequency) in enumerate(((0.5, 10.0), (1.0, 10.0), (1.0, 40.0))):
        time = now - 3.0 + i
        s.outlets.stimulation(command(amplitude, time, frequency), time, "decision")
    pull_until(stim, 3)
    view.attach(stim)
    view.redraw()
    _, frequency = view.frequency_curve.getData()
    np.testing.assert_array_equal(frequency[0::2], [10.0, 10.0, 40.0])
    assert view.frequency_plot.getViewBox().viewRange()[1][1] >= 40.0  # the axis grew
    assert view.amplitude_label.text() == "1.00 mA"


# LatencyView ----------------------------------------------------------------------------------
def test_latency_view_histogram_and_percentiles(qtbot, session):
    view = LatencyView(n_decisions=100, recompute_s=0.0)
    slow = LatencyView(n_decisions=100, recompute_s=60.0)
    for each in (view, slow):
        qtbot.addWidget(each)
        each.attach(None)
        each.redraw()
        assert each.waiting and "waiting for" in each.waiting_label.text()
    s = session()
    latency = s.inlet("latency")
    view.attach(latency)
    slow.attach(latency)
    rng = np.random.default_rng(0)
    end_to_end = rng.gamma(4.0, 1.5, 150)
    now = pylsl.local_clock()
    for batch in range(5):  # the inlet's ring holds 30 rows: the view keeps the rest
        for i in range(30 * batch, 30 * batch + 30):
            row = np.zeros(len(LATENCY_CHANNELS))
            row[-1] = end_to_end[i]
            s.outlets.latency_sample(row, now - 20 + 0.1 * i)
        pull_until(latency, 30 * batch + 30)
        view.redraw()
        slow.redraw()
    newest = end_to_end[-100:]
    p50, p99 = np.percentile(newest, [50, 99])
    assert view.stats == {"p50": p50, "p99": p99, "max": newest.max(), "n": 100}
    assert view.labels["p50"].text() == f"p50 {p50:.2f} ms"
    assert view.labels["p99"].text() == f"p99 {p99:.2f} ms"
    assert view.labels["max"].text() == f"max {newest.max():.2f} ms"
    edges, counts = view.histogram.getData()
    assert counts.sum() == 100 and edges[-1] >= newest.max()
    assert view.percentile_lines["p99"].value() == p99
    assert view.n_histograms == 5
    # recomputed at most once per recompute_s: the slow view still shows the first batch
    assert slow.n_histograms == 1 and slow.stats["n"] == 30


# ParticipantWindow ----------------------------------------------------------------------------
def _white(window: ParticipantWindow, dx: float, dy: float = 0.0) -> bool:
    image = window.grab().toImage()
    size = min(window.width(), window.height())
    x, y = window.width() / 2 + dx * size, window.height() / 2 + dy * size
    return image.pixelColor(int(x), int(y)).lightness() > 200


def test_participant_window_follows_cues_and_feedback(qtbot, session):
    window = ParticipantWindow()
    qtbot.addWidget(window)
    window.resize(400, 300)
    window.attach(None, None, CLASSES)
    window.redraw()
    assert window.shown == "cross" and math.isnan(window.feedback)
    assert _white(window, 0.0) and not _white(window, 0.12) and not _white(window, -0.08, 0.06)

    s = session()
    decoder, cues = s.inlet("decoder"), s.markers("cues")
    window.attach(cues, decoder, CLASSES, target_class="right")
    s.outlets.cue("left", pylsl.local_clock())
    pull_markers_until(cues, 1)
    s.outlets.decision(np.array([0.7, 0.3]), pylsl.local_clock())
    pull_until(decoder, 1)
    window.redraw()
    assert window.shown == "left" and window.feedback == 0.7
    assert window.feedback_class == "left"
    # the arrow's head is on the cued side, its thin shaft on the other
    assert _white(window, -0.08, 0.06) and not _white(window, 0.08, 0.06)
    frame, filled = window.bar_geometry()
    assert filled.width() == pytest.approx(0.7 * frame.width())
    assert filled.right() == frame.right()  # grows in the arrow's direction

    s.outlets.decision(np.array([0.2, 0.8]), pylsl.local_clock())
    pull_until(decoder, 2)
    window.redraw()
    assert window.feedback == 0.2  # the bar follows the cued class's probability

    s.outlets.cue("rest", pylsl.local_clock())
    pull_markers_until(cues, 2)
    window.redraw()
    assert window.shown == "cross"
    assert (window.feedback_class, window.feedback) == ("right", 0.8)  # the target class
    s.outlets.cue("right", pylsl.local_clock())
    pull_markers_until(cues, 3)
    window.redraw()
    assert window.shown == "right" and window.feedback == 0.8
    assert _white(window, 0.08, 0.06) and not _white(window, -0.08, 0.06)

    stale = ParticipantWindow(feedback_stale_s=1e-3)
    qtbot.addWidget(stale)
    stale.attach(cues, decoder, CLASSES)
    qtbot.wait(5)
    stale.redraw()
    assert stale.shown == "right" and math.isnan(stale.feedback)  # no frozen bar
    with pytest.raises(ValueError, match="target_class"):
        window.attach(cues, decoder, CLASSES, target_class="up")

    assert window.show_on_second_screen() is (len(QtGui.QGuiApplication.screens()) > 1)
    assert window.isVisible()


def test_stim_channels_contract_is_what_the_view_reads():
    # the view indexes commands by these names; a reordered contract must fail here first
    assert STIM_CHANNELS[:3] == ("amplitude", "frequency_hz", "pulses")
