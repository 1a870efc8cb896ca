"""The console as a whole: built from a protocol, watching a session's real LSL streams, its
views fed as the streams appear, a screenshot saved; ``bci gui`` from the command line."""

from __future__ import annotations

import os
import subprocess
import sys

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
import pylsl
import pytest

from bci.engine.outlets import SessionOutlets
from bci.protocol import load_protocol
from bci.streams import stream_names
from gui.main_window import MainWindow


@pytest.fixture
def window(qtbot):
    window = MainWindow("demo")
    qtbot.addWidget(window)
    window.show()
    yield window
    window.close()


def test_the_window_builds_from_a_protocol(window):
    protocol = window.session.protocol
    assert protocol is not None and protocol.session.name == "demo"
    assert window.decoder is not None and window.decoder.classes == ("left", "right")
    assert window.stim is not None
    assert window.session.problems() == []


def test_it_watches_a_sessions_streams_and_draws_them(window, qtbot, unique_name, tmp_path):
    protocol, _ = load_protocol("demo")
    names = stream_names(unique_name)
    picks = list(protocol.preprocessing.picks)
    info = pylsl.StreamInfo(names["eeg"], "EEG", len(picks), 500.0, "float32", names["eeg"])
    info.set_channel_labels(picks)
    eeg = pylsl.StreamOutlet(info)
    outlets = SessionOutlets(unique_name, ("left", "right"), "tdcs", "C3", "Fp2")
    window.watch(unique_name)
    t = np.arange(50) / 500.0

    def publish() -> bool:
        eeg.push_chunk((20 * np.sin(2 * np.pi * 10 * t)[:, None] * np.ones(len(picks))).astype(
            np.float32))  # fmt: skip
        now = pylsl.local_clock()
        outlets.decision(np.array([0.3, 0.7]), now)
        outlets.cue("right", now)
        outlets.event("safety.clamp", now, detail="1.2 mA requested, 1.0 mA allowed")
        return window.eeg.shown_channels and window.decoder.curves and window.frames > 5

    qtbot.waitUntil(lambda: bool(publish()), timeout=20_000)
    assert window._attached["eeg"][0].name == names["eeg"]
    assert window.safety.event_kinds()  # the events stream reaches the safety panel's list
    path = window.screenshot(tmp_path / "console.png")
    assert path.stat().st_size > 20_000
    outlets.close()


def test_bci_gui_saves_a_screenshot_and_exits(tmp_path):
    # its own process, as an operator runs it (it also lowers its own CPU priority)
    png = tmp_path / "gui.png"
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    command = [sys.executable, "-m", "bci", "gui", "demo"]
    done = subprocess.run([*command, "--screenshot", str(png), "--after", "1"], env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert png.stat().st_size > 20_000
    refused = subprocess.run([*command, "--after", "3"], env=env, capture_output=True,
                             text=True, timeout=60)  # fmt: skip
    assert refused.returncode == 2 and "--screenshot" in refused.stderr
