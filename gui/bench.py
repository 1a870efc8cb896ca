"""``bci bench gui``: the console's frame rate at 64 ch · 1 kHz with a 10 s EEG window, and the
engine's latency p99 with and without the console watching the session.

Each run is the latency benchmark's session (``bci bench latency``: virtual subject, tangent-
space decoder every 10 ms, simulated stimulator). With the console, it runs as an operator would
have it: its own process (``python -m gui.bench PREFIX SECONDS JSON``), subscribed to every
stream of the session, drawing at its own pace.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

EEG_WINDOW_S = 10.0


def _session(prefix: str, seconds: float) -> dict:
    from bci.bench.latency import bench_overrides
    from bci.engine.session import run_session
    from bci.protocol import load_protocol

    overrides = bench_overrides(prefix, seconds, 64, 1000.0, 0.001)
    protocol, text = load_protocol("demo", [*overrides, "control.address=tcp://127.0.0.1:0"])
    with tempfile.TemporaryDirectory() as tmp:
        summary, _ = run_session(protocol, "bench-gui", text, Path(tmp), progress=False)
    return summary


def run_gui_bench(json_path: Path, seconds: float = 60.0) -> dict:
    """Both runs, then ``json_path`` (and a PNG beside it)."""
    json_path = Path(json_path)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    without = _session(f"bench-{uuid.uuid4().hex[:8]}", seconds)
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    gui_json = json_path.with_name(json_path.stem + "-window.json")
    env = {**os.environ}
    if not env.get("DISPLAY"):
        env.setdefault("QT_QPA_PLATFORM", "offscreen")
    # the console watches for the whole session: calibration, fit and the closed loop
    window = subprocess.Popen([sys.executable, "-m", "gui.bench", prefix, str(seconds + 120),
                               str(gui_json)], env=env)  # fmt: skip
    try:
        with_gui = _session(prefix, seconds)
    finally:
        window.terminate()  # the window writes its frame count as it closes
        window.wait(30)
    frames = json.loads(gui_json.read_text()) if gui_json.exists() else {}
    gui_json.unlink(missing_ok=True)
    result = {
        "fps": frames.get("fps_closed_loop", frames.get("fps", 0.0)),
        "engine_p99_ms_with_gui": with_gui["latency_ms"]["p99"],
        "engine_p99_ms_without_gui": without["latency_ms"]["p99"],
        "engine_p50_ms_with_gui": with_gui["latency_ms"]["p50"],
        "engine_p50_ms_without_gui": without["latency_ms"]["p50"],
        "window": frames,
        "config": {
            "channels": 64,
            "srate": 1000.0,
            "eeg_window_s": EEG_WINDOW_S,
            "closed_loop_s": seconds,
            "display": env.get("DISPLAY") or "offscreen",
        },
        "date": datetime.now().isoformat(timespec="seconds"),
    }
    from bci.bench import machine_info

    result["machine"] = machine_info()
    json_path.write_text(json.dumps(result, indent=2))
    _plot(result, json_path.with_suffix(".png"))
    return result


def _plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.5))
    ax1.bar(["console"], [result["fps"]], color="tab:blue")
    ax1.axhline(30, color="red", ls="--", label="30 fps")
    ax1.set(ylabel="frames per second", title="64 ch · 1 kHz, 10 s window")
    ax1.legend()
    labels = ["p50", "p99"]
    without = [result["engine_p50_ms_without_gui"], result["engine_p99_ms_without_gui"]]
    with_gui = [result["engine_p50_ms_with_gui"], result["engine_p99_ms_with_gui"]]
    x = range(len(labels))
    ax2.bar([i - 0.2 for i in x], without, 0.4, label="without console")
    ax2.bar([i + 0.2 for i in x], with_gui, 0.4, label="with console")
    ax2.set_xticks(list(x), labels)
    ax2.set(ylabel="engine latency, ms", title="newest sample → stimulator write")
    ax2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _window_main(prefix: str, seconds: float, out: str) -> None:
    """The console watching ``prefix`` for ``seconds`` (or until SIGTERM); writes its fps."""
    import signal

    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from gui.main_window import MainWindow, yield_cpu_to_the_engine

    app = QApplication(sys.argv[:1])
    yield_cpu_to_the_engine()  # as `bci gui` does
    window = MainWindow()
    window.resize(1600, 1000)
    window.show()
    window.watch(prefix)
    counts = {"start": time.monotonic(), "frames_at_loop": None, "loop_at": None}

    def sample() -> None:  # frames once the closed loop (64 ch at full rate) is being drawn
        feed = window.feeds.feed("decoder") if window.feeds else None
        if counts["loop_at"] is None and feed is not None and feed.n_samples:
            counts["loop_at"], counts["frames_at_loop"] = time.monotonic(), window.frames

    def finish(*_) -> None:
        elapsed = time.monotonic() - counts["start"]
        result = {"frames": window.frames, "seconds": elapsed, "fps": window.frames / elapsed}
        if counts["loop_at"] is not None:
            loop_s = time.monotonic() - counts["loop_at"]
            result["fps_closed_loop"] = (window.frames - counts["frames_at_loop"]) / loop_s
        Path(out).write_text(json.dumps(result))
        app.quit()

    signal.signal(signal.SIGTERM, finish)
    QTimer(window, interval=200, timeout=sample).start()  # also lets Python see SIGTERM
    QTimer.singleShot(int(seconds * 1000), finish)
    app.exec()
    window.close()


if __name__ == "__main__":
    _window_main(sys.argv[1], float(sys.argv[2]), sys.argv[3])
