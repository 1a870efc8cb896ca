"""``bci bench latency``: newest-sample → stimulator-write latency of the live engine, and with
``--peers`` the same EEGNet loop built with the tools labs use today, in the same run.

Every run reads the virtual subject at 64 ch · 1 kHz pushed in 1 ms chunks (a per-sample
amplifier):

- ``neuroloop.cnn``: a session that fits EEGNet on a short calibration block, then decides every
  10 ms and drives the simulated stimulator;
- ``neuroloop.phase``: the phase-locked trigger path (``alpha_phase_tacs``: alpha-peak tACS
  restarts on the simulated stimulator, refractory shortened so there are enough pulses);
- ``peers.timeflux`` and ``peers.mnelsl`` (:mod:`bci.bench.peers`): the cnn run's fitted EEGNet,
  exported to TorchScript, behind the same preprocessing in a Timeflux graph and an MNE-LSL
  polling loop, each in its own process against a fresh virtual subject.

CPU is each loop's own work over the measured part only: the engine's process for NeuroLoop (not
the virtual subject it starts as a child), the peer's process and its children (Timeflux runs its
graph in a worker process) for a peer.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path

import numpy as np
import psutil
import pylsl
from tqdm import tqdm

from bci.bench import machine_info
from bci.engine.session import VirtualSubjectProcess, run_session, virtual_subject_command
from bci.engine.summary import latency_stats
from bci.protocol import Protocol, load_protocol
from bci.streams import stream_names

CHANNELS, SRATE, CHUNK_S = 64, 1000.0, 0.001
"""The stream every loop reads."""
PEERS = ("timeflux", "mnelsl")
PHASE_REFRACTORY_S = 0.2
"""The phase run's refractory period: about four restarts a second, for a p99 over hundreds."""


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


class CpuMeter:
    """Samples a process's CPU time (with its children's if ``children``) every ``every_s`` on
    the LSL clock, so the CPU of any interval (a closed-loop block) can be read afterwards."""

    def __init__(self, pid: int, children: bool, every_s: float = 0.25) -> None:
        self._process = psutil.Process(pid)
        self._children = children
        self._samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(every_s,), daemon=True)

    def __enter__(self) -> CpuMeter:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _cpu_s(self) -> float:
        total = 0.0
        children = self._process.children(recursive=True) if self._children else []
        for process in [self._process, *children]:
            try:
                times = process.cpu_times()
            except psutil.Error:  # ended between listing and reading
                continue
            total += times.user + times.system
        return total

    def _run(self, every_s: float) -> None:
        while True:
            try:
                self._samples.append((pylsl.local_clock(), self._cpu_s()))
            except psutil.Error:  # the process ended
                return
            if self._stop.wait(every_s):
                return

    def percent(self, start: float, stop: float) -> float:
        """Mean CPU over [start, stop] (LSL clock), % of one core (NaN without two samples)."""
        inside = [(t, cpu) for t, cpu in self._samples if start <= t <= stop]
        if len(inside) < 2:
            return float("nan")
        (t0, c0), (t1, c1) = inside[0], inside[-1]
        return 100.0 * (c1 - c0) / (t1 - t0)


def _closed_loop_span(record) -> tuple[float, float]:
    (_, _, start, stop), = [b for b in record.blocks if b[1] == "closed_loop"]  # fmt: skip
    return start, stop


def _cnn_run(seconds: float, calibration_trials: int,
             out_dir: Path) -> tuple[dict, np.ndarray, float, Protocol, Path]:  # fmt: skip
    """EEGNet fitted on the calibration block, then a decision every 10 ms; returns its
    figures, its latencies, its CPU %, the protocol and the fitted model file."""
    overrides = bench_overrides(f"bench-{uuid.uuid4().hex[:8]}", seconds, CHANNELS, SRATE,
                                CHUNK_S, calibration_trials)  # fmt: skip
    overrides += [
        "decoder.kind=eegnet",
        "decoder.alignment=none",
        "control.address=tcp://127.0.0.1:0",
    ]
    protocol, text = load_protocol("demo", overrides)
    with CpuMeter(psutil.Process().pid, children=False) as cpu:  # not the subject's process
        summary, record = run_session(protocol, "bench-latency-cnn", text, out_dir,
                                      progress=False)  # fmt: skip
    model = out_dir / "model.npz"
    if not model.exists():
        raise RuntimeError(f"the cnn session kept no model ({model}); see {out_dir}")
    cpu_percent = cpu.percent(*_closed_loop_span(record))
    return summary["latency_ms"], record.latency_ms.array()[:, -1], cpu_percent, protocol, model


