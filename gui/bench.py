"""``bci bench gui``: the console's frame rate at 64 ch · 1 kHz with a 10 s EEG window, and the
engine's latency p99 with and without the console watching the session.

One session of the latency benchmark (``bci bench latency``: virtual subject, tangent-space
decoder every 10 ms, simulated stimulator) whose closed loop is split into rounds: the console
starts (its own process, ``python -m gui.bench PREFIX JSON``, as an operator would have it,
subscribed to every stream), connects and fills its window, is measured; then it exits and the
engine is measured alone. On a shared machine whose load drifts from minute to minute,
alternating within one session compares like with like; two sessions one after the other do
not.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path

import numpy as np

EEG_WINDOW_S = 10.0
WARMUP_S = EEG_WINDOW_S + 5.0
"""The console starts, connects and fills its EEG window before its part is measured."""
SETTLE_S = 3.0
"""After the console exits, before the part without it is measured."""
PART_S = 15.0
"""Seconds measured with, then without, the console in each round."""
ROUND_S = WARMUP_S + PART_S + SETTLE_S + PART_S


def run_gui_bench(json_path: Path, rounds: int = 3) -> dict:
    """Run the benchmark; writes ``json_path`` and a PNG beside it."""
    from bci.bench import machine_info
    from bci.bench.latency import bench_overrides
    from bci.engine.session import run_session
    from bci.engine.summary import latency_stats
    from bci.protocol import load_protocol

    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    json_path = Path(json_path)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    overrides = bench_overrides(prefix, rounds * ROUND_S + 5.0, 64, 1000.0, 0.001)
    protocol, text = load_protocol("demo", [*overrides, "control.address=tcp://127.0.0.1:0"])
    rounds_done: list[dict] = []
    ended = threading.Event()
    with tempfile.TemporaryDirectory() as tmp:

        def on_engine(engine) -> None:
            threading.Thread(
                target=_alternate, args=(engine, overrides, rounds, Path(tmp), ended, rounds_done),
                name="bench-gui-rounds", daemon=True,
            ).start()  # fmt: skip

        try:
            _, record = run_session(protocol, "bench-gui", text, Path(tmp), progress=False,
                                    on_engine=on_engine)  # fmt: skip
        finally:
            ended.set()
    if not rounds_done:
        raise RuntimeError("the console was never measured: the session ended before its first "
                           "round (see the errors above)")  # fmt: skip
    times = np.array(record.latency_times)
    stages = np.array(record.latency_ms)
    latency = stages[:, -1]
    with_gui, without_gui = (
        _pooled(times, latency, rounds_done, "with"),
        _pooled(times, latency, rounds_done, "without"),
    )
    frames = sum(r["frames"] for r in rounds_done)
    seconds = sum(r["with"][1] - r["with"][0] for r in rounds_done)
    result = {
        "fps": frames / seconds if seconds else 0.0,
        "engine_p99_ms_with_gui": latency_stats(with_gui)["p99"],
        "engine_p99_ms_without_gui": latency_stats(without_gui)["p99"],
        "engine_p50_ms_with_gui": latency_stats(with_gui)["p50"],
        "engine_p50_ms_without_gui": latency_stats(without_gui)["p50"],
        "stages_p99_ms_with_gui": _stages_p99(times, stages, rounds_done, "with"),
        "stages_p99_ms_without_gui": _stages_p99(times, stages, rounds_done, "without"),
        "decisions_with_gui": len(with_gui),
        "decisions_without_gui": len(without_gui),
        "console_cpu_percent": float(np.mean([r["cpu_percent"] for r in rounds_done])),
        "rounds": [_round_summary(r, times, latency) for r in rounds_done],
        "config": {
            "channels": 64,
            "srate": 1000.0,
            "eeg_window_s": EEG_WINDOW_S,
            "rounds": rounds,
            "part_s": PART_S,
            "display": os.environ.get("DISPLAY") or "offscreen",
        },
        "date": datetime.now().isoformat(timespec="seconds"),
        "machine": machine_info(),
    }
    json_path.write_text(json.dumps(result, indent=2))
    _plot(result, times, latency, rounds_done, json_path.with_suffix(".png"))
    return result


def _alternate(engine, overrides: list[str], rounds: int, tmp: Path, ended: threading.Event,
               out: list[dict]) -> None:  # fmt: skip
    """Once the closed loop writes: ``rounds`` times, the console on, then off (runs in a
    thread beside the session; stops its console if the session ends first)."""
    import pylsl

    while not engine.record.latency_times:
        if ended.wait(0.05):
            return
    env = {**os.environ}
    if not env.get("DISPLAY"):
        env.setdefault("QT_QPA_PLATFORM", "offscreen")
    for index in range(rounds):
        frames_json = tmp / f"window-{index}.json"
        window = subprocess.Popen([sys.executable, "-m", "gui.bench", str(frames_json),
                                   *overrides], env=env)  # fmt: skip
        try:
            if ended.wait(WARMUP_S):
                return
            with_part = (pylsl.local_clock(), None)
            if ended.wait(PART_S):
                return
            with_part = (with_part[0], pylsl.local_clock())
        finally:
            window.terminate()  # it writes its frame counts as it closes
            window.wait(30)
        counts = json.loads(frames_json.read_text()) if frames_json.exists() else {}
        if ended.wait(SETTLE_S):
            return
        start = pylsl.local_clock()
        if ended.wait(PART_S):
            return
        out.append({"with": with_part, "without": (start, pylsl.local_clock()),
                    "frames": _frames_between(counts.get("frames", []), *with_part),
                    "cpu_percent": counts.get("cpu_percent", float("nan"))})  # fmt: skip


def _frames_between(samples: list, start: float, stop: float) -> int:
    """Frames drawn between two clock readings, from (clock, frames so far) samples."""
    inside = [frames for clock, frames in samples if start <= clock <= stop]
    return inside[-1] - inside[0] if len(inside) > 1 else 0


def _pooled(times: np.ndarray, latency: np.ndarray, rounds: list[dict], part: str) -> np.ndarray:
    """The latencies of the decisions written during every round's ``part``."""
    keep = np.zeros(times.shape, dtype=bool)
    for r in rounds:
        start, stop = r[part]
        keep |= (times >= start) & (times < stop)
    return latency[keep]


