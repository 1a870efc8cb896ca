"""``bci bench replay``: record a closed-loop session, replay it offline, and measure how fast
and how exactly the decoder outputs and stimulation commands come back."""

from __future__ import annotations

import json
import tempfile
import uuid
from datetime import datetime
from pathlib import Path

from bci.bench import machine_info
from bci.bench.latency import bench_overrides
from bci.engine.session import run_session
from bci.protocol import load_protocol
from bci.replay.offline import replay_offline
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
    offline = replay_offline(xdf)
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
    _plot(xdf, prefix, result, json_path.with_suffix(".png"))
    return result


def _plot(xdf: Path, prefix: str, result: dict, path: Path) -> None:
    """Recorded decoder output and stimulation amplitude over the session, with the figures."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bci.replay import load_recording

    recording = load_recording(xdf)
    names = stream_names(prefix)
    decoder, stim = recording.find(name=names["decoder"]), recording.find(name=names["stim"])
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    start = recording.stream(name=names["eeg"]).timestamps[0]
    if decoder is not None and decoder.n_samples:
        ax1.plot(decoder.timestamps - start, decoder.data[:, 1], lw=0.8, label="p(right)")
    ax1.set(ylabel="decoder output", title="Recorded session, replayed offline")
    if stim is not None and stim.n_samples:
        amplitude = stim.data[:, STIM_CHANNELS.index("amplitude")]
        ax2.step(stim.timestamps - start, amplitude, where="post", lw=0.8)
    ax2.set(xlabel="session time, s", ylabel="tDCS, mA")
    off = result["offline"]
    text = (f"offline replay: {off['realtime_factor']:.0f}× real time, "
            f"{off['n_decisions']} decisions\n"
            f"decoder max |Δ| {off['decoder_max_abs_diff']:.2g}, "
            f"stimulation max |Δ| {off['stim_max_abs_diff']:.2g} "
            f"({off['n_commands']} of {off['recorded_commands']} commands)")  # fmt: skip
    ax1.text(0.01, 0.97, text, transform=ax1.transAxes, va="top", fontsize=9,
             bbox={"facecolor": "white", "alpha": 0.8})  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