def _phase_run(seconds: float, out_dir: Path) -> tuple[dict, np.ndarray, float]:
    """The phase-locked trigger on alpha: newest sample → write of every tACS restart; returns
    its figures, its latencies and its CPU %."""
    overrides = [
        f"session.prefix=bench-{uuid.uuid4().hex[:8]}",
        f"source.eeg_channels={CHANNELS}",
        f"source.eeg_srate={SRATE}",
        "source.fnirs=false",
        f"source.chunk_s={CHUNK_S}",
        "recording.enabled=false",
        "control.address=tcp://127.0.0.1:0",
        f"controller.refractory_s={PHASE_REFRACTORY_S}",
        "controller.power_percentile=0",  # every alpha peak, not only the strong ones
        "blocks.0.duration_s=10",
        f"blocks.1.duration_s={seconds}",
        "blocks.2.duration_s=0.5",
    ]
    protocol, text = load_protocol("alpha_phase_tacs", overrides)
    with CpuMeter(psutil.Process().pid, children=False) as cpu:  # not the subject's process
        summary, record = run_session(protocol, "bench-latency-phase", text, out_dir,
                                      progress=False)  # fmt: skip
    cpu_percent = cpu.percent(*_closed_loop_span(record))
    return summary["stimulation"]["pulse_latency_ms"], record.pulse_latency_ms.array(), cpu_percent