def _stages_p99(times: np.ndarray, stages: np.ndarray, rounds: list[dict], part: str) -> dict:
    """p99 of each latency stage (``LATENCY_CHANNELS``) during every round's ``part``, ms."""
    from bci.streams import LATENCY_CHANNELS

    return {
        name: float(np.percentile(_pooled(times, stages[:, i], rounds, part), 99))
        for i, name in enumerate(LATENCY_CHANNELS[:-1])
    }


def _round_summary(r: dict, times: np.ndarray, latency: np.ndarray) -> dict:
    from bci.engine.summary import latency_stats

    return {
        "with": r["with"],
        "without": r["without"],
        "fps": r["frames"] / (r["with"][1] - r["with"][0]),
        "engine_p99_ms_with_gui": latency_stats(_pooled(times, latency, [r], "with"))["p99"],
        "engine_p99_ms_without_gui": latency_stats(_pooled(times, latency, [r], "without"))["p99"],
        "console_cpu_percent": r["cpu_percent"],
    }


def _plot(result: dict, times: np.ndarray, latency: np.ndarray, rounds: list[dict],
          path: Path) -> None:  # fmt: skip
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(11, 6.5))
    grid = fig.add_gridspec(2, 3)
    ax_fps, ax_lat, ax_time = (
        fig.add_subplot(grid[0, 0]),
        fig.add_subplot(grid[0, 1:]),
        (fig.add_subplot(grid[1, :])),
    )
    ax_fps.bar(["console"], [result["fps"]], color="tab:blue")
    ax_fps.axhline(30, color="red", ls="--", label="30 fps")
    ax_fps.set(ylabel="frames per second", title="64 ch · 1 kHz, 10 s window")
    ax_fps.legend()
    labels = ["p50", "p99"]
    without = [result["engine_p50_ms_without_gui"], result["engine_p99_ms_without_gui"]]
    with_gui = [result["engine_p50_ms_with_gui"], result["engine_p99_ms_with_gui"]]
    x = np.arange(len(labels))
    ax_lat.bar(x - 0.2, without, 0.4, label="without console")
    ax_lat.bar(x + 0.2, with_gui, 0.4, label="with console")
    ax_lat.set_xticks(x, labels)
    ax_lat.set(ylabel="engine latency, ms", title="newest sample → stimulator write")
    ax_lat.legend()
    if len(times):
        t0 = times[0]
        ax_time.plot(times - t0, latency, ",", color="black")
        for i, r in enumerate(rounds):
            ax_time.axvspan(r["with"][0] - t0, r["with"][1] - t0, color="tab:orange", alpha=0.3,
                            label="measured with console" if i == 0 else None)  # fmt: skip
            ax_time.axvspan(r["without"][0] - t0, r["without"][1] - t0, color="tab:blue",
                            alpha=0.3, label="measured without" if i == 0 else None)  # fmt: skip
        ax_time.set_ylim(0, max(3 * result["engine_p99_ms_with_gui"], 1.0))
        ax_time.legend(loc="upper right")
    ax_time.set(xlabel="closed-loop time, s", ylabel="latency, ms",
                title="every decision (console on in the orange parts)")  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _window_main(out: str, overrides: list[str]) -> None:
    """The console with the benchmark's protocol (the demo with ``overrides``), watching its
    session until SIGTERM; writes (clock, frames) every 200 ms and its CPU use to ``out``."""
    import signal

    import pylsl
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from gui.main_window import MainWindow, yield_cpu_to_the_engine

    app = QApplication(sys.argv[:1])
    yield_cpu_to_the_engine()  # as `bci gui` does
    window = MainWindow()
    window.resize(1600, 1000)
    window.show()
    window.session.overrides = overrides
    if not window.session.load("demo"):  # the decoder and stimulation views follow it
        raise SystemExit(f"the benchmark's protocol is invalid: {window.session.problems()}")
    window.watch(window.session.protocol.session.prefix)
    samples: list[tuple[float, int]] = []
    cpu_start, wall_start = time.process_time(), time.monotonic()

    def finish(*_) -> None:
        cpu = (time.process_time() - cpu_start) / (time.monotonic() - wall_start) * 100
        Path(out).write_text(json.dumps({"frames": samples, "cpu_percent": cpu}))
        app.quit()

    signal.signal(signal.SIGTERM, finish)

    # the sampling timer also lets Python see SIGTERM between Qt's events
    def sample() -> None:
        samples.append((pylsl.local_clock(), window.frames))

    QTimer(window, interval=200, timeout=sample).start()
    app.exec()
    window.close()


if __name__ == "__main__":
    _window_main(sys.argv[1], sys.argv[2:])
