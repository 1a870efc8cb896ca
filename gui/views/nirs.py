"""HbO and HbR of fNIRS source–detector pairs, converted by the engine's own stages.

The stream carries raw intensities. The view runs :func:`bci.engine.preprocess.fnirs_pipeline`
(optical density → modified Beer–Lambert) on every new sample exactly once, as the engine does,
and keeps the result in its own preallocated ring; what the operator sees is what the loop uses.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QDoubleSpinBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from bci.acquire import Inlet, RingBuffer
from bci.engine.preprocess import fnirs_pipeline
from bci.signal import Pipeline
from gui.views.eeg import StreamView, fixed_plot, status_label

WINDOW_RANGE_S = (10.0, 120.0)
"""Allowed time window, s; the view keeps this much converted history."""
SPACING_RANGE_UM = (0.05, 100.0)
"""Allowed spacing, µM between neighbouring pair baselines."""
HBO_PEN = pg.mkPen((230, 40, 40), width=1)
HBR_PEN = pg.mkPen((40, 90, 235), width=1)
_MOL_TO_UM = 1e6  # the pipeline gives mol/L; operators read µM


class NirsView(StreamView):
    """ΔHbO (red) and ΔHbR (blue) over time, one lane per chosen source–detector pair.

    Parameters
    ----------
    parent : QWidget, optional
    waiting_for : str
        What :meth:`attach` (None) says it waits for.
    window_s : float
        Time window shown, s (``WINDOW_RANGE_S``).
    spacing_um : float
        µM between neighbouring pair baselines (``SPACING_RANGE_UM``).
    n_default_pairs : int
        How many pairs (the first ones) are shown when a stream is attached.

    Notes
    -----
    Concentration changes are relative to the first sample converted (the optical-density
    baseline of the engine's pipeline): the first the view saw, or the first after
    :meth:`rebaseline`.
    """

    def __init__(self, parent: QWidget | None = None, *, waiting_for: str = "the fNIRS stream",
                 window_s: float = 30.0, spacing_um: float = 1.0,
                 n_default_pairs: int = 8) -> None:  # fmt: skip
        super().__init__(parent)
        self.n_default_pairs = int(n_default_pairs)
        self.frames = 0
        """Redraws that drew data."""
        self.error = ""
        """Why the attached stream cannot be shown ("" when it can)."""
        self._inlet: Inlet | None = None
        self._pipeline: Pipeline | None = None
        self._hb: RingBuffer | None = None
        self._pairs: tuple[str, ...] = ()
        self._curves: list[tuple[pg.PlotCurveItem, pg.PlotCurveItem]] = []
        self._picks: list[int] = []
        self._converted = 0  # inlet.n_samples already through the pipeline
        self._first_time = np.nan  # inlet.first_time when converting began: tells a restart
        self._x = np.empty(0)
        self._y = np.empty((0, 0))

        self.window = QDoubleSpinBox(decimals=0, minimum=WINDOW_RANGE_S[0],
                                     maximum=WINDOW_RANGE_S[1])  # fmt: skip
        self.window.setSuffix(" s")
        self.spacing = QDoubleSpinBox(decimals=2, minimum=SPACING_RANGE_UM[0],
                                      maximum=SPACING_RANGE_UM[1], singleStep=0.25)  # fmt: skip
        self.spacing.setSuffix(" µM/div")
        self.spacing.setToolTip("µM between neighbouring pair baselines")
        self.rebaseline_button = QPushButton("Re-baseline")
        self.rebaseline_button.setToolTip("Make the next sample the zero of ΔHbO and ΔHbR")
        self.pair_list = QListWidget()
        self.plot = fixed_plot("Time relative to the newest sample (s)", "Source–detector pair",
                               "ΔHbO (red), ΔHbR (blue), µM")  # fmt: skip
        self.status = status_label()

        controls = QHBoxLayout()
        for widget in (QLabel("Window"), self.window, QLabel("Spacing"), self.spacing,
                       self.rebaseline_button):  # fmt: skip
            controls.addWidget(widget)
        controls.addStretch(1)
        splitter = QSplitter()
        splitter.addWidget(self.pair_list)
        splitter.addWidget(self.plot)
        splitter.setStretchFactor(1, 1)
        content = QWidget()
        inner = QVBoxLayout(content)
        inner.addLayout(controls)
        inner.addWidget(splitter, 1)
        inner.addWidget(self.status)
        self._set_content(content, waiting_for)
        self._waiting_text = self.waiting_label.text()

        self.window.setValue(window_s)
        self.spacing.setValue(spacing_um)
        self.window.valueChanged.connect(self._set_x_range)
        self.pair_list.itemChanged.connect(self._relayout)
        self.rebaseline_button.clicked.connect(self.rebaseline)
        self.attach(None)

    # public --------------------------------------------------------------------------------
    @property
    def pairs(self) -> tuple[str, ...]:
        """Source–detector pairs of the stream (``"S1_D1"``...)."""
        return self._pairs

    @property
    def shown_pairs(self) -> tuple[str, ...]:
        """Pairs drawn, top to bottom."""
        return tuple(self._pairs[i] for i in self._picks)

    @property
    def curves(self) -> dict[str, tuple[pg.PlotCurveItem, pg.PlotCurveItem]]:
        """``(hbo_curve, hbr_curve)`` of every pair, by pair name."""
        return dict(zip(self._pairs, self._curves, strict=True))

    @property
    def hb(self) -> RingBuffer | None:
        """The converted history: ``"<pair> hbo"``, ``"<pair> hbr"`` per pair, µM."""
        return self._hb

    def attach(self, inlet: Inlet | None) -> None:
        """Show ``inlet``'s haemoglobin, or "waiting for ..." when None.

        A stream whose channels are not fNIRS pairs (``"S1_D1 760"``...) is refused with its
        reason in the waiting text and :attr:`error`.
        """
        self._inlet, self._pipeline, self._hb, self.error = None, None, None, ""
        for hbo, hbr in self._curves:
            self.plot.removeItem(hbo)
            self.plot.removeItem(hbr)
        self._curves, self._pairs = [], ()
        self.pair_list.clear()
        self.waiting_label.setText(self._waiting_text)
        self._stack.setCurrentWidget(self.waiting_label)
        if inlet is None:
            return
        try:
            pipeline = fnirs_pipeline(inlet.ch_names)
        except ValueError as err:  # not an fNIRS stream: say why instead of a blank plot
            self.error = f"{inlet.name} cannot be shown as fNIRS: {err}"
            self.waiting_label.setText(self.error)
            return
        self._inlet, self._pipeline = inlet, pipeline
        out_names = pipeline.ch_names_out
        self._pairs = tuple(name.split(" ")[0] for name in out_names[::2])
        capacity = max(int(np.ceil(WINDOW_RANGE_S[1] * inlet.sfreq)), 1)
        self._hb = RingBuffer(capacity, len(out_names))
        self._x = np.empty(capacity)
        self._y = np.empty((len(out_names), capacity))
        for i, pair in enumerate(self._pairs):
            item = QListWidgetItem(pair)
            shown = i < self.n_default_pairs
            item.setCheckState(Qt.CheckState.Checked if shown else Qt.CheckState.Unchecked)
            self.pair_list.addItem(item)
            curves = (pg.PlotCurveItem(pen=HBO_PEN), pg.PlotCurveItem(pen=HBR_PEN))
            for curve in curves:
                self.plot.addItem(curve)
            self._curves.append(curves)
        self._restart()
        self._relayout()
        self._set_x_range()
        self._stack.setCurrentWidget(self._stack.widget(1))

    def set_shown_pairs(self, pairs) -> None:
        """Draw exactly ``pairs`` (names such as ``"S1_D1"``; unknown ones are ignored)."""
        wanted = set(pairs)
        self.pair_list.blockSignals(True)  # one relayout, not one per item
        for i, pair in enumerate(self._pairs):
            state = Qt.CheckState.Checked if pair in wanted else Qt.CheckState.Unchecked
            self.pair_list.item(i).setCheckState(state)
        self.pair_list.blockSignals(False)
        self._relayout()

    def rebaseline(self) -> None:
        """Start the concentration changes again from the next sample."""
        if self._pipeline is not None:
            self._pipeline.reset()
            self._hb.clear()

    def redraw(self) -> None:
        """Convert what arrived since the last call, then draw the newest window (never pulls)."""
        inlet = self._inlet
        if inlet is None:
            return
        self._convert(inlet)
        self.status.setText(
            f"{inlet.name} · {len(self._pairs)} pairs · {inlet.sfreq:g} Hz · "
            f"{inlet.n_samples} samples · {len(inlet.gaps)} gaps · {inlet.n_missing} dropped"
        )
        n = min(round(self.window.value() * inlet.sfreq), len(self._hb))
        if n == 0 or not self._picks:
            return
        hb, times = self._hb.latest(n)
        x = self._x[:n]
        np.subtract(times, times[-1], out=x)
        scale = 1.0 / self.spacing.value()
        for pair in self._picks:
            y = self._y[2 * pair : 2 * pair + 2, :n]  # rows: hbo, hbr
            np.multiply(hb[:, 2 * pair : 2 * pair + 2].T, scale, out=y)
            for curve, row in zip(self._curves[pair], y, strict=True):
                curve.setData(x, row, skipFiniteCheck=True, connect="all")
        self.frames += 1

    # internals -----------------------------------------------------------------------------
    def _restart(self) -> None:
        self._pipeline.reset()
        self._hb.clear()
        self._converted = 0
        self._first_time = np.nan

    def _convert(self, inlet: Inlet) -> None:
        """Feed each new sample of the inlet's ring through the pipeline once."""
        restarted = inlet.n_samples < self._converted or (
            self._converted > 0 and inlet.first_time != self._first_time
        )
        if restarted:  # the inlet was reset (reconnect, discard): its samples count from 0
            self._restart()
        new = inlet.n_samples - self._converted
        # more than the ring holds arrived since the last redraw (a stalled GUI): the oldest
        # are gone; OD is per sample once its baseline is known, so the rest still convert right
        take = min(new, len(inlet.buffer))
        if take > 0:
            data, times = inlet.buffer.latest(take)
            hb, hb_times = self._pipeline(data, times)
            self._hb.write(hb * _MOL_TO_UM, hb_times)
        if self._converted == 0 and inlet.n_samples > 0:
            self._first_time = inlet.first_time
        self._converted = inlet.n_samples

    def _relayout(self) -> None:
        self._picks = [
            i for i in range(self.pair_list.count())
            if self.pair_list.item(i).checkState() == Qt.CheckState.Checked
        ]  # fmt: skip
        for i, curves in enumerate(self._curves):
            for curve in curves:
                curve.setVisible(i in self._picks)
        ticks = []
        for row, pair in enumerate(self._picks):
            for curve in self._curves[pair]:
                curve.setPos(0.0, -row)
            ticks.append((-row, self._pairs[pair]))
        self.plot.getAxis("left").setTicks([ticks, []])
        self.plot.setYRange(-max(len(ticks), 1) + 0.5, 0.5, padding=0.0)

    def _set_x_range(self) -> None:
        self.plot.setXRange(-self.window.value(), 0.0, padding=0.0)