def _peer_run(name: str, protocol: Protocol, model_pt: Path, seconds: float,
              out_dir: Path) -> tuple[dict, np.ndarray, float]:  # fmt: skip
    """One peer against a fresh virtual subject with the cnn run's stream settings; returns its
    figures, its latencies and its CPU %."""
    from bci.bench.peers import PeerSettings

    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    subject = protocol.model_copy(
        update={"session": protocol.session.model_copy(update={"prefix": prefix})}
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = PeerSettings.from_protocol(protocol, stream_names(prefix)["eeg"], str(model_pt),
                                          seconds=seconds, out=str(out_dir / "latency.json"))
    settings_path = settings.write(out_dir / "settings.json")
    with VirtualSubjectProcess(virtual_subject_command(subject), out_dir / "subject.log"):
        process = start_peer(name, settings_path, out_dir / "peer.log")
        try:
            with CpuMeter(process.pid, children=True) as cpu:  # Timeflux's graph worker
                limit = time.monotonic() + settings.warmup_s + seconds + 60.0
                while process.poll() is None and time.monotonic() < limit:
                    time.sleep(0.2)
        finally:
            _stop(process)
    if not Path(settings.out).exists():  # Timeflux exits 0 after an error too
        log = (out_dir / "peer.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"peer {name} failed (exit {process.returncode}):\n{log}")
    output = json.loads(Path(settings.out).read_text())
    latencies = np.asarray(output["latency_ms"])
    cpu_percent = cpu.percent(output["measured_from"], output["measured_to"])
    return latency_stats(latencies), latencies, cpu_percent


def start_peer(name: str, settings_path: Path, log_path: Path) -> subprocess.Popen:
    """Launch peer ``name`` on a settings file in its own process group (:func:`_stop` ends it)."""
    if name == "timeflux":
        from bci.bench.peers.timeflux_peer import start_timeflux_peer

        return start_timeflux_peer(settings_path, log_path)
    with open(log_path, "w") as log:
        command = [sys.executable, "-m", f"bci.bench.peers.{name}", str(settings_path)]
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.PIPE, start_new_session=True)  # fmt: skip


def _stop(process: subprocess.Popen) -> None:
    """End a peer and everything it started (Timeflux runs a process per graph)."""
    import os
    import signal

    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    try:
        os.killpg(process.pid, signal.SIGKILL)  # a graph worker left behind
    except ProcessLookupError:
        pass
    if process.stdin:
        process.stdin.close()


def _missing_peers() -> dict[str, str]:
    """Each peer that cannot run here → why (what to install)."""
    from bci.bench.peers import peer_missing

    return {name: why for name in PEERS if (why := peer_missing(name))}


def peers_missing() -> str | None:
    """Why ``--peers`` cannot run here (what to install), or None."""
    return " ".join(_missing_peers().values()) or None


def run_latency_bench(json_path: Path, seconds: float = 60.0, peers: bool | None = False,
                      calibration_trials: int = 16) -> dict:  # fmt: skip
    """Run the benchmark; writes ``json_path`` and a PNG beside it. ``peers``: True runs them
    (and fails if one is not installed or fails), None runs each one installed (one that is
    missing or fails is named in the result)."""
    json_path = Path(json_path)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    missing = _missing_peers() if peers is not False else {}
    if peers and missing:
        raise RuntimeError(" ".join(missing.values()))
    run_peers = [name for name in PEERS if peers is not False and name not in missing]
    samples: dict[str, np.ndarray] = {}
    result: dict = {"neuroloop": {}, "peers": {}, "cpu_percent": {}}
    with (
        tempfile.TemporaryDirectory() as tmp,
        tqdm(total=2 + len(run_peers), desc="latency", unit="loop") as bar,
    ):
        tmp = Path(tmp)
        stats, samples["neuroloop.cnn"], cpu, protocol, model = _cnn_run(
            seconds, calibration_trials, tmp / "cnn"
        )
        result["neuroloop"]["cnn"], result["cpu_percent"]["neuroloop.cnn"] = stats, cpu
        bar.update()
        stats, samples["neuroloop.phase"], cpu = _phase_run(seconds, tmp / "phase")
        result["neuroloop"]["phase"], result["cpu_percent"]["neuroloop.phase"] = stats, cpu
        bar.update()
        if run_peers:
            from bci.decode import load_decoder

            model_pt = load_decoder(model).export(tmp / "eegnet.pt")
        for name in run_peers:
            try:
                stats, samples[f"peers.{name}"], cpu = _peer_run(
                    name, protocol, model_pt, seconds, tmp / name
                )
            except RuntimeError as err:
                if peers:
                    raise
                missing[name] = str(err)
            else:
                result["peers"][name], result["cpu_percent"][f"peers.{name}"] = stats, cpu
            bar.update()
    ours = result["neuroloop"]["cnn"]["p99"]
    if missing:
        result["peers_missing"] = " ".join(f"{name}: {why}" for name, why in missing.items())
    result["ratio_p99_vs_cnn"] = {name: s["p99"] / ours for name, s in result["peers"].items()}
    result["config"] = {
        "channels": CHANNELS, "srate": SRATE, "source_chunk_s": CHUNK_S, "seconds": seconds,
        "hop_s": protocol.preprocessing.hop_s, "picks": list(protocol.preprocessing.picks),
        "decoder": "EEGNet fitted on the calibration block (peers: its TorchScript export)",
        "calibration_trials": calibration_trials, "phase_protocol": "alpha_phase_tacs",
        "phase_refractory_s": PHASE_REFRACTORY_S,
    }  # fmt: skip
    result["machine"] = machine_info()
    result["date"] = datetime.now().isoformat(timespec="seconds")
    json_path.write_text(json.dumps(result, indent=2))
    _plot(result, samples, json_path.with_suffix(".png"))
    return result


def _plot(result: dict, samples: dict[str, np.ndarray], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(f"neuroloop.{k}", s) for k, s in result["neuroloop"].items()]
    rows += [(f"peers.{k}", s) for k, s in result["peers"].items()]
    fig, (bars, hist) = plt.subplots(1, 2, figsize=(12, 4.5), constrained_layout=True,
                                     gridspec_kw={"width_ratios": [1, 1.3]})  # fmt: skip
    names = [name for name, _ in rows]
    y = np.arange(len(rows))
    for offset, key, color in ((-0.2, "p50", "tab:blue"), (0.2, "p99", "tab:orange")):
        values = [s[key] for _, s in rows]
        bars.barh(y + offset, values, height=0.4, color=color, label=key)
        for yi, v in zip(y + offset, values, strict=True):
            bars.text(v, yi, f" {v:.2f}", va="center", fontsize=8)
    most = max((s["p99"] for _, s in rows), default=1.0)
    bars.set(yticks=y, yticklabels=names, xlabel="ms", xlim=(0, most * 1.2),
             title="newest sample → output, per decision")  # fmt: skip
    bars.invert_yaxis()
    bars.legend(loc="upper right")
    cfg = result["config"]
    longest = max((values.max() for values in samples.values() if values.size), default=100.0)
    bins = np.logspace(-0.7, np.log10(max(100.0, longest * 1.01)), 120)  # none left out
    for name, values in samples.items():
        hist.hist(values, bins=bins, histtype="step", label=name)
    hist.set(xscale="log", yscale="log", xlabel="ms (log)", ylabel="decisions (phase: pulses)",
             title=f"{cfg['channels']} ch · {cfg['srate']:g} Hz in {cfg['source_chunk_s'] * 1e3:g} "
             f"ms chunks\nEEGNet every {cfg['hop_s'] * 1e3:g} ms; phase: each tACS restart",
             )  # fmt: skip
    if samples:
        hist.legend()
    fig.savefig(path, dpi=100)
    plt.close(fig)
