"""``bci bench throughput``: the largest channels × rate the engine sustains with decoding and not
one dropped sample, then that configuration held for minutes while the engine's memory is
sampled.

Each step is a session of :func:`bci.bench.latency.bench_overrides` (the demo protocol without
fNIRS or recording, a short calibration, the tangent-space decoder deciding every 10 ms; the
virtual subject pushes 10 ms chunks) at one channels × rate. A step
is *sustained* when the engine's inlet saw every sample (no gap, no dropped sample, the count
matching the stream's span), no watchdog tripped and decisions kept up (latency p99 under
:data:`KEEPS_UP_MS`: an engine that falls behind has a backlog that grows without bound). A step
that is not sustained runs once more (one stall of a shared machine is not the engine's limit);
the ladder stops at a step that fails twice, and the JSON keeps both attempts.
"""

from __future__ import annotations

import json
import tempfile
import threading
import uuid
from datetime import datetime
from pathlib import Path

import numpy as np
import psutil
import pylsl
from tqdm import tqdm

from bci.bench import machine_info

LADDER = ((64, 1000.0), (128, 1000.0), (128, 2000.0), (256, 1000.0), (256, 2000.0))
"""Channels × rate, in order of load; the ladder stops at the first step not sustained twice."""
KEEPS_UP_MS = 100.0
"""Latency p99 above this means decisions fall behind the stream."""
CHUNK_S = 0.01
"""The virtual amplifier's push interval."""
CALIBRATION_TRIALS = 8
"""Calibration trials before each step's closed loop (the decoder needs a fit)."""
WARMUP_S = 60.0
"""Memory growth is counted from this far into the held closed loop (buffers are full)."""
MEMORY_SESSION_MIN, MEMORY_HOP_S = 30.0, 0.003
"""The memory run: a 30-minute session's decisions (100 a second), made ``ACCELERATION``
times faster (64 ch · 1 kHz in 1 ms chunks, a decision every 3 ms: whole samples, as the
engine decides on samples) so that it takes 9 minutes. What a session keeps grows with its
decisions (latency rows, commands, probabilities); buffers do not. The engine decides at most
once per pulled chunk, so a machine that cannot keep up makes fewer: the result scales the
growth to a full session's decisions."""
SESSION_DECISIONS_PER_S = 100.0
"""Decisions a second of the session the memory run stands for (a 10 ms hop)."""
ACCELERATION = 1.0 / (MEMORY_HOP_S * SESSION_DECISIONS_PER_S)
"""How much faster the memory run decides than the session it stands for (10/3)."""
MEMORY_WARMUP_S = 30.0
"""Growth of the memory run is counted from this far into its closed loop."""


def run_throughput_bench(json_path: Path, step_s: float = 60.0, hold_minutes: float = 10.0,
                         ladder=LADDER,
                         memory_minutes: float = MEMORY_SESSION_MIN,
                         calibration_trials: int = CALIBRATION_TRIALS) -> dict:  # fmt: skip
    """Climb ``ladder`` (``step_s`` of closed loop each), hold the largest sustained step for
    ``hold_minutes``, then run ``memory_minutes`` of decisions accelerated (0: skip); writes
    ``json_path`` and a PNG beside it."""
    json_path = Path(json_path)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    steps = []
    for channels, srate in tqdm(ladder, desc="ladder", unit="step"):
        first = None
        for _ in range(2):  # a step not sustained runs once more; its first attempt is kept
            step = _isolated(channels, srate, step_s, calibration_trials=calibration_trials)
            if first is not None:
                step["first_attempt"] = first
            if step["sustained"]:
                break
            first = step
        steps.append(step)
        if not step["sustained"]:
            break
    passed = [s for s in steps if s["sustained"]]
    hold = None
    if passed and hold_minutes > 0:
        best = passed[-1]
        hold = _isolated(best["channels"], best["srate"], hold_minutes * 60.0, sample_memory=True,
                         calibration_trials=calibration_trials)  # fmt: skip
    memory = None
    if memory_minutes > 0:
        seconds = memory_minutes * 60.0 / ACCELERATION
        memory = _isolated(64, 1000.0, seconds, sample_memory=True, hop_s=MEMORY_HOP_S,
                           warmup_s=min(MEMORY_WARMUP_S, seconds / 4), chunk_s=0.001,
                           calibration_trials=calibration_trials)  # fmt: skip
        wanted = memory_minutes * 60 * SESSION_DECISIONS_PER_S
        mem = memory["memory_mb"]
        counted = memory["latency_ms"]["n"] * mem.get("over_s", np.nan) / seconds
        memory |= {"session_minutes_equivalent": memory_minutes, "acceleration": ACCELERATION,
                   "session_decisions": wanted,
                   "growth_per_session_mb": mem["growth"] * wanted / counted}  # fmt: skip
    largest = {"channels": passed[-1]["channels"], "srate": passed[-1]["srate"]} if passed else None
    config = {"step_s": step_s, "hold_minutes": hold_minutes, "source_chunk_s": CHUNK_S,
              "decoder": "riemann, decision every 10 ms", "keeps_up_ms": KEEPS_UP_MS}  # fmt: skip
    result = {
        "largest_sustained": largest,
        "hold": hold,
        "memory_session": memory,
        "steps": steps,
        "config": config,
        "machine": machine_info(),
        "date": datetime.now().isoformat(timespec="seconds"),
    }
    json_path.write_text(json.dumps(result, indent=2))
    _plot(result, json_path.with_suffix(".png"))
    return result


