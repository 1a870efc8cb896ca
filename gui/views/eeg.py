"""Scrolling multichannel EEG for the operator console.

Drawn the fast way (STYLE 11, one departure): fixed ranges, auto-range off, an x array allocated
once, each channel reduced to a min/max envelope of about one point per screen pixel (so 64
channels at 1 kHz cost what 64 channels at 100 Hz do and a spike narrower than a pixel still
shows), updated from the new samples only; and all channels drawn by one item
(:class:`~gui.views.traces.TraceStack`), not a ``PlotCurveItem`` each, which at 64 channels
costs twice the drawing itself.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QPen
from PySide6.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
    QHBoxLayout,
    QLabel,
    QSizePolicy,
    QSplitter,
    QStackedWidget,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from bci.acquire import Inlet
from bci.streams import SAMPLE_INDEX_CHANNEL
from gui.views.traces import EnvelopeCache, TraceStack

GAIN_RANGE_UV = (1.0, 10000.0)
"""Allowed gain, µV between neighbouring channel baselines."""
WINDOW_RANGE_S = (2.0, 30.0)
"""Allowed time window, s."""
POINTS_RANGE = (200, 4000)
"""Bounds of the points per curve when they follow the plot's width."""
RESIZE_TOLERANCE = 0.05
"""How far the plot's width may drift from the points drawn before they are recomputed: a
label's text can nudge it by a pixel every frame, and recomputing resets the envelope."""
_NAME, _SHOW, _BAD = 0, 1, 2  # columns of the channel list
_BAD_PEN = pg.mkPen((140, 140, 140), width=1, style=Qt.PenStyle.DashLine)


def fixed_plot(bottom: str, left: str, title: str) -> pg.PlotWidget:
    """A plot whose ranges only the view sets: no auto-range, no mouse zoom, no menu.

    Parameters
    ----------
    bottom, left : str
        Axis labels, with units.
    title : str
        Plot title.

    Returns
    -------
    plot : pyqtgraph.PlotWidget
    """
    plot = pg.PlotWidget(title=title)
    plot.setLabel("bottom", bottom)
    plot.setLabel("left", left)
    item = plot.getPlotItem()
    item.disableAutoRange()
    item.hideButtons()
    item.setMenuEnabled(False)
    item.setMouseEnabled(x=False, y=False)  # a drag would fight the fixed ranges every frame
    ticks_outside(plot)
    return plot


def ticks_outside(*plots) -> None:
    """Point the left and bottom ticks of each plot (PlotWidget or PlotItem) away from the
    data: inward ticks overlap the data area, so every frame would repaint the axes too."""
    for plot in plots:
        for name in ("left", "bottom"):
            plot.getAxis(name).setStyle(tickLength=5)


def is_eeg(name: str, kind: str | None) -> bool:
    """Whether a channel is EEG: not the sample index, and typed EEG (or untyped)."""
    return name != SAMPLE_INDEX_CHANNEL and (kind or "EEG").upper() == "EEG"


def status_label() -> QLabel:
    """A label whose text may change every frame without moving anything: its width is what
    the layout gives it, so a longer number never re-lays out (and repaints) the plots."""
    label = QLabel()
    label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
    return label


class StreamView(QWidget):
    """A view of one stream: its content, or "waiting for ..." while there is no stream."""

    def _set_content(self, content: QWidget, waiting_for: str) -> None:
        """Show ``content`` in this view, behind a "waiting for ``waiting_for``" label."""
        self.waiting_label = QLabel(f"waiting for {waiting_for}…")
        self.waiting_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self._stack = QStackedWidget()
        self._stack.addWidget(self.waiting_label)
        self._stack.addWidget(content)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self._stack)

    def _show(self, shown: bool) -> None:
        """The content when a stream is ``shown``; else the waiting text, and the content
        forgets what it showed (:meth:`_clear`)."""
        if shown:
            self._stack.setCurrentWidget(self._stack.widget(1))
        else:
            self._stack.setCurrentWidget(self.waiting_label)
            self._clear()

    def _clear(self) -> None:
        """Forget what the content shows (views that keep a history override it)."""

    @property
    def waiting(self) -> bool:
        """Whether the view shows its waiting (or error) text instead of its content."""
        return self._stack.currentWidget() is self.waiting_label


