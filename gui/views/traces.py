"""Drawing many traces cheaply: one graphics item for every channel, and a min/max envelope
updated from the new samples only.

Why not one ``PlotCurveItem`` per channel (STYLE 11): at 64 channels pyqtgraph's per-item work
(bounds from the data, signals, path building, pixel vectors) cost more than drawing the lines
themselves. Measured offscreen, 64 traces of 1200 points: 15 ms a frame as 64 items with fixed
bounds, 8 ms as one item that draws 64 polylines whose points are written in place.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF

from bci.acquire.ring import RingBuffer

CLIP_LANES = 3.0
"""A trace is clipped this many lanes above and below its baseline, so one channel's artefact
cannot cover the others (and the item's bounds are known without looking at the data)."""


class TraceStack(pg.GraphicsObject):
    """Traces stacked one lane apart: row ``j`` has its baseline at y = -j.

    :meth:`set_layout` allocates a polygon per row once; :meth:`set_rows` writes each frame's
    values into them in place and asks for one repaint.
    """

    def __init__(self) -> None:
        super().__init__()
        self._polygons: list = []
        self._points: list[np.ndarray] = []  # (n, 2) views of the polygons' memory
        self._pens: list = []
        self._rect = QRectF()
        self._x = np.empty(0)
        self._n = 0  # points of the newest frame

    def set_layout(self, x: np.ndarray, pens: list) -> None:
        """One row per pen, every row drawn at ``x``; forgets what was drawn."""
        self.prepareGeometryChange()
        x = self._x = np.array(x, dtype=float)
        self._pens = list(pens)
        self._polygons = [pg.functions.create_qpolygonf(x.size) for _ in self._pens]
        self._points = [pg.functions.ndarray_from_qpolygonf(p) for p in self._polygons]
        for row, points in enumerate(self._points if x.size else ()):  # empty: read-only
            points[:, 0], points[:, 1] = x, -row
        self._n = 0
        rows = len(self._pens)
        if x.size and rows:
            top, bottom = CLIP_LANES, -(rows - 1) - CLIP_LANES
            self._rect = QRectF(float(x[0]), bottom, float(x[-1] - x[0]), top - bottom)
        else:
            self._rect = QRectF()
        self.update()

    def set_rows(self, y: np.ndarray) -> None:
        """Draw ``y`` (rows × n, lane units around each baseline) at the newest ``n`` x values;
        the older points repeat the oldest value, so a short buffer draws no line to the left."""
        rows, n = y.shape
        if rows != len(self._points):
            raise ValueError(f"y has {rows} rows, the layout {len(self._points)}")
        size = self._points[0].shape[0] if self._points else 0
        if n > size:
            raise ValueError(f"y has {n} points, the layout {size}")
        start, moved = size - n, n != self._n
        for row, points in enumerate(self._points):
            column = points[:, 1]
            np.clip(y[row], -CLIP_LANES, CLIP_LANES, out=column[start:])
            column[start:] -= row
            if start:
                column[:start] = column[start]
            if moved:  # the padding follows the oldest point drawn
                points[:, 0] = self._x
                points[:start, 0] = self._x[start]
        self._n = n
        self.update()

    def row(self, row: int) -> tuple[np.ndarray, np.ndarray]:
        """(x, y) of ``row`` as drawn in the newest frame, y relative to its baseline."""
        points = self._points[row][self._points[row].shape[0] - self._n :]
        return points[:, 0].copy(), points[:, 1] + row

    def boundingRect(self) -> QRectF:  # Qt names it
        return self._rect

    def paint(self, painter, *args) -> None:
        if not self._n:
            return
        for polygon, pen in zip(self._polygons, self._pens, strict=True):
            painter.setPen(pen)
            painter.drawPolyline(polygon)


class EnvelopeCache:
    """The min and max of every ``factor`` samples of a ring buffer, kept for the newest
    ``n_bins`` bins. Bins are aligned to the buffer's sample count, so a frame reduces only the
    samples that arrived since the last one.
    """

    def __init__(self, n_bins: int, n_channels: int, factor: int) -> None:
        if n_bins < 1 or factor < 1:
            raise ValueError(f"n_bins and factor must be >= 1, got {n_bins} and {factor}")
        self.n_bins, self.factor = n_bins, factor
        self._min = np.zeros((n_bins, n_channels))
        self._max = np.zeros((n_bins, n_channels))
        self._done = 0  # complete bins reduced so far (by absolute index)
        self._written = 0  # the buffer's n_written when last updated

    def update(self, buffer: RingBuffer) -> tuple[np.ndarray, np.ndarray]:
        """Reduce the new complete bins of ``buffer``; return (min, max), each (bins, channels),
        oldest first: the newest complete bins the buffer still holds, at most ``n_bins``."""
        total, factor = buffer.n_written, self.factor
        if total < self._written:  # the buffer was cleared
            self._done = 0
        self._written = total
        complete = total // factor
        held_from = max(-(-(total - len(buffer)) // factor), 0)  # oldest bin wholly held
        first = max(self._done, complete - self.n_bins, held_from)
        if complete > first:
            data, _ = buffer.latest(total - first * factor)
            bins = data[: (complete - first) * factor].reshape(complete - first, factor, -1)
            where = np.arange(first, complete) % self.n_bins
            self._min[where] = bins.min(axis=1)
            self._max[where] = bins.max(axis=1)
        self._done = complete
        oldest = max(complete - self.n_bins, held_from)
        order = np.arange(oldest, complete) % self.n_bins
        return self._min[order], self._max[order]
