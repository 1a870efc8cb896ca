"""Power spectrum, mu/beta band power and a scalp map of band power, from the EEG stream.

Welch over the newest 2 s, recomputed a few times per second (not every frame): an operator
reads a spectrum at that pace, and 64 channels of Welch every 33 ms would cost the console its
frame rate.
"""

from __future__ import annotations

import time
from functools import lru_cache

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget
from scipy.interpolate import CloughTocher2DInterpolator
from scipy.signal import welch
from scipy.spatial import Delaunay

from bci.acquire import Inlet
from gui.views.eeg import StreamView, fixed_plot, is_eeg, status_label

BANDS_HZ = {"mu": (8.0, 13.0), "beta": (13.0, 30.0)}
"""Bands whose power is shown, Hz, ``low <= f < high``."""
WELCH_S = 2.0
"""Data per spectrum, s (the newest)."""
SEGMENT_S = 1.0
"""Welch segment, s: 1 Hz resolution, three half-overlapping Hann segments per spectrum."""
MAX_FREQ_HZ = 80.0
"""Highest frequency shown, Hz (below Nyquist), so mains at 50 or 60 Hz stays in view."""
HEAD_RADIUS_M = 0.095
"""Head sphere radius, m: MNE's default, the circle its topomaps draw."""
_PSD_RANGE_LOG10 = (-2.0, 3.0)  # µV²/Hz: resting EEG sits in it; "Fit range" changes it


@lru_cache(maxsize=1)
def _montage_positions() -> dict[str, np.ndarray]:
    import mne  # deferred: importing MNE takes a second and only the map needs it

    name = "standard_1005"
    if "colin27_1005" in mne.channels.get_builtin_montages():
        name = "colin27_1005"  # the same positions; the old name is deprecated from MNE 1.13
    # in MNE's head frame (origin between the ears), the frame its topomaps project from
    montage = mne.channels.transform_to_head(mne.channels.make_standard_montage(name))
    positions = montage.get_positions()["ch_pos"]
    return {ch.lower(): np.asarray(xyz, dtype=float) for ch, xyz in positions.items()}


def scalp_positions(ch_names) -> dict[str, tuple[float, float]]:
    """2-D scalp positions of the channels MNE's 10-05 montage knows (others are left out).

    The projection is MNE's topomap one (azimuthal equidistant about the head centre), scaled
    so that the head circle has radius 1: x to the right ear, y to the nose.

    Parameters
    ----------
    ch_names : sequence of str
        Channel names (matched to the montage ignoring case).

    Returns
    -------
    positions : dict of str to (float, float)
        By channel name, in head radii.
    """
    montage = _montage_positions()
    out = {}
    for name in ch_names:
        xyz = montage.get(name.lower())
        if xyz is None:
            continue
        r = float(np.linalg.norm(xyz))
        polar = np.arccos(xyz[2] / r)  # angle from the vertex
        azimuth = np.arctan2(xyz[1], xyz[0])
        radius = polar * r / (np.pi / 2) / HEAD_RADIUS_M
        out[name] = (radius * np.cos(azimuth), radius * np.sin(azimuth))
    return out


class _ScalpGrid:
    """Interpolation of electrode values over the head, for one set of electrode positions.

    A ring of border points outside the electrodes, each valued the mean of the electrodes it
    neighbours (MNE's ``border="mean"``), lets the map fill the head instead of stopping at the
    outermost electrodes; the map is blank outside the head (or the outermost electrode).

    Parameters
    ----------
    xy : array, shape (n_electrodes, 2)
        Positions, head radii (:func:`scalp_positions`); at least 3.
    size : int
        Pixels per side.
    n_border : int
        Border points.
    """

    def __init__(self, xy: np.ndarray, size: int, n_border: int = 36) -> None:
        self.extent = max(1.0, float(np.hypot(xy[:, 0], xy[:, 1]).max())) * 1.05
        radius = self.extent / np.cos(np.pi / n_border) * 1.01  # the ring's polygon holds the disk
        angle = np.linspace(0, 2 * np.pi, n_border, endpoint=False)
        ring = radius * np.column_stack([np.cos(angle), np.sin(angle)])
        self.tri = Delaunay(np.vstack([xy, ring]))
        n = len(xy)
        self.border = np.full((n_border, n), 1.0 / n)  # a border point far from all: the mean
        indptr, neighbours = self.tri.vertex_neighbor_vertices
        for j in range(n_border):
            near = neighbours[indptr[n + j] : indptr[n + j + 1]]
            near = near[near < n]
            if near.size:
                self.border[j] = 0.0
                self.border[j, near] = 1.0 / near.size
        axis = np.linspace(-self.extent, self.extent, size)
        self.grid = np.meshgrid(axis, axis)  # rows follow y, columns follow x
        self.outside = np.hypot(*self.grid) > self.extent
        step = 2 * self.extent / (size - 1)  # pixel centres on the grid points
        self.rect = QRectF(-self.extent - step / 2, -self.extent - step / 2,
                           2 * self.extent + step, 2 * self.extent + step)  # fmt: skip

    def __call__(self, values: np.ndarray) -> np.ndarray:
        """Map of ``values`` (one per electrode), shape (size, size); NaN outside the head."""
        image = CloughTocher2DInterpolator(
            self.tri, np.concatenate([values, self.border @ values])
        )(*self.grid)
        image[self.outside] = np.nan
        return image


