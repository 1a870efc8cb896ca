"""The LSL streams on the network, listed live, to pick the EEG source from."""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from datetime import datetime

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from bci.acquire.resolve import list_streams
from gui.panels.control import Mailbox

COLUMNS = ("name", "type", "channels", "rate", "host", "source id")


@dataclass(frozen=True)
class StreamRow:
    """What the browser shows of one stream."""

    name: str
    type: str
    channels: int
    rate_hz: float
    """Nominal rate, Hz; 0 for an irregular stream."""
    host: str
    source_id: str
    uid: str
    """LSL's id of the outlet: a stream that restarts under the same name is a new row."""

    def cells(self) -> tuple[str, ...]:
        rate = f"{self.rate_hz:g} Hz" if self.rate_hz > 0 else "irregular"
        return (self.name, self.type, str(self.channels), rate, self.host, self.source_id)


class StreamBrowser(QWidget):
    """A table of the LSL streams on the network, refreshed by a background thread.

    Resolving blocks for ``wait_s``, so it never runs on the GUI thread; the table only changes
    by the rows that appeared or disappeared, so a selection survives a refresh.

    Parameters
    ----------
    parent : QWidget, optional
    refresh_s : float
        Pause between two listings, s (with ``wait_s``: a listing every ~2 s).
    wait_s : float
        How long each listing listens for stream announcements, s.

    Signals
    -------
    source_chosen(str)
        The name of the stream picked as the EEG source (double-click, "Use as EEG source").
    """

    source_chosen = Signal(str)

    def __init__(self, parent: QWidget | None = None, refresh_s: float = 1.0,
                 wait_s: float = 1.0) -> None:  # fmt: skip
        super().__init__(parent)
        if not refresh_s > 0 or not wait_s > 0:
            raise ValueError(
                f"refresh_s and wait_s must be > 0 s, got refresh_s={refresh_s!r}, "
                f"wait_s={wait_s!r}"
            )
        self.refresh_s, self.wait_s = refresh_s, wait_s
        self.rows: dict[str, StreamRow] = {}
        """Streams shown, by uid."""
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSortingEnabled(True)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.verticalHeader().setVisible(False)
        self.table.cellDoubleClicked.connect(lambda row, _column: self.choose_row(row))
        self.use_button = QPushButton("Use as EEG source")
        self.use_button.clicked.connect(self.choose_selected)
        self.status_label = QLabel("looking for streams…")
        bottom = QHBoxLayout()
        bottom.addWidget(self.status_label, 1)
        bottom.addWidget(self.use_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table, 1)
        layout.addLayout(bottom)

        self._mailbox = Mailbox(self, every_ms=100)
        self._mailbox.arrived.connect(self._show)
        self._stop = threading.Event()
        self.destroyed.connect(self._stop.set)  # deleted with its window, never closed
        self._thread = threading.Thread(
            target=_list_forever, args=(self._mailbox.queue, self._stop, wait_s, refresh_s),
            name="gui-streams", daemon=True,
        )  # fmt: skip
        self._thread.start()

    # GUI side ------------------------------------------------------------------------------
    @Slot(object)
    def _show(self, listing) -> None:
        if self._stop.is_set():
            return
        if isinstance(listing, str):
            self.status_label.setText(listing)
            self.status_label.setStyleSheet("color: #c00000;")
            return
        found = {row.uid: row for row in listing}
        self.table.setSortingEnabled(False)  # row indices shift while sorted insertions land
        for index in reversed(range(self.table.rowCount())):
            uid = self.table.item(index, 0).data(Qt.ItemDataRole.UserRole)
            if uid not in found:
                self.table.removeRow(index)
                del self.rows[uid]
        for uid, row in found.items():
            if uid in self.rows:
                continue
            index = self.table.rowCount()
            self.table.insertRow(index)
            for column, text in enumerate(row.cells()):
                item = QTableWidgetItem(text)
                item.setData(Qt.ItemDataRole.UserRole, uid)
                self.table.setItem(index, column, item)
            self.rows[uid] = row
        self.table.setSortingEnabled(True)
        self.status_label.setStyleSheet("")
        self.status_label.setText(
            f"{len(found)} stream(s), listed at {datetime.now().strftime('%H:%M:%S')}"
        )

    def stream_names(self) -> list[str]:
        """Names of the streams shown, in table order."""
        return [self.table.item(i, 0).text() for i in range(self.table.rowCount())]

    @Slot(int)
    def choose_row(self, index: int) -> None:
        """Pick the stream of table row ``index`` as the EEG source."""
        item = self.table.item(index, 0)
        if item is not None:
            self.source_chosen.emit(item.text())

    @Slot()
    def choose_selected(self) -> None:
        """Pick the selected stream ("Use as EEG source"); nothing selected: say so."""
        selected = self.table.selectionModel().selectedRows()
        if not selected:
            self.status_label.setText("select a stream first, then Use as EEG source")
            return
        self.choose_row(selected[0].row())

    def stop(self) -> None:
        """Stop listing (waits for the listing in progress, at most ``wait_s`` + 1 s)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.wait_s + 1.0)

    def closeEvent(self, event) -> None:
        self.stop()
        super().closeEvent(event)


def _list_forever(results: queue.SimpleQueue, stop: threading.Event, wait_s: float,
                  refresh_s: float) -> None:  # fmt: skip
    """The worker thread: a listing (StreamRow list, or an error text) every ``refresh_s``."""
    while not stop.is_set():
        try:
            listing: object = [
                StreamRow(info.name(), info.type(), info.channel_count(), info.nominal_srate(),
                          info.hostname(), info.source_id(), info.uid())
                for info in list_streams(wait_s)
            ]  # fmt: skip
        except Exception as err:  # shown in the browser; the next listing tries again
            listing = f"cannot list streams: {type(err).__name__}: {err}"
        results.put(listing)
        stop.wait(refresh_s)
