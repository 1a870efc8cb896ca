"""``bci bench stim``: the phase-locked path end to end (newest sample → serial write of each
pulse, and each pulse's phase against the offline zero-phase truth), the phase estimators'
offline accuracy on virtual subjects, and the governor's cost per command."""

from __future__ import annotations

import json
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

import numpy as np
from tqdm import tqdm

from bci.bench import machine_info
from bci.bench.phase_accuracy import (
    circular_error,
    evaluate_phase_accuracy,
    recorded_pulse_phases,
)
from bci.engine.session import run_session
from bci.engine.summary import latency_stats
from bci.protocol import Protocol, load_protocol
from bci.safety.governor import Governor, GovernorSettings

ACCURACY_SEEDS = (0, 1, 2, 3, 4)
"""Virtual subjects of the offline phase-accuracy runs."""


def governor_cost_us(n: int = 100_000, seed: int = 0) -> np.ndarray:
    """Time of each of ``n`` governed requests (random, NaN-free amplitudes at 100 Hz), µs."""
    rng = np.random.default_rng(seed)
    governor = Governor(GovernorSettings("tdcs", 2.0, 1.0, max_step_s=0.015))
    requests = rng.uniform(-3, 3, n).tolist()
    cost = np.empty(n)
    clock = time.perf_counter_ns
    for i, amplitude in enumerate(requests):
        t0 = clock()
        governor.request(amplitude, i * 0.01)
        cost[i] = clock() - t0
    return cost / 1e3


def _live_run(seconds: float, out_dir: Path) -> tuple[dict, object, Protocol, dict]:
    """mu_trough_tms on the virtual subject against the Magstim emulator."""
    from devices.emulators.magstim import MagstimEmulator

    with MagstimEmulator() as emulator:
        overrides = [
            f"session.prefix=bench-{uuid.uuid4().hex[:8]}",
            "session.participant=bench-emulator",  # the dose ledger's; nobody is stimulated
            f"stimulator.port={emulator.port}",
            "control.address=tcp://127.0.0.1:0",
            # the truth is read from the recorded EEG: keep it free of TMS artifacts and TEPs
            # rather than bridging them
            "source.listen=false",
            f"blocks.1.duration_s={seconds}",
            "blocks.2.duration_s=1",
        ]
        protocol, text = load_protocol("mu_trough_tms", overrides)
        summary, record = run_session(protocol, "bench-stim", text, out_dir)
        device = {
            "pulses_fired": len(emulator.fire_times),
            "auto_disarms": len(emulator.events_of("auto-disarm")),
            "armed_at_end": emulator.armed,
            "remote_at_end": emulator.remote,
        }
    return summary, record, protocol, device


def run_stim_bench(json_path: Path, seconds: float = 60.0) -> dict:
    """Run the benchmark; writes ``json_path`` and a PNG beside it."""
    json_path = Path(json_path)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        summary, record, protocol, device = _live_run(seconds, Path(tmp))
        phases = recorded_pulse_phases(Path(summary["recording"]["path"]), protocol)
    error, plv = circular_error(phases, protocol.controller.target_deg)
    live = {"mean_error_deg": error, "plv": plv, "n_triggers": int(phases.size)}
    offline = {}
    runs = [(method, seed) for method in ("echt", "ar") for seed in ACCURACY_SEEDS]
    for method, seed in tqdm(runs, desc="offline phase accuracy"):
        offline[f"{method}/seed{seed}"] = evaluate_phase_accuracy(
            seed=seed, method=method, power_percentile=protocol.controller.power_percentile
        )
    accuracy = {"live_echt_magstim": live}
    for method in ("echt", "ar"):
        rows = [offline[f"{method}/seed{seed}"] for seed in ACCURACY_SEEDS]
        accuracy[f"offline_{method}"] = {
            "mean_error_deg": float(np.mean([r["mean_error_deg"] for r in rows])),
            "plv": float(np.mean([r["plv"] for r in rows])),
            "n_triggers": int(sum(r["n_triggers"] for r in rows)),
        }
    cost = governor_cost_us()
    result = {
        "phase_path_latency_ms": latency_stats(record.pulse_latency_ms),
        "phase_accuracy": accuracy,
        "phase_accuracy_per_subject": {
            key: {k: row[k] for k in ("mean_error_deg", "plv", "n_triggers")}
            for key, row in offline.items()
        },
        "governor_us_per_command": {**latency_stats(cost), "mean": float(cost.mean())},
        "device": device,
        "decision_latency_ms": summary["latency_ms"],
        "config": {
            "protocol": "mu_trough_tms",
            "closed_loop_s": seconds,
            "target_deg": 180.0,
            "method": protocol.controller.method,
            "band_hz": list(protocol.controller.band_hz),
            "channels": protocol.source.eeg_channels,
            "srate": protocol.source.eeg_srate,
            "source_chunk_s": protocol.source.chunk_s,
            "stimulator": "Magstim emulator (pty)",
        },
        "machine": machine_info(),
        "date": datetime.now().isoformat(timespec="seconds"),
    }
    json_path.write_text(json.dumps(result, indent=2))
    _plot(result, record.pulse_latency_ms, phases, cost, json_path.with_suffix(".png"))
    return result


def _plot(result: dict, latency_ms, phases_deg, cost_us, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(12, 8), constrained_layout=True)
    ax = fig.add_subplot(2, 2, 1)
    lat = result["phase_path_latency_ms"]
    ax.hist(latency_ms, bins=40, color="tab:blue")
    for key, style in (("p50", "--"), ("p99", ":")):
        ax.axvline(lat[key], color="k", ls=style, label=f"{key} {lat[key]:.3f} ms")
    ax.set(title=f"Phase-locked path: newest sample → Magstim serial write ({lat['n']} pulses)",
           xlabel="ms", ylabel="pulses")  # fmt: skip
    ax.legend()
    polar = fig.add_subplot(2, 2, 2, projection="polar")
    live = result["phase_accuracy"]["live_echt_magstim"]
    polar.hist(np.deg2rad(phases_deg), bins=36, color="tab:purple")
    polar.set_title(f"Live pulse phases (target 180° = trough)\nmean error "
                    f"{live['mean_error_deg']:+.1f}°, PLV {live['plv']:.2f}")  # fmt: skip
    ax = fig.add_subplot(2, 2, 3)
    keys = list(result["phase_accuracy_per_subject"])
    rows = result["phase_accuracy_per_subject"]
    ax.bar(range(len(keys)), [rows[k]["plv"] for k in keys],
           color=["tab:green" if k.startswith("echt") else "tab:orange" for k in keys])  # fmt: skip
    for i, key in enumerate(keys):
        ax.text(i, 0.02, f"{rows[key]['mean_error_deg']:+.0f}°", ha="center", rotation=90)
    ax.axhline(0.7, color="r", ls="--", label="PLV target 0.7")
    ax.set(xticks=range(len(keys)), ylim=(0, 1), ylabel="PLV",
           title="Offline phase accuracy per virtual subject (text: mean error)")  # fmt: skip
    ax.set_xticklabels(keys, rotation=45, ha="right", fontsize=8)
    ax.legend()
    ax = fig.add_subplot(2, 2, 4)
    gov = result["governor_us_per_command"]
    ax.hist(np.clip(cost_us, 0, np.percentile(cost_us, 99.9)), bins=80, color="tab:grey")
    ax.set(title=f"Governor cost per command: p50 {gov['p50']:.2f} µs, p99 {gov['p99']:.2f} µs",
           xlabel="µs", ylabel="commands", yscale="log")  # fmt: skip
    fig.savefig(path, dpi=90)
    plt.close(fig)