class SpectrumView(StreamView):
    """PSD, mu and beta band power, and a scalp map of band power of the good EEG channels.

    Parameters
    ----------
    parent : QWidget, optional
    waiting_for : str
        What :meth:`attach` (None) says it waits for.
    update_interval_s : float
        Least time between two computations, s.
    grid_size : int
        Pixels per side of the interpolated scalp map.

    Notes
    -----
    Good channels are the stream's EEG channels (not ``SampleIndex``, nor channels typed other
    than EEG) that are not bad. Power is in µV² (EEG in µV, the LSL convention).
    """

    def __init__(self, parent: QWidget | None = None, *, waiting_for: str = "the EEG stream",
                 update_interval_s: float = 0.25, grid_size: int = 96) -> None:  # fmt: skip
        super().__init__(parent)
        self.update_interval_s = float(update_interval_s)
        self.grid_size = int(grid_size)
        self.n_updates = 0
        """Spectra computed since construction."""
        self.freqs = np.empty(0)
        """array, shape (n_freqs,): frequencies of :attr:`psd`, Hz."""
        self.psd = np.empty((0, 0))
        """array, shape (n_good, n_freqs): PSD of each good channel, µV²/Hz."""
        self.band_power: dict[str, np.ndarray] = {}
        """By band name: power of each good channel, µV²."""
        self.good_channels: tuple[str, ...] = ()
        """Channels in :attr:`psd`, in stream order."""
        self._inlet: Inlet | None = None
        self._eeg: list[int] = []
        self._bad: set[str] = set()
        self._last_compute = -np.inf
        self._last_n = -1
        self._grid_key: tuple | None = None  # the channels the map and dots were made for
        self._grid: _ScalpGrid | None = None
        self._map_rect: QRectF | None = None  # where the map's pixels lie, head radii

        self.mode = QComboBox()
        self.mode.addItems(["Mean of good channels", "Each good channel"])
        self.map_band = QComboBox()
        self.map_band.addItems([f"{b} {lo:g}–{hi:g} Hz" for b, (lo, hi) in BANDS_HZ.items()])
        self.fit_button = QPushButton("Fit range")
        self.fit_button.setToolTip("Set the PSD axis once to the current spectrum")
        self.bands_label = QLabel()
        self.status = status_label()
        self.psd_plot = fixed_plot("Frequency (Hz)", "PSD (µV²/Hz)", "Power spectrum (Welch, 2 s)")
        self.psd_plot.getAxis("left").setLogMode(False, True)  # curves hold log10(PSD)
        self.psd_plot.setYRange(*_PSD_RANGE_LOG10, padding=0.0)
        for lo, hi in BANDS_HZ.values():
            region = pg.LinearRegionItem((lo, hi), movable=False, brush=(120, 120, 120, 40))
            self.psd_plot.addItem(region)
        self.mean_curve = pg.PlotCurveItem(pen=pg.mkPen((250, 250, 250), width=2))
        self.psd_plot.addItem(self.mean_curve)
        self.channel_curves: dict[str, pg.PlotCurveItem] = {}
        """Per-channel PSD curves ("Each good channel"), by channel name."""

        self.topo_widget = pg.GraphicsLayoutWidget()
        self.topo_plot = self.topo_widget.addPlot(title="Scalp map (nose up)")
        self.topo_plot.setAspectLocked(True)
        for axis in ("left", "bottom"):
            self.topo_plot.hideAxis(axis)
        self.topo_plot.setMouseEnabled(x=False, y=False)
        self.topo_plot.hideButtons()
        self.topo_plot.setMenuEnabled(False)
        self.topo_image = pg.ImageItem(axisOrder="row-major")  # image[row = y, column = x]
        self.topo_plot.addItem(self.topo_image)
        self.colorbar = pg.ColorBarItem(colorMap=pg.colormap.get("viridis"), interactive=False,
                                        label="Band power (µV²)")  # fmt: skip
        self.colorbar.setImageItem(self.topo_image, insert_in=self.topo_plot)
        self._draw_head()
        self.dots = pg.ScatterPlotItem(size=7, pen=pg.mkPen("k"), brush=pg.mkBrush("w"))
        self.topo_plot.addItem(self.dots)
        self._labels: list[pg.TextItem] = []

        controls = QHBoxLayout()
        for widget in (QLabel("Spectrum of"), self.mode, self.fit_button, QLabel("Map"),
                       self.map_band):  # fmt: skip
            controls.addWidget(widget)
        controls.addStretch(1)
        plots = QHBoxLayout()
        plots.addWidget(self.psd_plot, 3)
        plots.addWidget(self.topo_widget, 2)
        content = QWidget()
        inner = QVBoxLayout(content)
        inner.addLayout(controls)
        inner.addLayout(plots, 1)
        footer = QHBoxLayout()
        footer.addWidget(self.bands_label, 1)
        footer.addWidget(self.status)
        inner.addLayout(footer)
        self._set_content(content, waiting_for)

        self.mode.currentIndexChanged.connect(self._draw)
        self.map_band.currentIndexChanged.connect(self._draw)
        self.fit_button.clicked.connect(self.fit_range)
        self.attach(None)

    # public --------------------------------------------------------------------------------
    def attach(self, inlet: Inlet | None) -> None:
        """Show ``inlet``'s spectrum, or "waiting for ..." when None."""
        self._inlet = inlet
        for curve in self.channel_curves.values():
            self.psd_plot.removeItem(curve)
        self.channel_curves = {}
        self._clear()
        if inlet is None:
            self._eeg = []
            self._show(False)
            return
        names, types = inlet.ch_names, inlet.ch_types
        self._eeg = [i for i, name in enumerate(names) if is_eeg(name, types[i])]
        for n, i in enumerate(self._eeg):
            curve = pg.PlotCurveItem(pen=pg.mkPen(pg.intColor(n, hues=8), width=1))
            curve.setVisible(False)
            self.psd_plot.addItem(curve)
            self.channel_curves[names[i]] = curve
        nyquist = inlet.sfreq / 2 if inlet.sfreq > 0 else MAX_FREQ_HZ
        self.psd_plot.setXRange(0.0, min(MAX_FREQ_HZ, nyquist), padding=0.0)
        self._show(True)

    def set_bad_channels(self, names) -> None:
        """Leave ``names`` out of the spectrum, band power and map (from the next computation)."""
        self._bad = set(names)
        self._last_n = -1  # recompute at the next redraw even if no sample arrived

    def redraw(self) -> None:
        """Recompute from the inlet's buffer when due (``update_interval_s``); never pulls."""
        inlet = self._inlet
        if inlet is None:
            return
        now = time.monotonic()
        if now - self._last_compute < self.update_interval_s or inlet.n_samples == self._last_n:
            return
        self._last_compute = now
        self.refresh()

    def refresh(self) -> None:
        """Compute the spectrum, band power and map now, and draw them."""
        inlet = self._inlet
        if inlet is None:
            return
        self._last_n = inlet.n_samples
        names = inlet.ch_names
        good = [i for i in self._eeg if names[i] not in self._bad]
        n = round(WELCH_S * inlet.sfreq)
        if not good or inlet.sfreq <= 0 or len(inlet.buffer) < n:
            self._clear()
            held = len(inlet.buffer) / inlet.sfreq if inlet.sfreq > 0 else 0.0
            self.status.setText(
                "no good EEG channel" if not good else
                f"collecting {WELCH_S:g} s of EEG ({held:.1f} s so far)"
            )  # fmt: skip
            return
        data, _ = inlet.buffer.latest(n)
        self.freqs, self.psd = welch(
            data[:, good].T, fs=inlet.sfreq, nperseg=round(SEGMENT_S * inlet.sfreq), axis=-1
        )
        self.good_channels = tuple(names[i] for i in good)
        df = self.freqs[1] - self.freqs[0]
        self.band_power = {
            band: self.psd[:, (self.freqs >= lo) & (self.freqs < hi)].sum(axis=1) * df
            for band, (lo, hi) in BANDS_HZ.items()
        }
        self.n_updates += 1
        self.status.setText(f"{inlet.name} · {len(good)} good channels · newest {WELCH_S:g} s")
        self._draw()

    def fit_range(self) -> None:
        """Set the PSD axis to the current spectrum's range (it stays fixed until called again)."""
        if self.psd.size:
            _, log, _ = self._log_psd()
            self.psd_plot.setYRange(np.floor(log.min()), np.ceil(log.max()), padding=0.0)

    def topo_value_at(self, x: float, y: float) -> float:
        """The map's value at scalp point ``(x, y)`` (head radii), µV²; NaN outside the map."""
        image, rect = self.topo_image.image, self._map_rect
        if image is None or rect is None:
            return float("nan")
        col = int((x - rect.left()) / rect.width() * image.shape[1])
        row = int((y - rect.top()) / rect.height() * image.shape[0])
        if not (0 <= row < image.shape[0] and 0 <= col < image.shape[1]):
            return float("nan")
        return float(image[row, col])

    # drawing -------------------------------------------------------------------------------
    def _clear(self) -> None:
        self.freqs, self.psd = np.empty(0), np.empty((0, 0))
        self.band_power, self.good_channels = {}, ()
        self.mean_curve.setData([], [])
        for curve in self.channel_curves.values():
            curve.setVisible(False)
        self.topo_image.clear()
        self._map_rect, self._grid_key = None, None
        self.dots.setData([])
        for label in self._labels:
            self.topo_plot.removeItem(label)
        self._labels = []
        self.bands_label.setText("")

    def _draw(self) -> None:
        if self.psd.size == 0:
            return
        freqs, log, log_mean = self._log_psd()
        each = self.mode.currentIndex() == 1
        self.mean_curve.setData(freqs, log_mean)
        self.mean_curve.setVisible(not each)
        for name, curve in self.channel_curves.items():
            curve.setVisible(each and name in self.good_channels)
        if each:
            for row, name in enumerate(self.good_channels):
                self.channel_curves[name].setData(freqs, log[row])
        self.bands_label.setText(" · ".join(
            f"{band} {lo:g}–{hi:g} Hz: {self.band_power[band].mean():.3g} µV²"
            for band, (lo, hi) in BANDS_HZ.items()
        ))  # fmt: skip
        self._draw_map()

    def _log_psd(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Shown frequencies, log10 PSD per good channel and of their mean (a flat one is 0)."""
        shown = (self.freqs > 0) & (self.freqs <= MAX_FREQ_HZ)
        psd = np.maximum(self.psd[:, shown], 1e-12)
        return self.freqs[shown], np.log10(psd), np.log10(psd.mean(axis=0))

    def _draw_map(self) -> None:
        band = list(BANDS_HZ)[self.map_band.currentIndex()]
        self.colorbar.getAxis("left").setLabel(f"{band} power (µV²)")
        where = scalp_positions(self.good_channels)
        placed = [i for i, name in enumerate(self.good_channels) if name in where]
        names = [self.good_channels[i] for i in placed]
        key = (tuple(names), tuple(sorted(self._bad)))
        if key != self._grid_key:  # electrodes and triangulation change with the channels only
            self._grid_key = key
            xy = np.array([where[name] for name in names]).reshape(-1, 2)
            self._grid = _ScalpGrid(xy, self.grid_size) if len(xy) >= 3 else None
            self._draw_electrodes(xy, names)
        if self._grid is None:  # fewer than 3 electrodes span no map
            self.topo_image.clear()
            self._map_rect = None
            return
        values = self.band_power[band][placed]
        self.topo_image.setImage(self._grid(values), autoLevels=False)
        self._map_rect = self._grid.rect
        self.topo_image.setRect(self._map_rect)
        low, high = float(values.min()), float(values.max())
        self.colorbar.setLevels((low, high if high > low else low + 1e-12))

    def _draw_electrodes(self, xy: np.ndarray, names: list[str]) -> None:
        """Good electrodes as labelled dots, bad ones as grey crosses."""
        bad_xy = np.array(list(scalp_positions(sorted(self._bad)).values())).reshape(-1, 2)
        grey = {"symbol": "x", "brush": pg.mkBrush(140, 140, 140), "pen": pg.mkPen(None)}
        self.dots.setData([{"pos": p} for p in xy] + [{"pos": p, **grey} for p in bad_xy])
        for label in self._labels:
            self.topo_plot.removeItem(label)
        self._labels = []
        for (x, y), name in zip(xy, names, strict=True):
            label = pg.TextItem(name, color=(220, 220, 220), anchor=(0.5, -0.2))
            label.setPos(x, y)
            self.topo_plot.addItem(label)
            self._labels.append(label)
        reach = max(1.25, self._grid.extent + 0.05) if self._grid else 1.25  # Iz lies outside
        self.topo_plot.setRange(xRange=(-reach, reach), yRange=(-reach, reach), padding=0.0)

    def _draw_head(self) -> None:
        angle = np.linspace(0, 2 * np.pi, 181)
        pen = pg.mkPen((200, 200, 200), width=2)
        ear = angle[:91] - np.pi / 2  # a half ellipse on each side
        outline = [
            (np.cos(angle), np.sin(angle)),
            (np.array([-0.1, 0.0, 0.1]), np.array([0.995, 1.1, 0.995])),  # nose
            (1.0 + 0.06 * np.cos(ear), 0.15 * np.sin(ear)),
            (-1.0 - 0.06 * np.cos(ear), 0.15 * np.sin(ear)),
        ]
        for x, y in outline:
            self.topo_plot.addItem(pg.PlotCurveItem(x, y, pen=pen))
        self.topo_plot.setRange(xRange=(-1.25, 1.25), yRange=(-1.25, 1.25), padding=0.0)
