"""The safety panel: the STOP button, the latched emergency-stop banner, re-arming with an
explicit confirmation, the governor's events, and what the engine says it is delivering."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import datetime

import pylsl
from PySide6.QtCore import Qt, Slot
from PySide6.QtGui import QBrush, QColor, QFont, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QGridLayout,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from gui.panels.control import ControlClient

LATCHED_TEXT = "EMERGENCY STOP LATCHED — output at zero"
GONE_TEXT = (
    "ENGINE GONE — the engine does not answer. STOP is still sent, but may not arrive: the "
    "stimulator's own keep-alive stops the device when its host is gone."
)
SHOWN_EVENTS = ("watchdog", "stall", "resume", "gap", "clock_jump", "monitor", "operator", "error",
                "stimulator_failed")  # fmt: skip
"""Event kinds listed besides every ``safety.*`` one."""
MAX_EVENTS = 500
"""Events kept in the list (the oldest go)."""
_COLOURS = {"safety.estop": "#c00000", "safety.limit": "#c00000", "error": "#c00000",
            "stimulator_failed": "#c00000", "monitor": "#c00000", "safety.trip": "#b35900",
            "safety.refuse": "#b35900", "watchdog": "#b35900"}  # fmt: skip


def ask_rearm_confirmation(parent: QWidget) -> bool:
    """Ask the operator to type REARM; True only if they did and pressed OK."""
    text, ok = QInputDialog.getText(
        parent, "Re-arm the stimulator",
        "Re-arming lets the output rise again under the closed loop.\n"
        "Check the participant first. Type REARM to re-arm:",
        QLineEdit.EchoMode.Normal, "",
    )  # fmt: skip
    return bool(ok) and text.strip() == "REARM"


def describe_event(text: str) -> tuple[str, str] | None:
    """An Events-stream JSON text as ``(kind, detail)`` if the safety panel lists it.

    Text that is not a JSON object is listed as an ``error`` (the engine only writes JSON, so
    anything else is a problem worth seeing)."""
    try:
        event = json.loads(text)
    except json.JSONDecodeError:
        return "error", f"unreadable event: {text[:200]}"
    if not isinstance(event, dict):
        return "error", f"unreadable event: {text[:200]}"
    kind = str(event.get("kind", "?"))
    if not (kind.startswith("safety.") or kind in SHOWN_EVENTS):
        return None
    if "detail" in event and isinstance(event["detail"], str):
        return kind, event["detail"]
    rest = {k: v for k, v in event.items() if k not in ("kind", "seq", "time")}
    return kind, ", ".join(f"{key}={value}" for key, value in rest.items())


class SafetyPanel(QWidget):
    """STOP, the emergency-stop latch and re-arm, the engine's output, the governor's events.

    The latched banner follows the engine's own state (``status["estop"]`` and the estop reply),
    never the click alone: the console shows what the engine holds, not what it asked for.

    Keyboard: Esc and Space press STOP wherever the focus is in the console (application-wide
    shortcuts). Space is therefore taken from buttons, check boxes and lists, which no longer
    click or toggle on Space; a text field being typed in keeps its spaces (it claims printable
    keys first), so typing a note never stops stimulation. While a modal dialog is open (the
    re-arm prompt) the shortcuts are off and Esc closes the dialog; the STOP button stays.

    Parameters
    ----------
    client : ControlClient
        The engine's control channel.
    parent : QWidget, optional

    Attributes
    ----------
    confirm_rearm : callable
        ``confirm_rearm(parent) -> bool``: the confirmation asked before a re-arm
        (:func:`ask_rearm_confirmation`; tests replace it).
    """

    def __init__(self, client: ControlClient, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.client = client
        self.confirm_rearm: Callable[[QWidget], bool] = ask_rearm_confirmation
        self.latched = False
        self.engine_gone = False

        self.stop_button = QPushButton("STOP")
        self.stop_button.setToolTip("Emergency stop: output to zero now, latched (Esc, Space)")
        self.stop_button.setMinimumSize(240, 150)
        self.stop_button.setSizePolicy(QSizePolicy.Policy.Expanding,
                                       QSizePolicy.Policy.Expanding)  # fmt: skip
        font = QFont(self.stop_button.font())
        font.setPointSize(40)
        font.setBold(True)
        self.stop_button.setFont(font)
        self.stop_button.setStyleSheet(
            "QPushButton { background: #d00000; color: white; border: 4px solid #700000;"
            " border-radius: 12px; } QPushButton:pressed { background: #900000; }"
        )
        self.stop_button.clicked.connect(self.press_stop)
        self.shortcuts = []
        for key in ("Esc", "Space"):
            shortcut = QShortcut(QKeySequence(key), self)
            shortcut.setContext(Qt.ShortcutContext.ApplicationShortcut)
            shortcut.setAutoRepeat(False)  # a held key sends one stop, not a burst
            shortcut.activated.connect(self.press_stop)
            self.shortcuts.append(shortcut)

        self.latch_banner = self._banner(LATCHED_TEXT, "#c00000")
        self.gone_banner = self._banner(GONE_TEXT, "#6b6b6b")
        self.stop_state = QLabel("")
        self.stop_state.setWordWrap(True)
        self.rearm_button = QPushButton("Re-arm…")
        self.rearm_button.setEnabled(False)
        self.rearm_button.clicked.connect(self.request_rearm)

        self.amplitude_label, self.charge_label = QLabel("–"), QLabel("–")
        self.pulses_label, self.state_label = QLabel("–"), QLabel("no engine")
        readout = QGridLayout()
        for row, (name, label) in enumerate((("amplitude", self.amplitude_label),
                                             ("charge", self.charge_label),
                                             ("pulses", self.pulses_label),
                                             ("state", self.state_label))):  # fmt: skip
            readout.addWidget(QLabel(name), row, 0)
            readout.addWidget(label, row, 1)

        self.events = QListWidget()
        self.events.setFocusPolicy(Qt.FocusPolicy.NoFocus)

        buttons = QHBoxLayout()
        buttons.addWidget(self.stop_button, 3)
        side = QVBoxLayout()
        side.addLayout(readout)
        side.addWidget(self.rearm_button)
        side.addStretch(1)
        buttons.addLayout(side, 1)
        layout = QVBoxLayout(self)
        layout.addWidget(self.latch_banner)
        layout.addWidget(self.gone_banner)
        layout.addLayout(buttons)
        layout.addWidget(self.stop_state)
        layout.addWidget(QLabel("safety events (newest first)"))
        layout.addWidget(self.events, 1)

        client.status.connect(self.on_status)
        client.replied.connect(self._on_replied)
        client.failed.connect(self._on_failed)
        client.engine_gone.connect(self._on_engine_gone)
        client.engine_back.connect(self._on_engine_back)
        client.address_changed.connect(self._on_address_changed)

    @staticmethod
    def _banner(text: str, colour: str) -> QLabel:
        banner = QLabel(text)
        banner.setWordWrap(True)
        banner.setAlignment(Qt.AlignmentFlag.AlignCenter)
        banner.setStyleSheet(f"background: {colour}; color: white; font-size: 18pt; "
                             "font-weight: bold; padding: 8px;")  # fmt: skip
        banner.setVisible(False)
        return banner

    # the operator's acts ----------------------------------------------------------------------
    @Slot()
    def press_stop(self) -> None:
        """Send the emergency stop (the button, Esc, Space)."""
        self.stop_state.setText("STOP sent…")
        self.stop_state.setStyleSheet("color: #c00000; font-weight: bold;")
        self.client.send({"cmd": "estop", "who": "gui"})

    @Slot()
    def request_rearm(self) -> None:
        """Ask for the confirmation; only then send the re-arm."""
        if not self.latched:
            return
        if not self.confirm_rearm(self):
            self.stop_state.setText("not re-armed: the confirmation was not given")
            return
        self.client.send({"cmd": "rearm", "confirm": True, "who": "gui"})

    # what the engine says ---------------------------------------------------------------------
    @Slot(object)
    def on_status(self, status: dict) -> None:
        """Show a status answer: the latch, the output, the state."""
        self._set_latched(bool(status.get("estop")))
        amplitude = status.get("amplitude")
        self.amplitude_label.setText("–" if amplitude is None else f"{amplitude:.3f}")
        charge = status.get("charge_mC")
        self.charge_label.setText("–" if charge is None else f"{charge:.2f} mC")
        self.pulses_label.setText(str(status.get("pulses", "–")))
        if status.get("stimulator_failed"):
            state = f"STIMULATOR FAILED: {status['stimulator_failed']}"
        elif status.get("estop"):
            state = f"emergency stop: {status['estop']}"
        elif status.get("limit"):
            state = f"dose limit: {status['limit']}"
        elif status.get("paused"):
            state = "paused"
        elif status.get("tripped"):
            state = f"held: {status['tripped']}"
        else:
            state = f"{status.get('block', '')} running".strip()
        self.state_label.setText(state)

    def _set_latched(self, latched: bool) -> None:
        self.latched = latched
        self.latch_banner.setVisible(latched)
        self.rearm_button.setEnabled(latched and not self.engine_gone)

    @Slot(str, object)
    def _on_replied(self, cmd: str, reply: dict) -> None:
        if cmd not in ("estop", "rearm"):
            return
        if not reply.get("ok"):
            self.stop_state.setText(f"{cmd} refused by the engine: {reply.get('error')}")
            self.stop_state.setStyleSheet("color: #c00000; font-weight: bold;")
            return
        if cmd == "estop":
            self.stop_state.setText("emergency stop confirmed by the engine")
            self._set_latched(bool(reply.get("estop")))
        else:
            self.stop_state.setText("re-armed by the operator")
            self.stop_state.setStyleSheet("")
        self.client.poll()  # the banner follows the engine's state, fetched now

    @Slot(str, str)
    def _on_failed(self, cmd: str, error: str) -> None:
        if cmd == "estop":
            self.stop_state.setText(f"STOP NOT DELIVERED: {error} Use the stimulator's own stop.")
            self.stop_state.setStyleSheet("color: #c00000; font-weight: bold;")
        elif cmd == "rearm":
            self.stop_state.setText(f"re-arm not delivered: {error}")

    @Slot(str)
    def _on_engine_gone(self, reason: str) -> None:
        self.engine_gone = True
        self.gone_banner.setToolTip(reason)
        self.gone_banner.setVisible(True)
        self.stop_button.setText("STOP\n(engine not answering)")
        self.state_label.setText("engine not answering")
        self.rearm_button.setEnabled(False)

    @Slot()
    def _on_engine_back(self) -> None:
        self.engine_gone = False
        self.gone_banner.setVisible(False)
        self.stop_button.setText("STOP")
        self.rearm_button.setEnabled(self.latched)

    @Slot(object)
    def _on_address_changed(self, address: str | None) -> None:
        # another engine, or none: nothing shown so far is about it
        self._on_engine_back()
        self._set_latched(False)
        for label in (self.amplitude_label, self.charge_label, self.pulses_label):
            label.setText("–")
        self.state_label.setText("connecting…" if address else "no engine")

    # the governor's events --------------------------------------------------------------------
    def add_events(self, events: list[tuple[float, str]]) -> None:
        """List the safety-relevant events among ``events`` (the Events stream's
        ``(timestamp, JSON text)``, timestamps on this host's LSL clock), newest on top."""
        if not events:
            return
        # LSL clock → wall clock, so the operator reads the time of day
        offset = time.time() - pylsl.local_clock()
        for timestamp, text in events:
            described = describe_event(text)
            if described is None:
                continue
            kind, detail = described
            when = datetime.fromtimestamp(timestamp + offset).strftime("%H:%M:%S.%f")[:-3]
            item = QListWidgetItem(f"{when}  {kind}  {detail}")
            item.setData(Qt.ItemDataRole.UserRole, kind)
            if kind in _COLOURS:
                item.setForeground(QBrush(QColor(_COLOURS[kind])))
            self.events.insertItem(0, item)
        while self.events.count() > MAX_EVENTS:
            self.events.takeItem(self.events.count() - 1)

    def event_kinds(self) -> list[str]:
        """The kinds listed, newest first."""
        return [self.events.item(i).data(Qt.ItemDataRole.UserRole)
                for i in range(self.events.count())]  # fmt: skip
