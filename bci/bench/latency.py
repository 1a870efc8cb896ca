"""``bci bench latency``: newest-sample → stimulator-write latency of the live engine."""

from __future__ import annotations

import json
import tempfile
import uuid
from datetime import datetime
from pathlib import Path

import numpy as np
import psutil

from bci.bench import machine_info
from bci.engine.session import run_session
from bci.protocol import load_protocol


def bench_overrides(prefix: str, seconds: float, channels: int, srate: float,
                    chunk_s: float, calibration_trials: int = 16) -> list[str]:  # fmt: skip
    """The demo protocol turned into the benchmark: no fNIRS, no recording, a short calibration,
    the tangent-space decoder, a decision every 10 ms for ``seconds``."""
    return [
        f"session.prefix={prefix}",
        f"source.eeg_channels={channels}",
        f"source.eeg_srate={srate}",
        "source.fnirs=false",
        f"source.chunk_s={chunk_s}",
        "recording.enabled=false",
        "decoder.kind=riemann",  # the demo's EEGNet was pretrained for 32 ch at 500 Hz
        "decoder.model=",
        "controller.abstain_below=0",
        "preprocessing.hop_s=0.01",
        "blocks.0.duration_s=2",
        f"blocks.1.trials={calibration_trials}",
        "blocks.1.cue_s=2.5",
        "blocks.1.iti_s=[0.5, 0.5]",
        f"blocks.3.duration_s={seconds}",
        "blocks.4.duration_s=0.5",
    ]


def run_latency_bench(json_path: Path, seconds: float = 60.0, channels: int = 64,
                      srate: float = 1000.0, chunk_s: float = 0.001,
                      calibration_trials: int = 16) -> dict:  # fmt: skip
    """Run the benchmark; writes ``json_path`` and a histogram PNG beside it."""
    json_path = Path(json_path)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    overrides = bench_overrides(prefix, seconds, channels, srate, chunk_s, calibration_trials)
    protocol, text = load_protocol("demo", overrides)
    process = psutil.Process()
    process.cpu_percent()
    with tempfile.TemporaryDirectory() as tmp:
        summary, record = run_session(protocol, "bench-latency", text, Path(tmp))
    latencies = np.array([row[-1] for row in record.latency_ms])
    cpu = process.cpu_percent()
    result = {
        "neuroloop": {"riemann": summary["latency_ms"]},
        "config": {
            "channels": channels,
            "srate": srate,
            "seconds": seconds,
            "hop_s": 0.01,
            "source_chunk_s": chunk_s,
            "decoder": "riemann (tangent space + logistic regression)",
            "picks": list(protocol.preprocessing.picks),
        },
        "cpu_percent": {"engine": cpu},
        "machine": machine_info(),
        "date": datetime.now().isoformat(timespec="seconds"),
    }
    json_path.write_text(json.dumps(result, indent=2))
    _plot(latencies, result, json_path.with_suffix(".png"))
    return result


def _plot(latencies: np.ndarray, result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stats, cfg = result["neuroloop"]["riemann"], result["config"]
    fig, ax = plt.subplots(figsize=(8, 4.5), constrained_layout=True)
    ax.hist(latencies, bins=100, color="tab:blue")
    for key, style in (("p50", "--"), ("p99", ":")):
        ax.axvline(stats[key], color="k", ls=style, label=f"{key} {stats[key]:.3f} ms")
    ax.axvline(stats["max"], color="r", ls="-", lw=0.8, label=f"max {stats['max']:.3f} ms")
    ax.set(
        title=f"NeuroLoop latency, newest sample → stimulator write\n{cfg['channels']} ch · "
        f"{cfg['srate']:g} Hz in {cfg['source_chunk_s'] * 1e3:g} ms chunks, decision every "
        f"10 ms, {stats['n']} decisions",
        xlabel="ms",
        ylabel="decisions",
        yscale="log",
    )
    ax.legend()
    fig.savefig(path, dpi=100)
    plt.close(fig)
