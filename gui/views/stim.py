"""What the stimulator was told: amplitude, frequency and pulses against the session limit."""

from __future__ import annotations

import math

import numpy as np
import pylsl
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from bci.acquire import Inlet
from bci.safety.ceilings import HARD_CEILINGS
from bci.streams import STIM_CHANNELS, STIM_ORIGINS
from gui.views.decoder import RowHistory
from gui.views.eeg import StreamView, status_label, ticks_outside

_AMPLITUDE = STIM_CHANNELS.index("amplitude")
_FREQUENCY = STIM_CHANNELS.index("frequency_hz")
_PULSES = STIM_CHANNELS.index("pulses")
_ORIGIN = STIM_CHANNELS.index("origin")
_FREQUENCY_STEPS_HZ = (10.0, 20.0, 50.0, 100.0, 200.0, 300.0)
"""Upper ends the frequency axis steps through; it only grows, so it does not jump each frame."""


class StimView(StreamView):
    """The stimulation commands of the last ``window_s`` seconds and the limit they obey.

    Parameters
    ----------
    modality : str
        ``tdcs``, ``tacs``, ``tms`` or ``pulse_train`` (``protocol.stimulator.modality``).
    unit : str
        Amplitude unit (``HARD_CEILINGS[modality].unit``: mA, or %MSO for TMS).
    max_amplitude : float
        The session limit (``protocol.stimulator.limits.max_amplitude``), in ``unit``.
    window_s : float
        Seconds of history shown.
    capacity : int
        Commands kept (enough for ``window_s`` at the fastest decision rate).
    """

    def __init__(self, modality: str, unit: str, max_amplitude: float, window_s: float = 30.0,
                 capacity: int = 4096, parent=None) -> None:  # fmt: skip
        super().__init__(parent)
        if modality not in HARD_CEILINGS:
            raise ValueError(f"modality must be one of {sorted(HARD_CEILINGS)}, got {modality!r}.")
        if not window_s > 0:
            raise ValueError(f"window_s must be > 0 s, got {window_s}.")
        self.modality, self.unit, self.window_s = modality, unit, window_s
        self.signed = HARD_CEILINGS[modality].signed
        self.has_frequency = HARD_CEILINGS[modality].frequency_hz is not None
        self.stim: Inlet | None = None
        self.history = RowHistory(capacity, len(STIM_CHANNELS))
        self.n_frames = 0
        """Redraws that drew data."""
        self._step_x = np.zeros(2 * capacity)
        self._step_amplitude = np.zeros(2 * capacity)
        self._step_frequency = np.zeros(2 * capacity)
        self._estop_shown = False
        self._frequency_top = _FREQUENCY_STEPS_HZ[0]

        self.amplitude_label = QtWidgets.QLabel()
        font = self.amplitude_label.font()
        font.setPointSize(28)
        font.setBold(True)
        self.amplitude_label.setFont(font)
        self.status = status_label()
        self.plots = pg.GraphicsLayoutWidget()
        header = QtWidgets.QHBoxLayout()
        header.addWidget(self.amplitude_label)
        header.addWidget(self.status, stretch=1)
        content = QtWidgets.QWidget()
        inner = QtWidgets.QVBoxLayout(content)
        inner.setContentsMargins(0, 0, 0, 0)
        inner.addLayout(header)
        inner.addWidget(self.plots, stretch=1)
        self._set_content(content, "the stimulation stream")
        self._build_plots()
        self.set_limit(max_amplitude)
        self._show(False)

    def _build_plots(self) -> None:
        self.amplitude_plot = self.plots.addPlot(row=0, col=0)
        self.frequency_plot = self.plots.addPlot(row=1, col=0)
        ticks_outside(self.amplitude_plot, self.frequency_plot)
        self.frequency_plot.setXLink(self.amplitude_plot)
        for plot in (self.amplitude_plot, self.frequency_plot):
            # fixed ranges: autoscaling every frame costs more than the drawing itself
            plot.disableAutoRange()
            plot.setXRange(-self.window_s, 0.0, padding=0)
            plot.setMouseEnabled(x=False, y=False)  # a drag would fight the fixed ranges
            plot.setMenuEnabled(False)
            plot.hideButtons()
            plot.showGrid(y=True, alpha=0.2)
        self.amplitude_plot.setLabel("left", "amplitude", units=self.unit)
        # "mA" and "%MSO" are units already: no SI prefix on top of them
        self.amplitude_plot.getAxis("left").enableAutoSIPrefix(False)
        self.frequency_plot.setLabel("left", "frequency", units="Hz")
        self.frequency_plot.setLabel("bottom", "time", units="s")
        self.frequency_plot.setYRange(0.0, self._frequency_top, padding=0.02)
        # a modality without a frequency (tDCS, single TMS pulses) would only show a flat zero
        self.frequency_plot.setVisible(self.has_frequency)
        if not self.has_frequency:
            self.amplitude_plot.setLabel("bottom", "time", units="s")
        self.amplitude_curve = pg.PlotCurveItem(pen=pg.mkPen("#4fc3f7", width=2))
        self.frequency_curve = pg.PlotCurveItem(pen=pg.mkPen("#aed581", width=2))
        for curve in (self.amplitude_curve, self.frequency_curve):
            curve.setSegmentedLineMode("off")  # one polyline: segments cost 4x
        self.pulse_markers = pg.ScatterPlotItem(
            symbol="t1", size=12, pen=pg.mkPen(None), brush=pg.mkBrush("#fff176")
        )
        self.amplitude_plot.addItem(self.amplitude_curve)
        self.amplitude_plot.addItem(self.pulse_markers)
        self.frequency_plot.addItem(self.frequency_curve)
        red = pg.mkPen("#ef5350", width=2, style=QtCore.Qt.PenStyle.DashLine)
        self.limit_line = pg.InfiniteLine(
            0.0, angle=0, movable=False, pen=red, label="limit",
            labelOpts={"position": 0.05, "color": "#ef5350", "anchors": [(0, 0), (0, 0)]},
        )  # fmt: skip
        self.amplitude_plot.addItem(self.limit_line)
        # tDCS is signed (polarity): the limit binds on both sides of zero
        self.negative_limit_line: pg.InfiniteLine | None = None
        if self.signed:
            self.negative_limit_line = pg.InfiniteLine(0.0, angle=0, movable=False, pen=red)
            self.amplitude_plot.addItem(self.negative_limit_line)

    # the main window's calls ---------------------------------------------------------------
    def set_limit(self, max_amplitude: float) -> None:
        """Draw the session limit at ``max_amplitude`` (in the view's unit)."""
        if not (math.isfinite(max_amplitude) and max_amplitude >= 0):
            raise ValueError(f"max_amplitude must be finite and >= 0, got {max_amplitude}.")
        self.max_amplitude = float(max_amplitude)
        self.limit_line.setValue(self.max_amplitude)
        sign = "±" if self.signed else ""
        self.limit_line.label.setFormat(f"limit {sign}{self.max_amplitude:g} {self.unit}")
        if self.negative_limit_line is not None:
            self.negative_limit_line.setValue(-self.max_amplitude)
        # a zero limit still needs a visible axis: use the modality's hard ceiling
        top = 1.15 * (self.max_amplitude or HARD_CEILINGS[self.modality].max_amplitude)
        bottom = -top if self.signed else -0.05 * top
        self.amplitude_plot.setYRange(bottom, top, padding=0)

    def attach(self, stim: Inlet | None) -> None:
        """Show ``stim`` (None: wait for the stimulation stream).

        Raises
        ------
        ValueError
            If the stream's channels are not ``STIM_CHANNELS`` or its ``<modality>`` is not the
            view's.
        """
        if stim is not None and stim is not self.stim:
            if tuple(stim.ch_names) != STIM_CHANNELS:
                raise ValueError(
                    f"stimulation stream {stim.name!r} has channels {list(stim.ch_names)}; "
                    f"expected {list(STIM_CHANNELS)} (bci.streams.STIM_CHANNELS)."
                )
            modality = stim.info.desc().child_value("modality")
            if modality and modality != self.modality:
                raise ValueError(
                    f"stimulation stream {stim.name!r} is {modality!r}, this view shows "
                    f"{self.modality!r}; build the view from the session's protocol."
                )
        self.stim = stim
        self.history.follow(stim)
        self._show(stim is not None)

    def _clear(self) -> None:
        self.status.setText("")
        self.amplitude_label.setText("–")
        for curve in (self.amplitude_curve, self.frequency_curve, self.pulse_markers):
            curve.setData([], [])

    def redraw(self) -> None:
        """Draw from the buffers (never pulls)."""
        if self.stim is None:
            return
        now = pylsl.local_clock()
        self.history.update()
        data, times = self.history.since(now - self.window_s, keep_before=True)
        x, amplitude = self._steps(data[:, _AMPLITUDE], times, now, self._step_amplitude)
        self.amplitude_curve.setData(x, amplitude)
        if self.has_frequency:
            _, frequency = self._steps(data[:, _FREQUENCY], times, now, self._step_frequency)
            self.frequency_curve.setData(x, frequency)
            self._grow_frequency_axis(frequency)
        fired = data[:, _PULSES] > 0
        self.pulse_markers.setData(times[fired] - now, data[fired, _AMPLITUDE])
        self._show_current(data, times, now)
        self.n_frames += 1

    def _steps(self, values: np.ndarray, times: np.ndarray, now: float,
               out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
        """A command holds until the next one: (t0, v0), (t1, v0), (t1, v1) ... (now, vn).

        Returns views of preallocated buffers: x in s relative to ``now``, and the values
        (written into ``out``).
        """
        n = len(times)
        x, y = self._step_x[: 2 * n], out[: 2 * n]
        x[0::2] = times
        x[1:-1:2] = times[1:]
        if n:
            x[-1] = now
        x -= now
        y[0::2] = values
        y[1::2] = values
        return x, y

    def _grow_frequency_axis(self, frequency: np.ndarray) -> None:
        highest = float(np.nanmax(frequency)) if len(frequency) else 0.0
        if highest > self._frequency_top:
            steps = [s for s in _FREQUENCY_STEPS_HZ if s >= highest]
            self._frequency_top = steps[0] if steps else 1.1 * highest
            self.frequency_plot.setYRange(0.0, self._frequency_top, padding=0.02)

    def _show_current(self, data: np.ndarray, times: np.ndarray, now: float) -> None:
        if not len(times):
            self.amplitude_label.setText("–")
            self.status.setText(f"{self.stim.name}: no command yet")
            return
        amplitude = data[-1, _AMPLITUDE]
        decimals = 0 if self.unit == "%MSO" else 2
        sign = "+" if self.signed else ""
        text = f"{amplitude:{sign}.{decimals}f} {self.unit}"
        origin = int(data[-1, _ORIGIN])
        origin_name = STIM_ORIGINS[origin] if 0 <= origin < len(STIM_ORIGINS) else str(origin)
        if text != self.amplitude_label.text():
            self.amplitude_label.setText(text)
        estop = origin_name == "estop"
        if estop != self._estop_shown:  # an emergency stop must stand out from a plain zero
            self._estop_shown = estop
            self.amplitude_label.setStyleSheet("color: #ef5350;" if estop else "")
        status = (f"{self.modality} · last: {origin_name}, {now - times[-1]:.1f} s ago · "
                  f"{self.stim.n_samples} commands")  # fmt: skip
        if self.history.n_missed:
            status += f" · {self.history.n_missed} not drawn"
        if status != self.status.text():
            self.status.setText(status)