class EEGView(StreamView):
    """Scrolling EEG traces of one stream, with gain, window, channel choice and bad channels.

    Parameters
    ----------
    parent : QWidget, optional
    waiting_for : str
        What :meth:`attach` (None) says it waits for.
    window_s : float
        Time window shown, s (``WINDOW_RANGE_S``).
    gain_uv : float
        µV between neighbouring channel baselines (``GAIN_RANGE_UV``).
    max_points : int, optional
        Most points per curve; longer windows are drawn as a min/max envelope. None: the plot's
        width in pixels (``POINTS_RANGE`` bounds it), followed as the plot is resized.

    Notes
    -----
    Traces are in µV (the LSL convention for EEG), divided by the gain, so channel ``j`` of the
    shown ones sits at y = -j. With "remove offset" (default on) each trace has its window mean
    subtracted (for an envelope, the mean of its bins' midpoints), so amplifiers with a DC offset
    stay in their lane. Traces are clipped ``CLIP_LANES`` lanes from their baseline.
    """

    bad_channels_changed = Signal(object)
    """Emitted with the new set of bad channel names (set of str) whenever it changes."""

    def __init__(
        self,
        parent: QWidget | None = None,
        *,
        waiting_for: str = "the EEG stream",
        window_s: float = 10.0,
        gain_uv: float = 50.0,
        max_points: int | None = None,
    ) -> None:
        super().__init__(parent)
        if max_points is not None and max_points < POINTS_RANGE[0]:
            raise ValueError(f"max_points must be None or >= {POINTS_RANGE[0]}, got {max_points}")
        self.max_points = max_points
        self._points = POINTS_RANGE[0]  # points per curve the arrays are allocated for
        self.frames = 0
        """Redraws that drew data (a frame counter for the console's fps)."""
        self._inlet: Inlet | None = None
        self._names: tuple[str, ...] = ()
        self._bad: set[str] = set()
        self._envelope: EnvelopeCache | None = None  # None: one point per sample
        self._picks = np.empty(0, dtype=int)
        self._updating = False  # set while the list is filled, so its signals are ignored
        self._x = np.empty(0)
        self._y = np.empty((0, 0))

        self.gain = QDoubleSpinBox(decimals=1, minimum=GAIN_RANGE_UV[0], maximum=GAIN_RANGE_UV[1])
        self.gain.setSuffix(" µV/div")
        self.gain.setToolTip("µV between neighbouring channel baselines")
        self.window = QDoubleSpinBox(decimals=1, minimum=WINDOW_RANGE_S[0],
                                     maximum=WINDOW_RANGE_S[1])  # fmt: skip
        self.window.setSuffix(" s")
        self.remove_offset = QCheckBox("Remove offset", checked=True)
        self.channels = QTreeWidget()
        self.channels.setHeaderLabels(["Channel", "Show", "Bad"])
        self.channels.setRootIsDecorated(False)
        self.plot = fixed_plot("Time relative to the newest sample (s)", "Channel", "EEG (µV)")
        self.traces = TraceStack()
        self.plot.addItem(self.traces)
        self.status = status_label()

        controls = QHBoxLayout()
        for widget in (QLabel("Gain"), self.gain, QLabel("Window"), self.window,
                       self.remove_offset):  # fmt: skip
            controls.addWidget(widget)
        controls.addStretch(1)
        splitter = QSplitter()
        splitter.addWidget(self.channels)
        splitter.addWidget(self.plot)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([150, 850])  # the traces get the room; the list can be widened
        content = QWidget()
        inner = QVBoxLayout(content)
        inner.addLayout(controls)
        inner.addWidget(splitter, 1)
        inner.addWidget(self.status)
        self._set_content(content, waiting_for)

        self.gain.setValue(gain_uv)
        self.window.setValue(window_s)
        self.window.valueChanged.connect(self._allocate)
        self.channels.itemChanged.connect(self._on_item_changed)
        self.attach(None)

    # public --------------------------------------------------------------------------------
    @property
    def bad_channels(self) -> frozenset[str]:
        """Channels marked bad."""
        return frozenset(self._bad)

    @property
    def shown_channels(self) -> tuple[str, ...]:
        """Channels drawn, top to bottom."""
        return tuple(self._names[i] for i in self._picks)

    def trace(self, name: str) -> tuple[np.ndarray, np.ndarray] | None:
        """(x, y) of channel ``name`` as drawn, y in lanes from its baseline; None if not shown."""
        shown = self.shown_channels
        return self.traces.row(shown.index(name)) if name in shown else None

    def pen(self, name: str) -> QPen:
        """The pen channel ``name`` is drawn with (dashed grey when bad)."""
        return _BAD_PEN if name in self._bad else self._pen(self._names.index(name))

    def attach(self, inlet: Inlet | None) -> None:
        """Show ``inlet``'s EEG, or "waiting for ..." when None.

        Re-attaching a stream with the same channels keeps the channel choice and bad channels.
        """
        self._inlet = inlet
        self._show(inlet is not None)
        if inlet is None:
            return
        if inlet.ch_names != self._names:
            self._build(inlet.ch_names, inlet.ch_types)
        self._allocate()

    def set_shown_channels(self, names) -> None:
        """Draw exactly ``names`` (the others stay listed, unchecked); unknown names are ignored."""
        wanted = set(names)
        self._set_checks(_SHOW, wanted)
        self._relayout()

    def set_bad_channels(self, names) -> None:
        """Mark exactly ``names`` bad (unknown names are ignored); emits if the set changes."""
        wanted = set(names) & set(self._names)
        self._set_checks(_BAD, wanted)
        self._change_bad(wanted)

    def redraw(self) -> None:
        """Draw the newest window from the inlet's buffer (never pulls)."""
        inlet = self._inlet
        if inlet is None:
            return
        buffer = inlet.buffer
        self.status.setText(
            f"{inlet.name} · {len(self._names)} ch · {inlet.sfreq:g} Hz · "
            f"{inlet.n_samples} samples · {len(inlet.gaps)} gaps · {inlet.n_missing} dropped"
        )
        if abs(self._points_wanted() - self._points) > self._points * RESIZE_TOLERANCE:
            self._allocate()  # resized: one point per pixel again
        k = len(self._picks)
        if k == 0 or len(buffer) == 0 or self._x.size == 0:
            return
        picks, scale = self._picks, 1.0 / self.gain.value()
        if self._envelope is None:
            data, _ = buffer.latest(min(self._x.size, len(buffer)))
            y = self._y[:k, : len(data)]
            np.multiply(data[:, picks].T, scale, out=y)
            offset = data[:, picks].mean(axis=0)
        else:  # min and max of each bin, interleaved: the envelope a screen pixel would show
            low, high = self._envelope.update(buffer)
            if not len(low):
                return
            y = self._y[:k, : 2 * len(low)]
            np.multiply(low[:, picks].T, scale, out=y[:, 0::2])
            np.multiply(high[:, picks].T, scale, out=y[:, 1::2])
            offset = (low[:, picks].mean(axis=0) + high[:, picks].mean(axis=0)) / 2
        if self.remove_offset.isChecked():
            y -= (offset * scale)[:, None]
        self.traces.set_rows(y)
        self.frames += 1

    # building ------------------------------------------------------------------------------
    def _build(self, names: tuple[str, ...], types: tuple[str | None, ...]) -> None:
        self._names = tuple(names)
        self._updating = True
        self.channels.clear()
        for name, kind in zip(names, types, strict=True):
            item = QTreeWidgetItem([name, "", ""])
            shown = is_eeg(name, kind)
            item.setCheckState(_SHOW, Qt.CheckState.Checked if shown else Qt.CheckState.Unchecked)
            item.setCheckState(_BAD, Qt.CheckState.Unchecked)
            self.channels.addTopLevelItem(item)
        self._updating = False
        self.channels.resizeColumnToContents(_NAME)
        self._change_bad(set())  # a different stream: its bad channels are not these
        self._relayout()

    def _allocate(self) -> None:
        """(Re)allocate the x and y arrays for the window and rate; called on change only."""
        self._points = self._points_wanted()
        inlet = self._inlet
        self._envelope = None
        if inlet is None or inlet.sfreq <= 0:
            self._x, self._y = np.empty(0), np.empty((0, 0))
        else:
            n = max(round(self.window.value() * inlet.sfreq), 1)
            factor = 1 if n <= self._points else -(-n // (self._points // 2))
            if factor == 1:
                self._x = (np.arange(n) - (n - 1)) / inlet.sfreq
            else:
                bins = n // factor
                self._envelope = EnvelopeCache(bins, len(self._names), factor)
                # each bin drawn at its newest sample's time, twice (its min and its max)
                ends = (np.arange(bins) - (bins - 1)) * factor / inlet.sfreq
                self._x = np.repeat(ends, 2)
            self._y = np.zeros((len(self._names), self._x.size))
        self.plot.setXRange(-self.window.value(), 0.0, padding=0.0)
        self._lay_out_traces()

    def _points_wanted(self) -> int:
        if self.max_points is not None:
            return int(self.max_points)
        width = int(self.plot.getViewBox().width())
        return min(max(width - width % 2, POINTS_RANGE[0]), POINTS_RANGE[1])

    # channel list --------------------------------------------------------------------------
    def _set_checks(self, column: int, names: set[str]) -> None:
        self._updating = True
        for i, name in enumerate(self._names):
            state = Qt.CheckState.Checked if name in names else Qt.CheckState.Unchecked
            self.channels.topLevelItem(i).setCheckState(column, state)
        self._updating = False

    def _checked(self, column: int) -> list[int]:
        return [
            i for i in range(len(self._names))
            if self.channels.topLevelItem(i).checkState(column) == Qt.CheckState.Checked
        ]  # fmt: skip

    def _on_item_changed(self, item: QTreeWidgetItem, column: int) -> None:
        if self._updating:
            return
        if column == _SHOW:
            self._relayout()
        elif column == _BAD:
            self._change_bad({self._names[i] for i in self._checked(_BAD)})

    def _change_bad(self, bad: set[str]) -> None:
        if bad == self._bad:
            return
        self._bad = set(bad)
        self._relayout()
        self.bad_channels_changed.emit(set(bad))

    def _relayout(self) -> None:
        """Stack the shown channels top to bottom and label them; fixed y range."""
        self._picks = np.array(self._checked(_SHOW), dtype=int)
        ticks = []
        for row, index in enumerate(self._picks):
            name = self._names[index]
            ticks.append((-row, f"{name} (bad)" if name in self._bad else name))
        self.plot.getAxis("left").setTicks([ticks, []])
        self.plot.setYRange(-max(len(ticks), 1) + 0.5, 0.5, padding=0.0)
        self._lay_out_traces()

    def _lay_out_traces(self) -> None:
        self.traces.set_layout(self._x, [self.pen(self._names[i]) for i in self._picks])

    @staticmethod
    def _pen(index: int) -> QPen:
        return pg.mkPen(pg.intColor(index, hues=8, values=1, maxValue=230), width=1)
