"""The operator console's main window: session, safety, live views, streams.

Two timers drive it, as fast plots want (STYLE.md point 11): a pull timer that takes what the
streams delivered (``timeout=0``, preallocated buffers) and a slower draw timer that redraws the
views from those buffers and counts frames. The engine runs in its own process; nothing here
waits on it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pylsl
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (
    QDockWidget,
    QGridLayout,
    QLabel,
    QMainWindow,
    QTabWidget,
    QWidget,
)

from bci.protocol import Protocol
from bci.safety.ceilings import HARD_CEILINGS
from gui.feeds import SessionFeeds
from gui.panels import ControlClient, SafetyPanel, SessionPanel, StreamBrowser
from gui.participant import ParticipantWindow
from gui.views import DecoderView, EEGView, LatencyView, NirsView, SpectrumView, StimView

PULL_MS = 20
DRAW_MS = 25
"""Up to 40 frames a second; a busy machine draws fewer, the engine's loop never waits."""
NICE = 10
"""How much CPU priority the console gives up: on a lab PC the engine shares the cores with
it, and drawing must never delay a decision."""


def yield_cpu_to_the_engine() -> None:
    """Lower this process's CPU priority by :data:`NICE` (always allowed, unlike raising the
    engine's)."""
    import os

    os.nice(NICE)


