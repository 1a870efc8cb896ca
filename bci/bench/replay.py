"""``bci bench replay``: record a closed-loop session, replay it offline, and measure how fast
and how exactly the decoder outputs and stimulation commands come back."""

from __future__ import annotations

import json
import tempfile
import uuid
from datetime import datetime
from pathlib import Path

import numpy as np

from bci.bench import machine_info
from bci.bench.latency import bench_overrides
from bci.engine.session import run_session
from bci.protocol import load_protocol
from bci.replay.offline import replay_with_run
from bci.streams import STIM_CHANNELS, stream_names


def replay_bench_overrides(prefix: str, seconds: float) -> list[str]:
    """The latency benchmark's session (64 ch · 500 Hz, tangent-space decoder), recorded, at
    the demo's decision hop (0.1 s) and source chunking (10 ms)."""
    overrides = bench_overrides(prefix, seconds, 64, 500.0, 0.01)
    keep = ("recording.enabled", "preprocessing.hop_s")
    return [o for o in overrides if not o.startswith(keep)] + ["recording.enabled=true"]


def run_replay_bench(json_path: Path, seconds: float = 120.0) -> dict:
    """Run the benchmark; writes ``json_path`` and a PNG beside it, and keeps the session's
    folder (its XDF, model and summary) beside them."""
    json_path = Path(json_path)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    protocol, text = load_protocol("demo", replay_bench_overrides(prefix, seconds))
    out = Path(tempfile.mkdtemp(prefix=f"{json_path.stem}-session-", dir=json_path.parent))
    summary, _ = run_session(protocol, "bench-replay", text, out)
    xdf = out / protocol.recording.filename
    offline, run = replay_with_run(xdf)
    result = {
        "offline": offline,
        "session": {
            "folder": str(out),
            "duration_s": summary["duration_s"],
            "decisions": summary["decoder"].get("decisions"),
            "latency_ms": summary["latency_ms"],
        },
        "config": {
            "channels": 64,
            "srate": 500.0,
            "closed_loop_s": seconds,
            "decoder": "riemann (tangent space + logistic regression)",
            "hop_s": protocol.preprocessing.hop_s,
            "picks": list(protocol.preprocessing.picks),
        },
        "machine": machine_info(),
        "date": datetime.now().isoformat(timespec="seconds"),
    }
    json_path.write_text(json.dumps(result, indent=2, default=float))
    _plot(xdf, prefix, result, run, json_path.with_suffix(".png"))
    return result


def _plot(xdf: Path, prefix: str, result: dict, run, path: Path) -> None:
    """Recorded and replayed decoder output and stimulation amplitude, and their differences."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bci.replay import load_recording

    recording = load_recording(xdf)
    names = stream_names(prefix)
    decoder, stim = recording.stream(name=names["decoder"]), recording.stream(name=names["stim"])
    start = recording.stream(name=names["eeg"]).timestamps[0]
    fig, (ax1, ax2, ax3) = plt.subplots(3, 1, figsize=(10, 8), sharex=True)
    target = list(run.protocol.decoder.classes).index(run.protocol.controller.target_class)
    ax1.plot(decoder.timestamps - start, decoder.data[:, target], lw=1.5, label="recorded")
    ax1.plot(run.decision_times - start, run.outputs[:, target], "--", lw=1, label="replayed")
    ax1.set(ylabel=f"p({run.protocol.controller.target_class})",
            title="A recorded session replayed offline through the same stages")  # fmt: skip
    ax1.legend(loc="lower left")
    column = {name: i for i, name in enumerate(STIM_CHANNELS)}
    when = stim.data[:, column["sample_time"]] - start
    mine = np.array([c[0] for c in run.commands])
    ax2.step(when, stim.data[:, column["amplitude"]], where="post", lw=1.5, label="recorded")
    ax2.step([c[3] - start for c in run.commands], mine, "--", where="post", lw=1,
             label="replayed")  # fmt: skip
    ax2.set(ylabel="tDCS, mA")
    ax2.legend(loc="upper left")
    floor = 1e-18  # exact agreement drawn at the bottom of the log axis
    ax3.semilogy(run.decision_times - start,
                 np.abs(decoder.data[:, target] - run.outputs[:, target]) + floor, ".",
                 ms=3, label="decoder |Δ|")  # fmt: skip
    if len(mine) == len(when):
        ax3.semilogy(when, np.abs(stim.data[:, column["amplitude"]] - mine) + floor, "x", ms=3,
                     label="stimulation |Δ|")  # fmt: skip
    ax3.axhline(1e-6, color="red", lw=0.8, label="1e-6")
    ax3.set(xlabel="session time (newest sample of each decision), s", ylabel="|Δ|")
    ax3.legend(loc="upper left", fontsize=8)
    off = result["offline"]
    text = (f"{off['realtime_factor']:.0f}× real time, {off['n_decisions']} decisions, "
            f"{off['n_commands']} of {off['recorded_commands']} commands\n"
            f"decoder max |Δ| {off['decoder_max_abs_diff']:.2g}, "
            f"stimulation max |Δ| {off['stim_max_abs_diff']:.2g}")  # fmt: skip
    ax3.text(0.99, 0.95, text, transform=ax3.transAxes, va="top", ha="right", fontsize=9,
             bbox={"facecolor": "white", "alpha": 0.8})  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