def _isolated(*args, **kwargs) -> dict:
    """:func:`_step` in a fresh process: its memory is the session's alone (an earlier step's
    inlet buffer, up to ~0.7 GB at 256 ch · 2 kHz, is freed whenever its inlet is collected),
    and no step inherits another's threads."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        return pool.submit(_step, *args, **kwargs).result()


def _step(channels: int, srate: float, seconds: float, sample_memory: bool = False,
          hop_s: float = 0.01, warmup_s: float = WARMUP_S, chunk_s: float = CHUNK_S,
          calibration_trials: int = CALIBRATION_TRIALS) -> dict:  # fmt: skip
    """One session at ``channels`` × ``srate`` with ``seconds`` of closed loop, a decision every
    ``hop_s``; with ``sample_memory`` the engine's RSS growth from ``warmup_s`` on."""
    from bci.bench.latency import bench_overrides
    from bci.engine.session import run_session
    from bci.protocol import load_protocol

    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    overrides = bench_overrides(prefix, seconds, channels, srate, chunk_s, calibration_trials)
    overrides += [f"preprocessing.hop_s={hop_s}", "control.address=tcp://127.0.0.1:0"]
    protocol, text = load_protocol("demo", overrides)
    memory: list[tuple[float, float]] = []
    done = threading.Event()
    process = psutil.Process()

    def sample(engine) -> None:  # RSS once a second over the closed loop, from its first decision
        while not engine.record.latency_times:
            if done.wait(0.1):
                return
        start = engine.record.latency_times[0]
        while not done.wait(1.0) and getattr(engine.block, "kind", None) == "closed_loop":
            memory.append((pylsl.local_clock() - start, process.memory_info().rss / 2**20))

    def on_engine(engine) -> None:
        if sample_memory:
            threading.Thread(target=sample, args=(engine,), daemon=True).start()

    process.cpu_percent()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            summary, record = run_session(protocol, "bench-throughput", text, Path(tmp),
                                          progress=False, on_engine=on_engine)  # fmt: skip
    finally:
        done.set()
    eeg = summary["streams"][f"{prefix}-EEG"]
    trips = [e for e in record.events if e["kind"] == "watchdog" and e.get("action") == "trip"]
    latency = summary["latency_ms"]
    step = {
        "channels": channels,
        "srate": srate,
        "closed_loop_s": seconds,
        "hop_s": hop_s,
        "samples": eeg["samples"],
        "dropped": eeg["dropped"],
        "gaps": eeg["gaps"],
        "srate_measured": eeg["srate_measured"],
        "watchdog_trips": len(trips),
        "latency_ms": {key: latency[key] for key in ("p50", "p99", "max", "n")},
        "cpu_percent": process.cpu_percent(),
    }
    step["sustained"] = bool(
        step["dropped"] == 0 and step["gaps"] == 0 and not trips
        and latency["n"] > 0 and latency["p99"] < KEEPS_UP_MS
    )  # fmt: skip
    if sample_memory:
        step["memory_mb"] = _growth(memory, warmup_s)
    return step


def _growth(memory: list[tuple[float, float]], warmup_s: float = WARMUP_S) -> dict:
    """RSS growth from ``warmup_s`` into the closed loop to its end, and the samples."""
    after = [(t, rss) for t, rss in memory if t >= warmup_s]
    if len(after) < 2:
        return {"growth": float("nan"), "per_hour": float("nan"), "samples": memory}
    (t0, first), (t1, last) = after[0], after[-1]
    slope = np.polyfit([t for t, _ in after], [rss for _, rss in after], 1)[0]
    return {"start": first, "end": last, "growth": last - first,
            "per_hour": float(slope * 3600), "over_s": t1 - t0, "samples": memory}  # fmt: skip


def _plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_steps, ax_mem) = plt.subplots(1, 2, figsize=(12, 4.5), constrained_layout=True)
    steps = result["steps"]
    labels = [f"{s['channels']} ch\n{s['srate'] / 1000:g} kHz" for s in steps]
    colours = ["tab:green" if s["sustained"] else "tab:red" for s in steps]
    ax_steps.bar(labels, [s["latency_ms"]["p99"] for s in steps], color=colours)
    for i, s in enumerate(steps):
        text = f"{s['dropped']} dropped\n{s['watchdog_trips']} trips"
        ax_steps.annotate(text, (i, s["latency_ms"]["p99"]), ha="center", va="bottom", fontsize=8)
    ax_steps.set(ylabel="latency p99, ms", yscale="log",
                 title="Ladder (green: sustained, no sample dropped)")  # fmt: skip
    runs = [(result["hold"], "held"), (result.get("memory_session"), "accelerated")]
    titles = []
    for run, label in runs:
        if not run or not run.get("memory_mb", {}).get("samples"):
            continue
        t, rss = zip(*run["memory_mb"]["samples"], strict=True)
        name = f"{label}: {run['channels']} ch · {run['srate'] / 1000:g} kHz, decision every " \
               f"{run['hop_s'] * 1e3:.3g} ms"  # fmt: skip
        ax_mem.plot(np.array(t) / 60, rss, label=name)
        titles.append(f"{label} {run['memory_mb']['growth']:+.1f} MB")
    if titles:
        ax_mem.legend(fontsize=8)
    ax_mem.set_title("Engine memory: " + (", ".join(titles) or "no run"))
    ax_mem.set(xlabel="closed-loop minutes", ylabel="RSS, MB")
    fig.savefig(path, dpi=110)
    plt.close(fig)
