"""The EEG view's drawing parts: the trace stack and the incremental min/max envelope."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before Qt starts: no display in CI

import numpy as np
import pyqtgraph as pg
import pytest

from bci.acquire.ring import RingBuffer
from gui.views.traces import CLIP_LANES, EnvelopeCache, TraceStack


def test_trace_stack_stacks_clips_and_pads_a_short_frame(qtbot):
    plot = pg.PlotWidget()
    qtbot.addWidget(plot)
    stack = TraceStack()
    plot.addItem(stack)
    x = np.linspace(-1.0, 0.0, 6)
    stack.set_layout(x, [pg.mkPen("r"), pg.mkPen("b")])
    rect = stack.boundingRect()
    assert (rect.left(), rect.right()) == (-1.0, 0.0)
    assert (rect.top(), rect.bottom()) == (-1 - CLIP_LANES, CLIP_LANES)
    y = np.array([[0.5, -0.5, 9.0, 0.0], [1.0, 2.0, 3.0, -9.0]])
    stack.set_rows(y)
    got_x, got_y = stack.row(1)
    np.testing.assert_array_equal(got_x, x[2:])  # the newest x values
    np.testing.assert_array_equal(got_y, [1.0, 2.0, 3.0, -CLIP_LANES])
    np.testing.assert_array_equal(stack.row(0)[1], [0.5, -0.5, CLIP_LANES, 0.0])
    drawn = pg.functions.ndarray_from_qpolygonf(stack._polygons[1])
    np.testing.assert_array_equal(drawn[:, 1], [0.0, 0.0, 0.0, 1.0, 2.0, -4.0])  # lane -1
    np.testing.assert_array_equal(drawn[:3, 0], [x[2]] * 3)  # padding draws nothing to the left
    plot.grab()  # paints
    stack.set_rows(np.zeros((2, 6)))  # a longer frame: the padded x are x again
    np.testing.assert_array_equal(stack.row(1)[0], x)
    with pytest.raises(ValueError, match="3 rows"):
        stack.set_rows(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="7 points"):
        stack.set_rows(np.zeros((2, 7)))


def test_envelope_updated_frame_by_frame_equals_the_whole_window_reduced():
    rng = np.random.default_rng(1)
    buffer = RingBuffer(1000, 3)
    cache = EnvelopeCache(n_bins=40, n_channels=3, factor=7)
    data = rng.standard_normal((5000, 3))
    start = 0
    for chunk in rng.integers(1, 120, size=200):  # frames of any size, past the ring's wrap
        stop = min(start + chunk, len(data))
        buffer.write(data[start:stop], np.arange(start, stop, dtype=float))
        start = stop
        low, high = cache.update(buffer)
        complete = stop // 7
        first = max(complete - 40, -(-(stop - 1000) // 7), 0)
        bins = data[first * 7 : complete * 7].reshape(-1, 7, 3)
        np.testing.assert_array_equal(low, bins.min(axis=1))
        np.testing.assert_array_equal(high, bins.max(axis=1))
        if stop == len(data):
            break
    buffer.clear()  # a new stream: the old bins go
    buffer.write(data[:14], np.arange(14, dtype=float))
    low, _ = cache.update(buffer)
    np.testing.assert_array_equal(low, data[:14].reshape(2, 7, 3).min(axis=1))