class MainWindow(QMainWindow):
    """The console. ``protocol_path`` is loaded (and validated) at start if given."""

    def __init__(self, protocol_path: str | None = None) -> None:
        super().__init__()
        self.setWindowTitle("NeuroLoop")
        self.control = ControlClient()
        self.feeds: SessionFeeds | None = None
        self.session = SessionPanel(self.control)
        self.safety = SafetyPanel(self.control)
        self.streams = StreamBrowser()
        self.participant: ParticipantWindow | None = None
        self.eeg, self.nirs, self.spectrum = EEGView(), NirsView(), SpectrumView()
        self.decoder: DecoderView | None = None
        self.stim: StimView | None = None
        self.latency = LatencyView()
        self._attached: dict[str, list] = {}
        """The streams each view was given (a view is attached once per stream)."""
        self._views_grid = QGridLayout()
        self._build()
        self.session.session_started.connect(self._session_started)
        self.session.session_ended.connect(self._session_ended)
        self.session.protocol_loaded.connect(self._protocol_loaded)
        self.eeg.bad_channels_changed.connect(self.spectrum.set_bad_channels)
        self.frames = 0
        """Frames drawn since the window opened (``bci bench gui`` reads it)."""
        self._fps_since, self._fps_frames = time.monotonic(), 0
        self.fps = 0.0
        self._pull = QTimer(self, interval=PULL_MS, timeout=self._pull_streams)
        self._draw = QTimer(self, interval=DRAW_MS, timeout=self._redraw)
        self._pull.start()
        self._draw.start()
        if protocol_path:
            self.session.load(protocol_path)

    # layout ----------------------------------------------------------------------------------
    def _build(self) -> None:
        central = QWidget()
        grid = self._views_grid
        grid.setContentsMargins(2, 2, 2, 2)
        central.setLayout(grid)
        signals = QTabWidget()
        signals.addTab(self.spectrum, "Spectrum · topography")
        signals.addTab(self.nirs, "fNIRS")
        grid.addWidget(self.eeg, 0, 0, 2, 1)
        grid.addWidget(signals, 0, 1)
        grid.addWidget(self.latency, 1, 1)
        grid.setColumnStretch(0, 3)
        grid.setColumnStretch(1, 2)
        grid.setRowStretch(0, 3)
        grid.setRowStretch(1, 2)
        grid.setRowStretch(2, 3)
        self.setCentralWidget(central)
        for title, widget, area in (
            ("Session", self.session, Qt.TopDockWidgetArea),
            ("Safety", self.safety, Qt.LeftDockWidgetArea),
            ("Streams", self.streams, Qt.RightDockWidgetArea),
        ):
            dock = QDockWidget(title, self)
            dock.setObjectName(title)
            dock.setWidget(widget)
            dock.setFeatures(QDockWidget.DockWidgetMovable | QDockWidget.DockWidgetFloatable)
            self.addDockWidget(area, dock)
        self._status = QLabel("no session")
        self.statusBar().addPermanentWidget(self._status)
        menu = self.menuBar().addMenu("&View")
        menu.addAction("Participant window", self.show_participant)

    def _protocol_loaded(self, protocol: Protocol) -> None:
        """Views that depend on the protocol: classes, stimulator limits."""
        for view in (self.decoder, self.stim):
            if view is not None:
                self._views_grid.removeWidget(view)
                view.deleteLater()
        ctl, stim = protocol.controller, protocol.stimulator
        abstain = getattr(ctl, "abstain_below", None)
        self.decoder = DecoderView(tuple(protocol.decoder.classes), abstain)
        self.stim = StimView(stim.modality, HARD_CEILINGS[stim.modality].unit,
                             stim.limits.max_amplitude)  # fmt: skip
        self._views_grid.addWidget(self.decoder, 2, 0)
        self._views_grid.addWidget(self.stim, 2, 1)
        self._attached = {}

    # a session -------------------------------------------------------------------------------
    def _session_started(self, info: dict) -> None:
        self.watch(info["prefix"])  # the panel already gave the control client its address

    def watch(self, prefix: str, names: dict[str, str] | None = None) -> None:
        """Show the streams of the session (or replay) with this prefix."""
        if self.feeds is not None:
            self.feeds.close()
        self.feeds = SessionFeeds(prefix, names)
        self._attached = {}
        self._status.setText(f"watching {prefix}-*")

    def _session_ended(self, returncode: int, tail: str) -> None:
        self._status.setText(f"session ended (exit {returncode})")

    def show_participant(self) -> ParticipantWindow:
        """Open the participant's window (on a second screen when there is one)."""
        if self.participant is None:
            self.participant = ParticipantWindow()
        self.participant.show_on_second_screen()
        self._attached.pop("participant", None)
        return self.participant

    # timers ----------------------------------------------------------------------------------
    def _pull_streams(self) -> None:
        if self.feeds is None:
            return
        self.feeds.poll()
        self._attach_new()
        events = self.feeds.fresh["events"]
        if events:
            self.safety.add_events(events)
        for _, text in self.feeds.fresh["info"]:
            self._on_info(text)

    def _attach_new(self) -> None:
        """Give each view its stream once the stream is there."""
        feeds, attached = self.feeds, self._attached
        wanted = {
            "eeg": (self.eeg, ("eeg",)), "spectrum": (self.spectrum, ("eeg",)),
            "nirs": (self.nirs, ("nirs",)), "latency": (self.latency, ("latency",)),
            "decoder": (self.decoder, ("decoder", "cues")), "stim": (self.stim, ("stim",)),
            "participant": (self.participant, ("cues", "decoder")),
        }  # fmt: skip
        for name, (view, keys) in wanted.items():
            sources = [feeds.feed(key) for key in keys]
            if view is None or attached.get(name) == sources or sources[0] is None:
                continue
            attached[name] = sources  # once: a stream the view refuses is not retried
            try:
                if name == "participant":
                    protocol = self.session.protocol
                    view.attach(*sources, tuple(protocol.decoder.classes) if protocol else (),
                                getattr(protocol.controller, "target_class", None)
                                if protocol else None)  # fmt: skip
                else:
                    view.attach(*sources)
            except ValueError as err:  # a stream that is not what the protocol says
                self.statusBar().showMessage(f"{name}: {err}")

    def _on_info(self, text: str) -> None:
        try:
            record = json.loads(text)
        except ValueError:
            return
        if record.get("kind") == "session":
            self._status.setText(f"session {record.get('protocol_name', '')} on "
                                 f"{record.get('host', '')}")  # fmt: skip

    def _redraw(self) -> None:
        for view in (self.eeg, self.nirs, self.spectrum, self.decoder, self.stim, self.latency,
                     self.participant):  # fmt: skip
            if view is not None and view.isVisible():
                view.redraw()
        self.frames += 1
        self._fps_frames += 1
        now = time.monotonic()
        if now - self._fps_since >= 1.0:
            self.fps = self._fps_frames / (now - self._fps_since)
            self._fps_since, self._fps_frames = now, 0
            self.statusBar().showMessage(f"{self.fps:.0f} fps · {pylsl.local_clock():.1f}")

    def screenshot(self, path: str | Path) -> Path:
        """Save the window as a PNG."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.grab().save(str(path))
        return path

    def closeEvent(self, event) -> None:  # Qt names it
        self._pull.stop()
        self._draw.stop()
        self.control.stop()
        if self.feeds is not None:
            self.feeds.close()
        if self.participant is not None:
            self.participant.close()
        super().closeEvent(event)
