"""The decoder's class probabilities over time, with the cues the participant saw.

Also home of :class:`RowHistory`, which every session view uses to keep more of a stream than
the inlet's own ring holds.
"""

from __future__ import annotations

import numpy as np
import pylsl
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from bci.acquire import Inlet
from bci.streams import CUE_REST, DECODER_TIME_CHANNEL
from gui.feeds import MarkerHistory
from gui.views.eeg import StreamView, status_label, ticks_outside

CLASS_COLOURS = ("#4fc3f7", "#ff8a65", "#aed581", "#ba68c8", "#fff176", "#f06292")
"""Curve colours by class index; a cue shares its class's colour."""
OTHER_CUE_COLOUR = "#9e9e9e"
"""Colour of a cue label that is no decoder class."""


class RowHistory:
    """The newest rows of a numeric inlet, copied from its ring buffer as they arrive.

    An irregular stream's inlet keeps only ``buffer_s`` samples (1 sample/s by convention), far
    fewer than a decoder or latency stream sends in a plot's window, so each view copies what
    the inlet gained since its previous look into this longer history. The storage is mirrored
    (every row written twice, ``capacity`` apart) so the newest rows are always one contiguous
    view: drawing at 30 Hz allocates nothing.

    Parameters
    ----------
    capacity : int
        Rows kept.
    n_channels : int
        Channels per row.
    """

    def __init__(self, capacity: int, n_channels: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1 row, got {capacity}.")
        if n_channels < 1:
            raise ValueError(f"n_channels must be >= 1, got {n_channels}.")
        self.capacity = capacity
        self._data = np.zeros((2 * capacity, n_channels))
        self._times = np.zeros(2 * capacity)
        self._inlet: Inlet | None = None
        self.clear()

    def clear(self) -> None:
        """Forget every row (the memory stays allocated)."""
        self._head = 0  # index in [0, capacity) where the next row goes
        self._count = 0
        self._seen = 0  # the followed inlet's ``buffer.n_written`` at the previous update
        self.n_missed = 0
        """Rows the inlet overwrote before this history could copy them."""

    def __len__(self) -> int:
        return self._count

    @property
    def n_channels(self) -> int:
        """Channels per row."""
        return self._data.shape[1]

    def follow(self, inlet: Inlet | None) -> None:
        """Copy from ``inlet`` from now on; a different inlet starts a new history."""
        if inlet is not self._inlet:
            self._inlet = inlet
            self.clear()

    def update(self) -> int:
        """Copy the rows the followed inlet received since the previous call.

        Returns
        -------
        n_new : int
            Rows copied.
        """
        inlet = self._inlet
        if inlet is None:
            return 0
        written = inlet.buffer.n_written
        if written < self._seen:  # the inlet reconnected and restarted its counts
            self.clear()
        fresh = written - self._seen
        take = min(fresh, len(inlet.buffer), self.capacity)
        self.n_missed += fresh - take
        self._seen = written
        if take:
            data, times = inlet.buffer.latest(take)
            self._write(data, times)
        return take

    def _write(self, data: np.ndarray, times: np.ndarray) -> None:
        n, cap = len(times), self.capacity
        idx = (self._head + np.arange(n)) % cap
        self._data[idx] = data
        self._data[idx + cap] = data
        self._times[idx] = times
        self._times[idx + cap] = times
        self._head = (self._head + n) % cap
        self._count = min(self._count + n, cap)

    def latest(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The newest ``n`` rows, oldest first, as views (valid until the next update).

        Returns
        -------
        data : array, shape (n, n_channels)
        times : array, shape (n,), s (local clock)
        """
        if not 0 <= n <= self._count:
            raise ValueError(f"n must be between 0 and the {self._count} rows held, got {n}.")
        stop = self._head + self.capacity
        return self._data[stop - n : stop], self._times[stop - n : stop]

    def since(self, t_start: float, keep_before: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """The rows at or after ``t_start`` (s), oldest first, as views.

        Parameters
        ----------
        keep_before : bool
            Also return the last row before ``t_start``: the value a step curve holds at the
            window's left edge.
        """
        data, times = self.latest(self._count)
        first = int(np.searchsorted(times, t_start, side="left"))
        if keep_before and first > 0:
            first -= 1
        return data[first:], times[first:]


def cue_spans(markers, t_start: float, now: float) -> list[tuple[str, float, float]]:
    """The cued periods overlapping ``[t_start, now]``: each cue lasts until the next marker.

    Parameters
    ----------
    markers : sequence of (float, str)
        Cue markers ``(timestamp, label)``, oldest first.

    Returns
    -------
    spans : list of (label, start, stop)
        Times in s (local clock); a cue still running stops at ``now``.
    """
    spans = []
    stop = now
    for time, label in reversed(markers):  # newest first: stop once the window is behind
        if stop < t_start:
            break
        if label != CUE_REST:
            spans.append((label, time, stop))
        stop = time
    spans.reverse()
    return spans


class DecoderView(StreamView):
    """Each class's probability over the last ``window_s`` seconds, over the cues shown.

    Parameters
    ----------
    classes : tuple of str
        The protocol's decoder classes, in the stream's column order.
    abstain_below : float, optional
        The controller's abstain threshold (probability), drawn as a line.
    window_s : float
        Seconds of history shown.
    capacity : int
        Decisions kept (enough for ``window_s`` at the fastest hop).
    """

    def __init__(self, classes: tuple[str, ...], abstain_below: float | None = None,
                 window_s: float = 30.0, capacity: int = 4096, parent=None) -> None:  # fmt: skip
        super().__init__(parent)
        classes = tuple(classes)
        if not classes or not all(isinstance(c, str) and c for c in classes):
            raise ValueError(f"classes must be non-empty class names, got {classes!r}.")
        if abstain_below is not None and not 0.0 <= abstain_below <= 1.0:
            raise ValueError(f"abstain_below must be a probability in [0, 1], got {abstain_below}.")
        if not window_s > 0:
            raise ValueError(f"window_s must be > 0 s, got {window_s}.")
        self.classes, self.abstain_below, self.window_s = classes, abstain_below, window_s
        self.decoder: Inlet | None = None
        self.cues: MarkerHistory | None = None
        self.history = RowHistory(capacity, len(classes) + 1)
        self.spans: list[tuple[str, float, float]] = []
        """Cue periods drawn at the last redraw: (label, start, stop), s (local clock)."""
        self.n_frames = 0
        """Redraws that drew data."""
        self._columns = np.arange(len(classes))
        self._x = np.zeros(capacity)
        self._confidence = np.zeros(capacity)

        self.status = status_label()
        self.plot = pg.PlotWidget()
        ticks_outside(self.plot)
        content = QtWidgets.QWidget()
        inner = QtWidgets.QVBoxLayout(content)
        inner.setContentsMargins(0, 0, 0, 0)
        inner.addWidget(self.status)
        inner.addWidget(self.plot, stretch=1)
        self._set_content(content, "the decoder stream")
        self._build_plot()
        self._show(False)

    def _build_plot(self) -> None:
        item = self.plot.getPlotItem()
        # fixed ranges: autoscaling every frame costs more than the drawing itself
        item.disableAutoRange()
        item.setXRange(-self.window_s, 0.0, padding=0)
        item.setYRange(0.0, 1.0, padding=0.02)
        item.setMouseEnabled(x=False, y=False)  # a drag would fight the fixed ranges
        item.setMenuEnabled(False)
        item.hideButtons()
        item.setLabel("bottom", "time", units="s")
        item.setLabel("left", "probability")
        item.showGrid(y=True, alpha=0.2)
        # a dark backing keeps the legend readable over the curves it may cover
        self.legend = item.addLegend(offset=(-10, 10), brush=(0, 0, 0, 170))
        self.cue_curves: dict[str, pg.PlotCurveItem] = {}
        for label in self.classes:
            self._cue_curve(label)
        self.curves: dict[str, pg.PlotCurveItem] = {}
        for i, name in enumerate(self.classes):
            colour = CLASS_COLOURS[i % len(CLASS_COLOURS)]
            curve = pg.PlotCurveItem(pen=pg.mkPen(colour, width=2), name=f"p({name})")
            curve.setSegmentedLineMode("off")  # one polyline: segments cost 4x at 3000 points
            item.addItem(curve)
            self.curves[name] = curve
        dash = QtCore.Qt.PenStyle.DashLine
        self.confidence_curve = pg.PlotCurveItem(
            pen=pg.mkPen("w", width=1, style=QtCore.Qt.PenStyle.DotLine), name="confidence"
        )
        item.addItem(self.confidence_curve)
        self.abstain_line: pg.InfiniteLine | None = None
        if self.abstain_below is not None:
            self.abstain_line = pg.InfiniteLine(
                self.abstain_below, angle=0, movable=False,
                pen=pg.mkPen("#ffd54f", width=1, style=dash),
                label=f"abstain < {self.abstain_below:.2f}",
                labelOpts={"position": 0.05, "color": "#ffd54f", "anchors": [(0, 1), (0, 1)]},
            )  # fmt: skip
            item.addItem(self.abstain_line)

    def _cue_curve(self, label: str) -> pg.PlotCurveItem:
        """The shaded overlay of one cue label (made on first sight of a label)."""
        curve = self.cue_curves.get(label)
        if curve is None:
            index = self.classes.index(label) if label in self.classes else -1
            colour = CLASS_COLOURS[index % len(CLASS_COLOURS)] if index >= 0 else OTHER_CUE_COLOUR
            fill, edge = pg.mkColor(colour), pg.mkColor(colour)
            fill.setAlpha(45)
            edge.setAlpha(110)
            # one filled step curve per label (0 outside its cues, 1 inside): a fixed set of
            # items however many trials are in view
            curve = pg.PlotCurveItem(pen=pg.mkPen(edge), brush=pg.mkBrush(fill), fillLevel=0.0,
                                     name=f"cue {label}")  # fmt: skip
            curve.setZValue(-10)
            self.plot.getPlotItem().addItem(curve)
            self.cue_curves[label] = curve
        return curve

    # the main window's calls ---------------------------------------------------------------
    def attach(self, decoder: Inlet | None, cues: MarkerHistory | None = None) -> None:
        """Show ``decoder`` and ``cues`` (None: wait for that stream).

        Raises
        ------
        ValueError
            If the decoder stream lacks a probability channel for one of the classes.
        """
        if decoder is not self.decoder and decoder is not None:
            names = decoder.ch_names
            missing = [c for c in self.classes if c not in names]
            if missing or DECODER_TIME_CHANNEL not in names:
                raise ValueError(
                    f"decoder stream {decoder.name!r} has channels {list(names)}; the protocol's "
                    f"classes {list(self.classes)} and {DECODER_TIME_CHANNEL!r} must all be among "
                    "them. Is the GUI watching the session it was started for?"
                )
            self._columns = np.array([names.index(c) for c in self.classes])
            if decoder.n_channels != self.history.n_channels:
                self.history = RowHistory(self.history.capacity, decoder.n_channels)
        self.decoder, self.cues = decoder, cues
        self.history.follow(decoder)
        self._show(decoder is not None)

    def _clear(self) -> None:
        self.status.setText("")
        for curve in (*self.curves.values(), self.confidence_curve, *self.cue_curves.values()):
            curve.setData([], [])
        self.spans = []

    def redraw(self) -> None:
        """Draw from the buffers (never pulls)."""
        if self.decoder is None:
            return
        now = pylsl.local_clock()
        t_start = now - self.window_s
        self.history.update()
        data, times = self.history.since(t_start)
        n = len(times)
        x = self._x[:n]
        np.subtract(times, now, out=x)
        confidence = self._confidence[:n]
        confidence.fill(-np.inf)
        for column, curve in zip(self._columns, self.curves.values(), strict=True):
            probability = data[:, column]  # a view: no copy per frame
            curve.setData(x, probability)
            np.maximum(confidence, probability, out=confidence)  # NaN stays NaN, as it should
        self.confidence_curve.setData(x, confidence)
        self._draw_cues(t_start, now)
        self._show_status(data, times, now)
        self.n_frames += 1

    def _draw_cues(self, t_start: float, now: float) -> None:
        markers = self.cues.markers if self.cues is not None else ()
        self.spans = cue_spans(markers, t_start, now)
        by_label: dict[str, list[tuple[float, float]]] = {label: [] for label in self.cue_curves}
        for label, start, stop in self.spans:
            self._cue_curve(label)
            by_label.setdefault(label, []).append((max(start, t_start) - now, stop - now))
        for label, spans in by_label.items():
            edges = np.repeat(np.asarray(spans, dtype=float).reshape(-1), 2)
            levels = np.tile([0.0, 1.0, 1.0, 0.0], len(spans))
            self.cue_curves[label].setData(edges, levels)

    def _show_status(self, data: np.ndarray, times: np.ndarray, now: float) -> None:
        if not len(times):
            text = f"{self.decoder.name}: no decision in the last {self.window_s:g} s"
        else:
            row = data[-1, self._columns]
            best = int(np.nanargmax(row)) if np.isfinite(row).any() else None
            guess = f"{self.classes[best]} {row[best]:.2f}" if best is not None else "not finite"
            text = (f"{self.decoder.name}: {guess} · {now - times[-1]:.1f} s ago · "
                    f"{self.decoder.n_samples} decisions")  # fmt: skip
        if self.history.n_missed:
            text += f" · {self.history.n_missed} not drawn"
        if text != self.status.text():
            self.status.setText(text)
