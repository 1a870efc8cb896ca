"""End-to-end latency of the newest decisions: a histogram and its p50, p99 and max."""

from __future__ import annotations

import time

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from bci.acquire import Inlet
from bci.streams import LATENCY_CHANNELS
from gui.views.decoder import RowHistory
from gui.views.eeg import StreamView, status_label, ticks_outside

_RANGE_STEPS_MS = (10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0)
"""Upper ends the latency axis steps through; it only grows, so the bins do not jump about."""


class LatencyView(StreamView):
    """Histogram of the end-to-end latency (stimulator write − newest sample) of the newest
    ``n_decisions`` decisions, with live p50, p99 and max.

    Parameters
    ----------
    n_decisions : int
        Decisions summarized.
    n_bins : int
        Histogram bins over the latency axis.
    recompute_s : float
        Least time between two histograms, s: percentiles of thousands of values are too dear
        for every frame, and nobody reads a number that changes 30 times a second.
    """

    def __init__(self, n_decisions: int = 2000, n_bins: int = 50, recompute_s: float = 0.25,
                 parent=None) -> None:  # fmt: skip
        super().__init__(parent)
        if n_decisions < 1:
            raise ValueError(f"n_decisions must be >= 1, got {n_decisions}.")
        if n_bins < 1:
            raise ValueError(f"n_bins must be >= 1, got {n_bins}.")
        if recompute_s < 0:
            raise ValueError(f"recompute_s must be >= 0 s, got {recompute_s}.")
        self.n_decisions, self.n_bins, self.recompute_s = n_decisions, n_bins, recompute_s
        self.latency: Inlet | None = None
        self.history = RowHistory(n_decisions, len(LATENCY_CHANNELS))
        self.stats = self._no_stats()
        """p50, p99, max (ms) and n of the values in the last histogram."""
        self.n_histograms = 0
        """Histograms computed (at most one per ``recompute_s``)."""
        self.range_ms = _RANGE_STEPS_MS[0]
        self._column = len(LATENCY_CHANNELS) - 1
        self._computed_at = -np.inf
        self._computed_written = -1

        self.labels = {key: QtWidgets.QLabel() for key in ("p50", "p99", "max")}
        self.status = status_label()
        header = QtWidgets.QHBoxLayout()
        for label in self.labels.values():
            font = label.font()
            font.setPointSize(14)
            font.setBold(True)
            label.setFont(font)
            header.addWidget(label)
        header.addWidget(self.status, stretch=1)
        self.plot = pg.PlotWidget()
        ticks_outside(self.plot)
        content = QtWidgets.QWidget()
        inner = QtWidgets.QVBoxLayout(content)
        inner.setContentsMargins(0, 0, 0, 0)
        inner.addLayout(header)
        inner.addWidget(self.plot, stretch=1)
        self._set_content(content, "the latency stream")
        self._build_plot()
        self._show(False)

    @staticmethod
    def _no_stats() -> dict:
        nan = float("nan")
        return {"p50": nan, "p99": nan, "max": nan, "n": 0}

    def _build_plot(self) -> None:
        item = self.plot.getPlotItem()
        # fixed ranges: set on a new histogram (a few per second), never autoscaled per frame
        item.disableAutoRange()
        item.setMouseEnabled(x=False, y=False)  # a drag would fight the fixed ranges
        item.setMenuEnabled(False)
        item.hideButtons()
        item.setLabel("bottom", "end-to-end latency", units="ms")
        item.getAxis("bottom").enableAutoSIPrefix(False)  # ms is the unit, not a prefixed s
        item.setLabel("left", "decisions")
        item.setXRange(0.0, self.range_ms, padding=0)
        item.setYRange(0.0, 1.0, padding=0)
        # stepMode "center" is given with the data: it needs len(x) == len(y) + 1 at once
        self.histogram = pg.PlotCurveItem(
            fillLevel=0.0,
            pen=pg.mkPen("#4fc3f7"),
            brush=pg.mkBrush(79, 195, 247, 120),
        )
        item.addItem(self.histogram)
        dash = QtCore.Qt.PenStyle.DashLine
        self.percentile_lines = {}
        for key, colour in (("p50", "#aed581"), ("p99", "#ffb74d")):
            line = pg.InfiniteLine(0.0, angle=90, movable=False, label=key,
                                   pen=pg.mkPen(colour, width=1, style=dash),
                                   labelOpts={"position": 0.9, "color": colour})  # fmt: skip
            self.percentile_lines[key] = line
        for line in self.percentile_lines.values():
            line.setVisible(False)
            item.addItem(line)

    # the main window's calls ---------------------------------------------------------------
    def attach(self, latency: Inlet | None) -> None:
        """Show ``latency`` (None: wait for the latency stream).

        Raises
        ------
        ValueError
            If the stream has no ``end_to_end`` channel.
        """
        if latency is not None and latency is not self.latency:
            names = latency.ch_names
            if LATENCY_CHANNELS[-1] not in names:
                raise ValueError(
                    f"latency stream {latency.name!r} has channels {list(names)}; expected "
                    f"{list(LATENCY_CHANNELS)} (bci.streams.LATENCY_CHANNELS)."
                )
            self._column = names.index(LATENCY_CHANNELS[-1])
            if latency.n_channels != self.history.n_channels:
                self.history = RowHistory(self.n_decisions, latency.n_channels)
        if latency is not self.latency:
            self._computed_at, self._computed_written = -np.inf, -1
        self.latency = latency
        self.history.follow(latency)
        self._show(latency is not None)

    def _clear(self) -> None:
        self.stats = self._no_stats()
        self.status.setText("")
        for key, label in self.labels.items():
            label.setText(f"{key} –")
        self.histogram.setData([0.0, self.range_ms], [0.0], stepMode="center")
        for line in self.percentile_lines.values():
            line.setVisible(False)

    def redraw(self) -> None:
        """Copy the new decisions; recompute the histogram if ``recompute_s`` has passed."""
        if self.latency is None:
            return
        self.history.update()
        now = time.monotonic()
        written = self.latency.buffer.n_written
        if now - self._computed_at < self.recompute_s or written == self._computed_written:
            return
        self._computed_at, self._computed_written = now, written
        data, _ = self.history.latest(len(self.history))
        values = data[:, self._column]
        values = values[np.isfinite(values)]
        self._draw(values)
        self.n_histograms += 1

    def _draw(self, values: np.ndarray) -> None:
        if not values.size:
            self.stats = self._no_stats()
            self.status.setText(f"{self.latency.name}: no decision yet")
            return
        p50, p99 = np.percentile(values, [50, 99])
        self.stats = {"p50": float(p50), "p99": float(p99), "max": float(values.max()),
                      "n": int(values.size)}  # fmt: skip
        if self.stats["max"] > self.range_ms:
            steps = [s for s in _RANGE_STEPS_MS if s >= self.stats["max"]]
            self.range_ms = steps[0] if steps else float(np.ceil(self.stats["max"]))
        # below zero only if clocks disagree: show it rather than drop it
        low = min(0.0, float(np.floor(values.min())))
        edges = np.linspace(low, self.range_ms, self.n_bins + 1)
        counts, _ = np.histogram(values, bins=edges)
        self.histogram.setData(edges, counts.astype(float), stepMode="center")
        item = self.plot.getPlotItem()
        item.setXRange(low, self.range_ms, padding=0)
        item.setYRange(0.0, max(1.0, 1.1 * counts.max()), padding=0)
        for key, line in self.percentile_lines.items():
            line.setValue(self.stats[key])
            line.setVisible(True)
        for key, label in self.labels.items():
            label.setText(f"{key} {self.stats[key]:.2f} ms")
        self.status.setText(
            f"newest {self.stats['n']} of {self.latency.n_samples} decisions"
            + (f" · {self.history.n_missed} not counted" if self.history.n_missed else "")
        )
