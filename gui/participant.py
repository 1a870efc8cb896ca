"""The participant's screen: a fixation cross, the cued arrow and the decoder's feedback bar.

Plain QPainter on black: the participant sees nothing but the task, on the second screen when
the lab has one.
"""

from __future__ import annotations

import math

import pylsl
from PySide6 import QtCore, QtGui, QtWidgets

from bci.acquire import Inlet
from bci.streams import CUE_LEFT, CUE_RIGHT
from gui.feeds import MarkerHistory

CROSS, LEFT, RIGHT = "cross", CUE_LEFT, CUE_RIGHT
"""What the screen shows (:attr:`ParticipantWindow.shown`)."""


class ParticipantWindow(QtWidgets.QWidget):
    """The participant's window, driven by the cues and the decoder's probabilities.

    The newest cue decides what is shown: ``left``/``right`` an arrow, anything else (``rest``,
    no cue yet) the fixation cross. While the decoder is publishing (closed loop), a horizontal
    bar shows the probability of the cued class, or of ``target_class`` when no class is cued.

    Parameters
    ----------
    feedback_stale_s : float
        The bar disappears when the newest decision is older than this, s: a frozen bar would
        tell the participant they are doing well (or badly) when the loop has stopped.
    """

    def __init__(self, feedback_stale_s: float = 1.0, parent=None) -> None:
        super().__init__(parent)
        if not feedback_stale_s > 0:
            raise ValueError(f"feedback_stale_s must be > 0 s, got {feedback_stale_s}.")
        self.feedback_stale_s = feedback_stale_s
        self.cues: MarkerHistory | None = None
        self.decoder: Inlet | None = None
        self.classes: tuple[str, ...] = ()
        self.target_class: str | None = None
        self.shown = CROSS
        """``cross``, ``left`` or ``right``."""
        self.feedback = math.nan
        """Probability the bar shows, in [0, 1]; NaN when no bar is shown."""
        self.feedback_class: str | None = None
        """The class whose probability the bar shows."""
        self._columns: dict[str, int] = {}
        self.setWindowTitle("NeuroLoop — participant")
        self.setAutoFillBackground(True)
        palette = self.palette()
        palette.setColor(QtGui.QPalette.ColorRole.Window, QtGui.QColor("black"))
        self.setPalette(palette)
        self.resize(800, 600)

    # the main window's calls ---------------------------------------------------------------
    def attach(self, cues: MarkerHistory | None, decoder: Inlet | None,
               classes: tuple[str, ...] = (), target_class: str | None = None) -> None:  # fmt: skip
        """Follow ``cues`` and ``decoder`` (either None: cross only, no bar).

        Parameters
        ----------
        classes : tuple of str
            The protocol's decoder classes (``protocol.decoder.classes``).
        target_class : str, optional
            The class whose probability the bar shows when no class is cued
            (``protocol.controller.target_class``).

        Raises
        ------
        ValueError
            If ``target_class`` is not one of ``classes``, or the decoder stream lacks one.
        """
        classes = tuple(classes)
        if target_class is not None and target_class not in classes:
            raise ValueError(f"target_class must be one of {list(classes)}, got {target_class!r}.")
        columns: dict[str, int] = {}
        if decoder is not None:
            names = decoder.ch_names
            missing = [c for c in classes if c not in names]
            if missing:
                raise ValueError(
                    f"decoder stream {decoder.name!r} has channels {list(names)}, without the "
                    f"classes {missing}; is this the session's decoder?"
                )
            columns = {c: names.index(c) for c in classes}
        self.cues, self.decoder = cues, decoder
        self.classes, self.target_class, self._columns = classes, target_class, columns

    def redraw(self) -> None:
        """Decide what to show from the buffers (never pulls); repaint only on a change."""
        cue = self.cues.markers[-1][1] if self.cues is not None and self.cues.markers else None
        shown = cue if cue in (LEFT, RIGHT) else CROSS
        feedback_class = cue if cue in self._columns else self.target_class
        feedback = self._probability(feedback_class)
        if math.isnan(feedback):
            feedback_class = None
        changed = (shown, feedback_class) != (self.shown, self.feedback_class) or not (
            feedback == self.feedback or (math.isnan(feedback) and math.isnan(self.feedback))
        )
        self.shown, self.feedback, self.feedback_class = shown, feedback, feedback_class
        if changed:
            self.update()

    def _probability(self, name: str | None) -> float:
        """The newest decision's probability of ``name``, or NaN if there is none or it is stale."""
        decoder = self.decoder
        if name is None or decoder is None or not len(decoder.buffer):
            return math.nan
        row, times = decoder.buffer.latest(1)
        if pylsl.local_clock() - times[0] > self.feedback_stale_s:
            return math.nan
        value = float(row[0, self._columns[name]])
        return min(max(value, 0.0), 1.0) if math.isfinite(value) else math.nan

    def show_on_second_screen(self) -> bool:
        """Full screen on a screen other than the primary one if there is one, else a normal
        window on the primary.

        Returns
        -------
        full_screen : bool
            Whether a second screen was found.
        """
        primary = QtGui.QGuiApplication.primaryScreen()
        others = [s for s in QtGui.QGuiApplication.screens() if s != primary]
        if not others:
            self.showNormal()
            return False
        screen = others[0]
        self.setScreen(screen)
        self.setGeometry(screen.geometry())
        # the operator's mouse must not wander across the participant's display
        self.setCursor(QtCore.Qt.CursorShape.BlankCursor)
        self.showFullScreen()
        return True

    def keyPressEvent(self, event: QtGui.QKeyEvent) -> None:
        """Escape leaves full screen (the operator's way out)."""
        if event.key() == QtCore.Qt.Key.Key_Escape and self.isFullScreen():
            self.unsetCursor()
            self.showNormal()
        else:
            super().keyPressEvent(event)

    # painting ------------------------------------------------------------------------------
    def paintEvent(self, event: QtGui.QPaintEvent) -> None:
        painter = QtGui.QPainter(self)
        painter.setRenderHint(QtGui.QPainter.RenderHint.Antialiasing)
        painter.fillRect(self.rect(), QtGui.QColor("black"))
        size = min(self.width(), self.height())
        centre = QtCore.QPointF(self.width() / 2, self.height() / 2)
        if self.shown == CROSS:
            self._paint_cross(painter, centre, size)
        else:
            self._paint_arrow(painter, centre, size, -1.0 if self.shown == LEFT else 1.0)
        if not math.isnan(self.feedback):
            self._paint_bar(painter)
        painter.end()

    @staticmethod
    def _paint_cross(painter: QtGui.QPainter, centre: QtCore.QPointF, size: float) -> None:
        half = 0.05 * size
        pen = QtGui.QPen(QtGui.QColor("white"), max(2.0, 0.012 * size))
        painter.setPen(pen)
        painter.drawLine(centre + QtCore.QPointF(-half, 0), centre + QtCore.QPointF(half, 0))
        painter.drawLine(centre + QtCore.QPointF(0, -half), centre + QtCore.QPointF(0, half))

    @staticmethod
    def _paint_arrow(painter: QtGui.QPainter, centre: QtCore.QPointF, size: float,
                     direction: float) -> None:  # fmt: skip
        """An arrow through the centre, pointing right (``direction`` 1) or left (-1)."""
        tail, neck, tip = -0.18 * size, 0.05 * size, 0.18 * size
        shaft, head = 0.03 * size, 0.09 * size
        outline = [(tail, -shaft), (neck, -shaft), (neck, -head), (tip, 0.0), (neck, head),
                   (neck, shaft), (tail, shaft)]  # fmt: skip
        polygon = QtGui.QPolygonF([centre + QtCore.QPointF(direction * x, y) for x, y in outline])
        painter.setPen(QtCore.Qt.PenStyle.NoPen)
        painter.setBrush(QtGui.QColor("white"))
        painter.drawPolygon(polygon)

    def _paint_bar(self, painter: QtGui.QPainter) -> None:
        frame, filled = self.bar_geometry()
        painter.setPen(QtCore.Qt.PenStyle.NoPen)
        painter.fillRect(filled, QtGui.QColor("#66bb6a"))
        painter.setPen(QtGui.QPen(QtGui.QColor("#9e9e9e"), 2.0))
        painter.setBrush(QtCore.Qt.BrushStyle.NoBrush)
        painter.drawRect(frame)

    def bar_geometry(self) -> tuple[QtCore.QRectF, QtCore.QRectF]:
        """The bar's frame and its filled part, in pixels: the fill grows in the arrow's
        direction (rightwards when no arrow is shown), empty when no bar is shown."""
        size = min(self.width(), self.height())
        width, height = 0.5 * self.width(), max(8.0, 0.04 * size)
        frame = QtCore.QRectF((self.width() - width) / 2, 0.78 * self.height(), width, height)
        filled = QtCore.QRectF(frame)
        filled.setWidth(0.0 if math.isnan(self.feedback) else self.feedback * width)
        if self.shown == LEFT:
            filled.moveRight(frame.right())
        return frame, filled
