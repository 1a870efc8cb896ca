"""The operator console's panels: safety (STOP, the latch, re-arm), the session (protocol,
timeline, start and stop), the LSL stream browser, and the engine's control channel."""

from gui.panels.control import ControlClient
from gui.panels.safety import SafetyPanel
from gui.panels.session import SessionPanel
from gui.panels.session_widgets import BlockTimeline, RecordingIndicator
from gui.panels.streams import StreamBrowser

__all__ = [
    "BlockTimeline",
    "ControlClient",
    "RecordingIndicator",
    "SafetyPanel",
    "SessionPanel",
    "StreamBrowser",
]
