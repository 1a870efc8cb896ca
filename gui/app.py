"""``bci gui``: the operator console, a session started from it, a replayed recording, and
screenshots for the docs."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from bci.streams import INFO_TYPE


def replay_names(path: str | Path) -> tuple[str, dict[str, str]]:
    """The prefix and stream names to watch while ``path`` replays: a NeuroLoop session's own
    (its session-info stream names its prefix), else the file's EEG, fNIRS and markers."""
    from bci.replay import load_recording

    recording = load_recording(path)
    info = recording.find(type=INFO_TYPE)
    if info is not None and info.name.endswith("-Info"):
        return info.name.removesuffix("-Info"), {}
    names = {}
    for key, kind in (("eeg", "EEG"), ("nirs", "NIRS"), ("cues", "Markers")):
        streams = [s for s in recording.streams if s.type.upper() == kind.upper()]
        if streams:
            names[key] = streams[0].name
    if "eeg" not in names:
        raise ValueError(f"{path} holds no EEG stream to show; it has "
                         f"{[s.name for s in recording.streams]}")  # fmt: skip
    return names["eeg"], names


def start_replay(path: str | Path, window) -> subprocess.Popen:
    """``bci replay FILE`` in its own process, and the window watching its streams."""
    prefix, names = replay_names(path)
    process = subprocess.Popen([sys.executable, "-m", "bci", "replay", str(path)],
                               stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)  # fmt: skip
    window.watch(prefix, names)
    return process


def run_gui(protocol: str | None = None, autostart: bool = False, screenshot: str | None = None,
            after_s: float = 30.0, replay: str | None = None,
            overrides: list[str] = ()) -> int:  # fmt: skip
    """Open the console; returns the application's exit code. ``overrides`` (``--set``) apply
    to the protocol as ``bci run`` applies them."""
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from gui.main_window import MainWindow, yield_cpu_to_the_engine

    app = QApplication.instance() or QApplication(sys.argv[:1])
    yield_cpu_to_the_engine()
    window = MainWindow()
    window.session.overrides = list(overrides)
    if protocol:
        window.session.load(protocol)
    window.resize(1800, 1100)
    window.show()
    player = None
    if replay:
        player = start_replay(replay, window)
    if autostart:
        if window.session.protocol is None:
            print(f"error: cannot start {protocol!r}: it is not a valid protocol (see the "
                  "window's Session panel, or run `bci check`).", file=sys.stderr)  # fmt: skip
            return 2
        window.session.start()
    if screenshot:

        def shoot_and_quit() -> None:
            print(f"screenshot → {window.screenshot(screenshot)}", flush=True)
            window.close()
            app.quit()

        QTimer.singleShot(int(after_s * 1000), shoot_and_quit)
    # Ctrl-C in the terminal closes the window (Qt would otherwise swallow it)
    signal.signal(signal.SIGINT, lambda *_: window.close())
    keepalive = QTimer(interval=200, timeout=lambda: None)  # lets Python see the signal
    keepalive.start()
    try:
        return app.exec()
    finally:
        window.session.shutdown()
        if player is not None and player.poll() is None:
            player.terminate()
            player.wait(5)
