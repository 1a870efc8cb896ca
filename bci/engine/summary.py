"""The session summary: ``summary.json`` figures and the ``summary.png`` a person looks at."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from bci.acquire import Inlet
from bci.engine.outlets import SessionOutlets
from bci.engine.record import EngineRecord
from bci.protocol import Protocol
from bci.safety.ceilings import HARD_CEILINGS
from bci.streams import LATENCY_CHANNELS


def latency_stats(values_ms) -> dict:
    """p50, p99, max and count of latencies in ms (NaN figures when there are none)."""
    values = np.asarray(values_ms, dtype=float)
    if values.size == 0:
        return {"p50": float("nan"), "p99": float("nan"), "max": float("nan"), "n": 0}
    p50, p99 = np.percentile(values, [50, 99])
    return {"p50": float(p50), "p99": float(p99), "max": float(values.max()), "n": int(values.size)}


def closed_loop_accuracy(record: EngineRecord, protocol: Protocol) -> tuple[float, int]:
    """Trial accuracy in closed-loop blocks: mean probability over the decisions whose window
    lies inside the imagery period, argmax against the cue. Trials without decisions (a stalled
    source) are not scored."""
    classes = list(protocol.decoder.classes)
    if not record.decisions:
        return float("nan"), 0
    rows = record.decisions.array()
    times, proba = rows[:, 0], rows[:, 1:]
    lead = protocol.decoder.epoch_tmin_s + protocol.preprocessing.window_s
    correct = scored = 0
    for onset, label, index in record.cues:
        block = protocol.blocks[index]
        if block.kind != "closed_loop":
            continue
        inside = (times >= onset + min(lead, block.cue_s)) & (times <= onset + block.cue_s)
        if not inside.any():
            continue
        scored += 1
        correct += classes[int(np.argmax(proba[inside].mean(axis=0)))] == label
    return (correct / scored if scored else float("nan")), scored


def stream_stats(inlet: Inlet) -> dict:
    """Samples, dropped samples (over gaps) and measured rate of an input stream."""
    return {
        "samples": int(inlet.n_samples),
        "dropped": int(inlet.n_missing),
        "gaps": len(inlet.gaps),
        "srate_nominal": inlet.sfreq,
        "srate_measured": inlet.srate_measured,
    }


def build_summary(protocol: Protocol, protocol_name: str, record: EngineRecord, eeg: Inlet,
                  nirs: Inlet | None, outlets: SessionOutlets, governor_state,
                  recording: dict | None) -> dict:  # fmt: skip
    """Everything ``summary.json`` holds."""
    duration = record.stop_time - record.start_time
    streams = {eeg.name: stream_stats(eeg)}
    if nirs is not None:
        streams[nirs.name] = stream_stats(nirs)
    for key, count in outlets.counts.items():
        streams[outlets.names[key]] = {
            "samples": count, "dropped": 0, "srate_measured": count / duration if duration else 0
        }  # fmt: skip
    accuracy, n_trials = closed_loop_accuracy(record, protocol)
    latency = record.latency_ms.array()
    amplitudes = np.abs(record.commands.column("amplitude"))
    kinds = Counter(event["kind"] for event in record.events)
    return {
        "protocol": protocol_name,
        "session": protocol.session.name,
        "duration_s": duration,
        "streams": streams,
        "decoder": {
            "kind": protocol.decoder.kind,
            "fit": record.fit.to_json() if record.fit else None,
            "closed_loop_accuracy": accuracy,
            "n_trials": n_trials,
            "n_decisions": len(record.decisions),
        },
        "latency_ms": {
            **latency_stats(latency[:, -1]),
            "stages_p99": {
                name: latency_stats(latency[:, i])["p99"]
                for i, name in enumerate(LATENCY_CHANNELS[:-1])
            },
        },
        "stimulation": {
            "modality": protocol.stimulator.modality,
            "commands": len(record.commands),
            "clamped": governor_state.n_clamped,
            "refused": governor_state.n_refused,
            "max_amplitude_ma": float(amplitudes.max(initial=0.0)),
            "charge_mC": governor_state.charge_mc,
            "on_time_s": governor_state.on_time_s,
            "limit_ma": protocol.stimulator.limits.max_amplitude,
            "unit": HARD_CEILINGS[protocol.stimulator.modality].unit,
            "controller": protocol.controller.kind,
            "stimulator": protocol.stimulator.kind,
            "pulses": int(record.commands.column("pulses").sum()),
            "pulses_approved": governor_state.n_pulses,
            "pulse_latency_ms": latency_stats(record.pulse_latency_ms),
            "estop": governor_state.estop,
            "dose_limit": governor_state.latched,
        },
        "events": dict(kinds),
        "gaps": [e for e in record.events if e["kind"] == "gap"],
        "blocks": [
            {
                "index": i,
                "kind": k,
                "start_s": a - record.start_time,
                "stop_s": b - record.start_time,
            }
            for i, k, a, b in record.blocks
        ],
        "recording": recording,
    }


def plot_summary(summary: dict, record: EngineRecord, protocol: Protocol, path: Path) -> None:
    """Latency histogram, decoder probability against the cues, stimulation over time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 1, figsize=(10, 10), constrained_layout=True)
    t0 = record.start_time
    lat = summary["latency_ms"]
    if record.latency_ms:
        axes[0].hist(record.latency_ms.array()[:, -1], bins=60, color="tab:blue")
        for key, style in (("p50", "--"), ("p99", ":")):
            axes[0].axvline(lat[key], color="k", ls=style, label=f"{key} {lat[key]:.2f} ms")
        axes[0].legend()
    axes[0].set(title="Newest sample → stimulator write latency", xlabel="ms", ylabel="decisions")

    if protocol.uses_decoder:
        _plot_decisions(axes[1], summary, record, protocol)
    else:
        _plot_biomarker(axes[1], record, protocol)
    if record.commands:
        commands = record.commands
        times = commands.column("write_time") - t0
        axes[2].step(times, commands.column("amplitude"), where="post")
        pulses = times[commands.column("pulses") > 0]
        if pulses.size:
            axes[2].plot(pulses, np.zeros(pulses.size), "|", color="k", ms=12, label="pulses")
    limit = protocol.stimulator.limits.max_amplitude
    stim = summary["stimulation"]
    axes[2].axhline(limit, color="r", ls="--", label=f"session limit {limit} {stim['unit']}")
    for event in record.events:
        if event["kind"] in ("stall", "gap"):
            axes[2].axvline(event["time"] - t0, color="m", lw=0.8)
        elif event["kind"] == "safety.estop":
            axes[2].axvline(event["time"] - t0, color="r", lw=2, label="emergency stop")
    axes[2].legend(loc="upper right")
    axes[2].set(
        title=f"{protocol.stimulator.modality} ({protocol.controller.kind}) — "
        f"{stim['commands']} commands, {stim['pulses']} pulses, charge {stim['charge_mC']:.1f} mC",
        xlabel="session time, s",
        ylabel=stim["unit"],
    )
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _plot_decisions(ax, summary: dict, record: EngineRecord, protocol: Protocol) -> None:
    t0 = record.start_time
    target = protocol.decoder.classes.index(protocol.controller.target_class) \
        if protocol.controller.kind == "proportional" else -1  # fmt: skip
    label = protocol.decoder.classes[target]
    colors = {"left": "tab:orange", "right": "tab:green"}
    for onset, cue, index in record.cues:
        if protocol.blocks[index].kind == "closed_loop":
            stop = onset + protocol.blocks[index].cue_s
            ax.axvspan(onset - t0, stop - t0, color=colors.get(cue, "grey"), alpha=0.25)
    if record.decisions:
        rows = record.decisions.array()  # time, then the probabilities
        ax.plot(rows[:, 0] - t0, rows[:, 1:][:, target], lw=0.8, color="k")
    dec = summary["decoder"]
    ax.set(
        title=f"Decoded p({label}) in closed loop — shaded: cues "
        f"(green right, orange left); trial accuracy {dec['closed_loop_accuracy']:.0%} "
        f"over {dec['n_trials']} trials",
        xlabel="session time, s",
        ylim=(0, 1),
    )


def _plot_biomarker(ax, record: EngineRecord, protocol: Protocol) -> None:
    t0 = record.start_time
    ctl = protocol.controller
    if record.biomarker:
        times, values = record.biomarker.array().T
        ax.plot(times - t0, values, lw=0.8, color="k")
        for name in ("lower", "upper", "p_low", "p_high"):
            if hasattr(ctl, name):
                ax.axhline(getattr(ctl, name), color="grey", ls=":", lw=1)
        ax.set(title="Biomarker: band power / baseline median (dotted: thresholds)",
               xlabel="session time, s")  # fmt: skip
    elif record.pulse_latency_ms:
        lat = latency_stats(record.pulse_latency_ms)
        ax.hist(record.pulse_latency_ms.array(), bins=40, color="tab:purple")
        ax.set(title=f"Phase-locked pulses: newest sample → write, p50 {lat['p50']:.2f} ms, "
               f"p99 {lat['p99']:.2f} ms (n={lat['n']})", xlabel="ms")  # fmt: skip
    else:
        ax.set(title=f"{ctl.kind}: no closed-loop readings")
