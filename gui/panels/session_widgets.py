"""What the session panel shows: a protocol's problems, the block timeline, the recording."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from PySide6.QtCore import QRectF, Qt, QTimer
from PySide6.QtGui import QBrush, QColor, QPainter, QPen
from PySide6.QtWidgets import (
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QWidget,
)

from bci.engine.timeline import PlannedBlock

BLOCK_COLOURS = {"baseline": "#7f8c8d", "calibration": "#2e86c1", "fit": "#8e44ad",
                 "closed_loop": "#27ae60", "rest": "#b3b6b7"}  # fmt: skip
FIT_SHARE = 0.06
"""Width given to a fit block (its length is not known in advance), share of the plan."""
_FIELD = re.compile(r"^[\w.()\-]+$")


def split_problem(line: str) -> tuple[str, str]:
    """A ProtocolError line as ``(field, message)``: ``"controller.ceiling: got 99; ..."``
    gives ``("controller.ceiling", "got 99; ...")``; a line about the whole file gives
    ``("(file)", line)``."""
    field, sep, message = line.partition(": ")
    if sep and _FIELD.match(field):
        return field, message
    return "(file)", line


class ProblemTable(QTableWidget):
    """A protocol's problems, one row each: field | problem, in red; hidden when none."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(0, 2, parent)
        self.setHorizontalHeaderLabels(["field", "problem"])
        self.horizontalHeader().setStretchLastSection(True)
        self.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        self.verticalHeader().setVisible(False)
        self.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.setVisible(False)

    def show_problems(self, lines: list[str]) -> None:
        """Show ``lines`` (``ProtocolError.lines``); none: hide."""
        self.setRowCount(len(lines))
        for row, line in enumerate(lines):
            for column, text in enumerate(split_problem(line)):
                item = QTableWidgetItem(text)
                item.setForeground(QBrush(QColor("#c00000")))
                item.setToolTip(line)
                self.setItem(row, column, item)
        self.setVisible(bool(lines))

    def problems(self) -> list[tuple[str, str]]:
        """The ``(field, problem)`` rows shown."""
        return [(self.item(row, 0).text(), self.item(row, 1).text())
                for row in range(self.rowCount())]  # fmt: skip


class BlockTimeline(QWidget):
    """The planned blocks as coloured segments, widths by duration, with the current position.

    The engine reports its block index and the seconds since the session started; the time into
    the current block counts from the first report of that block (pauses and fitting make the
    plan's own block starts drift), or from the plan for the first block seen.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMinimumHeight(44)
        self.blocks: list[PlannedBlock] = []
        self.block_index: int | None = None
        """The block the engine is in, or None before the session."""
        self.block_elapsed_s = 0.0
        """Seconds into the current block."""
        self._block_started_at: float | None = None

    def set_blocks(self, blocks: list[PlannedBlock]) -> None:
        """Show the plan ``blocks`` (``plan_blocks``); clears the position."""
        self.blocks = list(blocks)
        self.block_index, self.block_elapsed_s, self._block_started_at = None, 0.0, None
        self.setToolTip(" → ".join(block.kind for block in self.blocks))
        self.update()

    def kinds(self) -> list[str]:
        """The kinds of the blocks shown, in order."""
        return [block.kind for block in self.blocks]

    def set_position(self, block_index: int | None, elapsed_s: float) -> None:
        """The engine is in block ``block_index``, ``elapsed_s`` seconds after the start."""
        if block_index != self.block_index or self._block_started_at is None:
            if self.block_index is None and block_index is not None:
                # the first report (also: a console opened mid-session): the plan's start
                planned = sum(block.duration_s for block in self.blocks[:block_index])
                self._block_started_at = min(elapsed_s, planned)
            else:
                self._block_started_at = elapsed_s
            self.block_index = block_index
        self.block_elapsed_s = max(0.0, elapsed_s - self._block_started_at)
        self.update()

    def _widths(self) -> list[float]:
        planned = sum(block.duration_s for block in self.blocks) or 1.0
        return [block.duration_s if block.kind != "fit" else FIT_SHARE * planned
                for block in self.blocks]  # fmt: skip

    def paintEvent(self, event) -> None:
        if not self.blocks:
            return
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        widths = self._widths()
        scale = (self.width() - 2) / sum(widths)
        height = self.height() - 2
        x, marker = 1.0, None
        for block, width in zip(self.blocks, widths, strict=True):
            rect = QRectF(x, 1, width * scale, height)
            colour = QColor(BLOCK_COLOURS.get(block.kind, "#999999"))
            painter.setPen(QPen(QColor("white"), 1))
            brush = QBrush(colour)
            if block.kind == "closed_loop" and not block.stimulate:
                brush.setStyle(Qt.BrushStyle.BDiagPattern)  # sham: decoded, not stimulated
            painter.setBrush(brush)
            painter.drawRect(rect)
            if self.block_index is not None and block.index < self.block_index:
                painter.fillRect(rect, QColor(0, 0, 0, 90))  # done
            if rect.width() > 40:
                painter.setPen(QColor("white"))
                painter.drawText(rect, Qt.AlignmentFlag.AlignCenter, block.kind.replace("_", " "))
            if block.index == self.block_index:
                if block.duration_s > 0:
                    share = min(1.0, self.block_elapsed_s / block.duration_s)
                else:
                    share = 0.5
                marker = rect.left() + share * rect.width()
            x += width * scale
        if marker is not None:
            painter.setPen(QPen(QColor("black"), 3))
            painter.drawLine(round(marker), 0, round(marker), self.height())
        painter.end()


class RecordingIndicator(QWidget):
    """A red dot, the XDF file's name, its size and how long it has been recording.

    Updated once a second from the file itself (``os.stat``), so it shows what is on disk.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.path: Path | None = None
        self._started = 0.0
        self.dot = QLabel("●")
        self.label = QLabel("not recording")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.dot)
        layout.addWidget(self.label, 1)
        self._timer = QTimer(self)
        self._timer.setInterval(1000)
        self._timer.timeout.connect(self.refresh)
        self._show_dot(False)

    @property
    def recording(self) -> bool:
        return self.path is not None

    def _show_dot(self, on: bool) -> None:
        self.dot.setStyleSheet(f"color: {'#d00000' if on else '#9e9e9e'}; font-size: 16pt;")

    def start(self, path: str | Path) -> None:
        """Show the recording to ``path`` from now on."""
        self.path, self._started = Path(path), time.monotonic()
        self._show_dot(True)
        self._timer.start()
        self.refresh()

    def stop(self) -> None:
        """The recording ended; the last size stays shown."""
        if self.path is None:
            return
        self.refresh()
        self.path = None
        self._timer.stop()
        self._show_dot(False)
        self.label.setText(self.label.text() + "  (ended)")

    def refresh(self) -> None:
        """Read the file's size and show it with the duration."""
        if self.path is None:
            return
        try:
            size = f"{os.stat(self.path).st_size / 1e6:.1f} MB"
        except FileNotFoundError:
            size = "no file yet"
        minutes, seconds = divmod(int(time.monotonic() - self._started), 60)
        self.label.setText(f"{self.path.name}  {size}  {minutes // 60:d}:{minutes % 60:02d}:"
                           f"{seconds:02d}")  # fmt: skip
        self.label.setToolTip(str(self.path))
