"""EEG, fNIRS and spectrum views, fed by real LSL outlets on loopback."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before Qt starts: no display in CI

import numpy as np
import pylsl
import pytest
from PySide6.QtCore import Qt

from bci.acquire import Inlet, InletSettings, StreamQuery, resolve_streams
from bci.engine.preprocess import fnirs_pipeline
from bci.streams import SAMPLE_INDEX_CHANNEL
from devices.virtual_subject.lsl_info import nirs_stream_info
from gui.views import EEGView, NirsView, SpectrumView
from gui.views.spectrum import scalp_positions
from gui.views.traces import CLIP_LANES
from tests.conftest import wait_for

NAMES = ("C3", "Cz", "C4", "FC3", "FC4", "Pz", "Oz", "Fz")
SFREQ = 250.0
SECONDS = 5.0
MU_UV, BETA_UV = 20.0, 5.0  # C3 carries a 10 Hz sine of MU_UV, Cz a 20 Hz sine of BETA_UV


def eeg_signal(n: int) -> np.ndarray:
    """Known EEG, µV, plus the sample index: C3 strong mu (on a DC offset), Cz beta."""
    t = np.arange(n) / SFREQ
    data = np.zeros((n, len(NAMES) + 1))
    for k in range(len(NAMES)):
        data[:, k] = 2.0 * np.sin(2 * np.pi * 10 * t + k)  # a little mu everywhere
    data[:, 0] = 300.0 + MU_UV * np.sin(2 * np.pi * 10 * t)
    data[:, 1] += BETA_UV * np.sin(2 * np.pi * 20 * t)
    data[:, -1] = np.arange(n)
    return data


def open_stream(info: pylsl.StreamInfo) -> tuple[pylsl.StreamOutlet, Inlet]:
    outlet = pylsl.StreamOutlet(info, chunk_size=0, max_buffered=60)
    resolved = resolve_streams([StreamQuery(name=info.name())], timeout_s=5)[0]
    inlet = Inlet(resolved, InletSettings(buffer_s=30.0)).connect()
    assert wait_for(outlet.have_consumers, 5)
    return outlet, inlet


def publish(outlet: pylsl.StreamOutlet, inlet: Inlet, data: np.ndarray) -> None:
    """Push ``data`` and pull until the inlet holds all of it."""
    target = inlet.n_samples + len(data)
    outlet.push_chunk(data.astype(np.float32), pylsl.local_clock())

    def pulled_all() -> bool:
        inlet.pull(0.0)
        return inlet.n_samples >= target

    assert wait_for(pulled_all, 10) and inlet.n_samples == target


@pytest.fixture
def eeg(unique_name):
    info = pylsl.StreamInfo(f"{unique_name}-EEG", "EEG", len(NAMES) + 1, SFREQ, "float32",
                            unique_name)  # fmt: skip
    channels = info.desc().append_child("channels")
    for name in (*NAMES, SAMPLE_INDEX_CHANNEL):
        channel = channels.append_child("channel")
        channel.append_child_value("label", name)
        channel.append_child_value("type", "MISC" if name == SAMPLE_INDEX_CHANNEL else "EEG")
    outlet, inlet = open_stream(info)
    publish(outlet, inlet, eeg_signal(int(SECONDS * SFREQ)))
    index = inlet.buffer.latest(len(inlet.buffer))[0][:, -1]
    np.testing.assert_array_equal(np.diff(index), 1)  # every sample arrived, once
    yield inlet
    inlet.disconnect()
    del outlet


def test_eeg_view_draws_the_window_scaled_by_gain(qtbot, eeg):
    view = EEGView(window_s=4.0, gain_uv=50.0, max_points=2000)
    qtbot.addWidget(view)
    view.attach(eeg)
    view.redraw()
    assert not view.waiting and view.frames == 1
    assert view.shown_channels == NAMES  # SampleIndex listed, not drawn
    assert view.trace(SAMPLE_INDEX_CHANNEL) is None
    window, _ = eeg.buffer.latest(int(4.0 * SFREQ))
    for row, name in enumerate(NAMES):
        x, y = view.trace(name)
        expected = (window[:, row] - window[:, row].mean()) / 50.0
        np.testing.assert_allclose(y, np.clip(expected, -CLIP_LANES, CLIP_LANES), atol=1e-12)
        assert x[0] == pytest.approx(-(len(window) - 1) / SFREQ) and x[-1] == 0.0
    view.remove_offset.setChecked(False)
    view.gain.setValue(100.0)
    view.redraw()
    np.testing.assert_allclose(view.trace("C3")[1], np.clip(window[:, 0] / 100.0, -3, 3))
    assert f"{eeg.n_samples} samples · 0 gaps · 0 dropped" in view.status.text()
    ticks = view.plot.getAxis("left")._tickLevels[0]
    assert [label for _, label in ticks] == list(NAMES)


def test_eeg_view_long_window_draws_the_min_max_envelope(qtbot, eeg):
    view = EEGView(window_s=30.0, max_points=200)
    qtbot.addWidget(view)
    view.remove_offset.setChecked(False)
    view.attach(eeg)
    view.redraw()
    factor = int(np.ceil(30.0 * SFREQ / 100))  # 100 bins of min and max
    bins = len(eeg.buffer) // factor  # bins count from the stream's first sample
    held, _ = eeg.buffer.latest(len(eeg.buffer))
    x, y = view.trace("Cz")
    gain = view.gain.value()
    per_bin = np.clip(held[: bins * factor, 1].reshape(bins, factor) / gain, -3, 3)
    np.testing.assert_allclose(y[0::2], per_bin.min(axis=1))
    np.testing.assert_allclose(y[1::2], per_bin.max(axis=1))
    assert len(x) == 2 * bins and x[-1] == 0.0 and np.all(np.diff(x) >= 0)


def test_eeg_view_channel_choice_and_bad_channels(qtbot, eeg):
    view = EEGView(window_s=2.0)
    qtbot.addWidget(view)
    view.attach(eeg)
    view.channels.topLevelItem(NAMES.index("Cz")).setCheckState(1, Qt.CheckState.Unchecked)
    view.redraw()
    assert "Cz" not in view.shown_channels and view.trace("Cz") is None
    assert view.shown_channels.index("C4") == 1  # the rest close up
    with qtbot.waitSignal(view.bad_channels_changed) as emitted:
        view.channels.topLevelItem(0).setCheckState(2, Qt.CheckState.Checked)
    assert emitted.args == [{"C3"}] and view.bad_channels == {"C3"}
    pen = view.pen("C3")
    assert pen.style() == Qt.PenStyle.DashLine and pen.color().saturation() == 0
    assert (0, "C3 (bad)") in view.plot.getAxis("left")._tickLevels[0]
    view.attach(eeg)  # the same stream again keeps the operator's marks
    assert view.bad_channels == {"C3"} and "Cz" not in view.shown_channels
    with qtbot.waitSignal(view.bad_channels_changed) as emitted:
        view.set_bad_channels(set())
    assert emitted.args == [set()] and view.pen("C3").style() == Qt.PenStyle.SolidLine
    view.set_shown_channels(["Fz", "Oz"])
    assert view.shown_channels == ("Oz", "Fz")  # stream order


def test_views_wait_for_their_stream(qtbot):
    for view in (EEGView(waiting_for="T-EEG"), NirsView(waiting_for="T-NIRS"),
                 SpectrumView(waiting_for="T-EEG")):  # fmt: skip
        qtbot.addWidget(view)
        view.attach(None)
        view.redraw()
        assert view.waiting and view.waiting_label.text().startswith("waiting for T-")


def test_scalp_positions_are_mnes_topomap_projection():
    mne = pytest.importorskip("mne")
    names = ["C3", "Cz", "C4", "Fz", "Pz", "Oz", "Fp1", "T8", "NotAnElectrode"]
    where = scalp_positions(names)
    assert "NotAnElectrode" not in where and len(where) == len(names) - 1
    assert where["C3"][0] < -0.2 < 0.2 < where["C4"][0] and where["Fz"][1] > 0.2 > where["Pz"][1]
    assert np.hypot(*where["Cz"]) < 0.25 and 0.7 < np.hypot(*where["T8"]) < 1.2
    info = mne.create_info(names[:-1], 250.0, "eeg")
    builtin = mne.channels.get_builtin_montages()
    montage = "colin27_1005" if "colin27_1005" in builtin else "standard_1005"
    info.set_montage(mne.channels.make_standard_montage(montage))
    layout = mne.channels.make_eeg_layout(info)
    centres = layout.pos[:, :2] + layout.pos[:, 2:] / 2
    ours = np.array([where[name] for name in layout.names])
    design = np.column_stack([ours.ravel(), np.tile([[1, 0], [0, 1]], (len(ours), 1))])
    coef, *_ = np.linalg.lstsq(design, centres.ravel(), rcond=None)
    np.testing.assert_allclose(design @ coef, centres.ravel(), atol=1e-9)  # one scale, one shift


def test_spectrum_view_peaks_at_the_sine_and_maps_band_power(qtbot, eeg):
    view = SpectrumView(update_interval_s=60.0)
    qtbot.addWidget(view)
    view.attach(eeg)
    view.redraw()
    view.redraw()  # throttled: nothing new to compute
    assert view.n_updates == 1 and view.good_channels == NAMES
    assert view.freqs[np.argmax(view.psd.mean(axis=0))] == 10.0
    freqs, log_psd = view.mean_curve.getData()
    assert freqs[np.argmax(log_psd)] == 10.0
    mu, beta = view.band_power["mu"], view.band_power["beta"]
    assert mu[0] == pytest.approx(MU_UV**2 / 2, rel=0.05)  # a sine's power: A²/2
    assert beta[1] == pytest.approx(BETA_UV**2 / 2, rel=0.05)
    assert "mu 8–13 Hz" in view.bands_label.text()
    where = scalp_positions(NAMES)
    at_c3, at_c4 = view.topo_value_at(*where["C3"]), view.topo_value_at(*where["C4"])
    assert np.isfinite(at_c3) and np.isfinite(at_c4) and at_c3 > 10 * at_c4
    assert np.isnan(view.topo_value_at(5.0, 5.0))
    view.mode.setCurrentIndex(1)
    assert view.channel_curves["Cz"].isVisible() and not view.mean_curve.isVisible()
    view.fit_range()
    low, high = view.psd_plot.getViewBox().viewRange()[1]
    assert low <= np.log10(view.psd.max()) <= high
    view.set_bad_channels({"C3"})
    view.refresh()
    assert "C3" not in view.good_channels and view.band_power["mu"].max() < 10
    assert not view.channel_curves["C3"].isVisible()
    assert len(view.dots.points()) == len(NAMES)  # the bad one drawn as a grey cross


def test_nirs_view_converts_each_sample_once_as_the_engine(qtbot, unique_name):
    info = nirs_stream_info(unique_name, seed=1, sfreq=10.0)
    outlet, inlet = open_stream(info)
    view = NirsView(spacing_um=0.5, n_default_pairs=3)
    qtbot.addWidget(view)
    view.attach(inlet)
    assert len(view.pairs) == 8 and view.shown_pairs == view.pairs[:3]
    t = np.arange(300) / 10.0
    phase = np.arange(info.channel_count())
    light = 1000.0 * (1 + 0.02 * np.sin(2 * np.pi * 0.1 * t[:, None] + phase))
    for chunk in np.array_split(light, [7, 100, 101]):  # redraw between uneven arrivals
        publish(outlet, inlet, chunk)
        view.redraw()
    received = light.astype(np.float32).astype(np.float64)
    expected, _ = fnirs_pipeline(inlet.ch_names)(received, np.arange(300) / 10.0)
    hb, _ = view.hb.latest(len(view.hb))
    np.testing.assert_allclose(hb, expected * 1e6, rtol=1e-9, atol=1e-12)
    assert np.abs(hb).max() > 0.1  # µM: a visible change
    hbo, hbr = view.curves[view.pairs[1]]
    np.testing.assert_allclose(hbo.getData()[1], hb[:, 2] / 0.5)
    np.testing.assert_allclose(hbr.getData()[1], hb[:, 3] / 0.5)
    assert hbo.pos().y() == -1 and hbo.getData()[0][-1] == 0.0
    assert hbo.opts["pen"].color().red() > 200 and hbr.opts["pen"].color().blue() > 200
    view.set_shown_pairs([view.pairs[4]])
    assert view.shown_pairs == (view.pairs[4],) and not hbo.isVisible()
    view.rebaseline()
    publish(outlet, inlet, light[:5])
    view.redraw()
    assert len(view.hb) == 5 and np.all(view.hb.latest(1)[0][0] != 0)
    np.testing.assert_allclose(view.hb.latest(5)[0][0], 0.0, atol=1e-12)  # the new zero
    inlet.discard_pending()  # the inlet restarts its count: so does the conversion
    publish(outlet, inlet, light[10:13])
    view.redraw()
    assert len(view.hb) == 3 and np.all(view.hb.latest(3)[0][0] == 0)
    inlet.disconnect()


def test_nirs_view_refuses_a_stream_without_fnirs_pairs(qtbot, eeg):
    view = NirsView()
    qtbot.addWidget(view)
    view.attach(eeg)
    view.redraw()
    assert view.waiting and "cannot be shown as fNIRS" in view.waiting_label.text()


def test_eeg_view_draws_64_channels_at_1khz_one_point_per_pixel(qtbot, unique_name):
    info = pylsl.StreamInfo(f"{unique_name}-EEG64", "EEG", 64, 1000.0, "float32", unique_name)
    outlet, inlet = open_stream(info)
    publish(outlet, inlet, np.random.default_rng(0).standard_normal((10_000, 64)) * 20)
    view = EEGView(window_s=10.0)
    qtbot.addWidget(view)
    view.resize(1600, 1000)
    view.show()
    view.attach(inlet)
    view.redraw()
    view.plot.grab()  # the first paint lays the scene out and sizes the traces to it
    view.redraw()
    view.plot.grab()  # paint, as the screen would
    width = view.plot.getViewBox().width()  # one point per pixel column
    assert 0.5 * width < len(view.trace("ch0")[0]) <= width
    assert len(view.shown_channels) == 64 and view.frames == 2
    inlet.disconnect()
