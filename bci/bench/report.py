"""``bci bench all``: every benchmark in one run, then ``docs/benchmarks.md`` with their figures,
the machine, the date and the plots.

Each benchmark writes ``<out>/<name>.json`` and a PNG beside it; the page is written from those
files (``--report-only`` rewrites it without running anything). A benchmark that fails is
reported on the page with its error, and the others still run.
"""

from __future__ import annotations

import json
import shutil
import traceback
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from tqdm import tqdm

from bci.bench import machine_info


def _latency(path: Path, quick: bool) -> dict:
    from bci.bench.latency import run_latency_bench

    return run_latency_bench(path, seconds=20.0 if quick else 60.0, peers=None)


def _throughput(path: Path, quick: bool) -> dict:
    from bci.bench.throughput import run_throughput_bench

    return run_throughput_bench(path, step_s=20.0 if quick else 60.0,
                                hold_minutes=2.0 if quick else 10.0,
                                memory_minutes=3.0 if quick else 30.0)  # fmt: skip


def _decoders(path: Path, quick: bool) -> dict:
    from bci.bench.decoders import run_decoder_bench

    return run_decoder_bench(path, quick=quick, progress=False)


def _stim(path: Path, quick: bool) -> dict:
    from bci.bench.stim import run_stim_bench

    return run_stim_bench(path, seconds=20.0 if quick else 60.0)


def _replay(path: Path, quick: bool) -> dict:
    from bci.bench.replay import run_replay_bench

    return run_replay_bench(path, seconds=40.0 if quick else 120.0)


def _gui(path: Path, quick: bool) -> dict:
    from gui.bench import run_gui_bench

    return run_gui_bench(path, rounds=1 if quick else 3)


BENCHMARKS: dict[str, Callable[[Path, bool], dict]] = {
    "latency": _latency,
    "throughput": _throughput,
    "decoders": _decoders,
    "stim": _stim,
    "replay": _replay,
    "gui": _gui,
}
"""Every benchmark, in the order they run: name → run(json_path, quick)."""


def run_all(out_dir: Path, page: Path, quick: bool = False,
            only: list[str] | None = None) -> dict[str, str]:  # fmt: skip
    """Run the benchmarks (``only`` these names, if given) into ``out_dir``, then write
    ``page``; returns the error of each benchmark that failed."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = list(BENCHMARKS) if only is None else only
    unknown = [name for name in names if name not in BENCHMARKS]
    if unknown:
        raise ValueError(f"unknown benchmark(s) {unknown}; choose from {list(BENCHMARKS)}")
    errors: dict[str, str] = {}
    for name in tqdm(names, desc="benchmarks", unit="bench"):
        (out_dir / f"{name}.error.txt").unlink(missing_ok=True)
        try:
            BENCHMARKS[name](out_dir / f"{name}.json", quick)
        except Exception as err:  # one failed benchmark must not stop the others
            errors[name] = f"{type(err).__name__}: {err}"
            (out_dir / f"{name}.error.txt").write_text(traceback.format_exc())
    write_page(out_dir, page, errors)
    return errors


def write_page(out_dir: Path, page: Path, errors: dict[str, str] | None = None) -> Path:
    """``page`` (markdown) from the benchmark JSON files in ``out_dir``; the plots and the JSON
    files are copied next to it (``<page stem>/``) so the page shows them wherever it is read."""
    out_dir, page = Path(out_dir), Path(page)
    errors = dict(errors or {})
    for name in BENCHMARKS:  # a failure left by an earlier run is still a failure
        error_file = out_dir / f"{name}.error.txt"
        if name not in errors and error_file.exists() and not (out_dir / f"{name}.json").exists():
            errors[name] = error_file.read_text().strip().splitlines()[-1]
    plots = page.parent / page.stem
    plots.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Benchmarks",
        "",
        f"Written by `bci bench all` on {datetime.now():%Y-%m-%d %H:%M}. Machine: "
        f"{_machine_line(machine_info())}. Each section gives the date its benchmark ran; the "
        "JSON files beside the plots hold every figure.",
        "",
    ]
    for name in BENCHMARKS:
        lines += [f"## {name}", ""]
        json_path = out_dir / f"{name}.json"
        if name in errors:
            lines += [f"**Failed:** `{errors[name]}`", ""]
            continue
        if not json_path.exists():
            lines += ["Not run.", ""]
            continue
        result = json.loads(json_path.read_text())
        shutil.copyfile(json_path, plots / json_path.name)  # every figure, beside the page
        lines += [f"Ran {result.get('date', '?')}.", ""]
        lines += [f"- {line}" for line in FIGURES[name](result)]
        png = json_path.with_suffix(".png")
        if png.exists():
            shutil.copyfile(png, plots / png.name)
            lines += ["", f"![{name}]({plots.name}/{png.name})"]
        lines.append("")
    page.write_text("\n".join(lines))
    return page


def _machine_line(machine: dict) -> str:
    cpu = machine.get("processor") or "CPU"
    return f"{machine['platform']}, Python {machine['python']}, {machine['cpus']} × {cpu}"


def _stats(stats: dict) -> str:
    return f"p50 {stats['p50']:.2f} ms, p99 {stats['p99']:.2f} ms, max {stats['max']:.2f} ms"


def _latency_figures(r: dict) -> list[str]:
    c, cpu = r["config"], r["cpu_percent"]
    lines = [
        f"{c['channels']} ch · {c['srate']:g} Hz in {c['source_chunk_s'] * 1e3:g} ms chunks, "
        f"EEGNet deciding every {c['hop_s'] * 1e3:g} ms, {c['seconds']:g} s each; newest sample "
        "→ output (CPU: the loop's own process, % of one core):"
    ]
    rows = [(f"neuroloop.{k}", s) for k, s in r["neuroloop"].items()]
    rows += [(f"peers.{k}", s) for k, s in r["peers"].items()]
    for name, stats in rows:
        ratio = r["ratio_p99_vs_cnn"].get(name.removeprefix("peers."))
        what = "tACS restarts" if name == "neuroloop.phase" else "decisions"
        lines.append(
            f"`{name}`: {_stats(stats)} ({stats['n']} {what}, CPU {cpu[name]:.0f} %)"
            + (f", p99 {ratio:.1f}× neuroloop.cnn's" if ratio is not None else "")
        )
    stages = r["neuroloop"]["cnn"].get("stages_p99")
    if stages:
        lines.append("`neuroloop.cnn` stages, p99: " + ", ".join(
            f"{name} {value:.2f} ms" for name, value in stages.items()))  # fmt: skip
    if r.get("peers_missing"):
        lines.append(f"peers not run: {r['peers_missing']}")
    return lines


def _throughput_figures(r: dict) -> list[str]:
    lines = [
        f"{s['channels']} ch · {s['srate']:g} Hz for {s['closed_loop_s']:g} s: "
        f"{'sustained' if s['sustained'] else 'NOT sustained'} ({s['dropped']} dropped, "
        f"{s['gaps']} gaps, {s['watchdog_trips']} watchdog trips, latency p99 "
        f"{s['latency_ms']['p99']:.1f} ms)" + _first_attempt(s)
        for s in r["steps"]
    ]
    hold = r.get("hold")
    if hold:
        mem = hold["memory_mb"]
        lines.append(
            f"held {hold['channels']} ch · {hold['srate']:g} Hz for {hold['closed_loop_s'] / 60:g} "
            f"min: {'sustained' if hold['sustained'] else 'NOT sustained'} ({hold['dropped']} "
            f"dropped, {hold['gaps']} gaps, {hold['watchdog_trips']} watchdog trips, latency p99 "
            f"{hold['latency_ms']['p99']:.1f} ms, max {hold['latency_ms']['max']:.1f} ms); memory "
            f"{mem['growth']:+.1f} MB ({mem['per_hour']:+.0f} MB/h)"
        )
    memory = r.get("memory_session")
    if memory:
        lines.append(
            f"{memory['session_minutes_equivalent']:g}-minute session accelerated "
            f"{memory['acceleration']:.3g}× ({memory['latency_ms']['n']} decisions, "
            f"{'sustained' if memory['sustained'] else 'NOT sustained'}): memory "
            f"{memory['memory_mb']['growth']:+.1f} MB, scaled to a full session's "
            f"{memory['session_decisions']:.0f} decisions {memory['growth_per_session_mb']:+.1f} MB"
        )
    return lines


def _first_attempt(step: dict) -> str:
    first = step.get("first_attempt")
    if first is None:
        return ""
    return (f" on a second attempt; the first: {first['dropped']} dropped, {first['gaps']} gaps, "
            f"{first['watchdog_trips']} watchdog trips, latency p99 "
            f"{first['latency_ms']['p99']:.1f} ms")  # fmt: skip


def _decoder_figures(r: dict) -> list[str]:
    lines = [f"{r['subjects']} held-out virtual subjects, {r['calibration_trials_per_class']} "
             "calibration trials per class"]  # fmt: skip
    lines += [f"accuracy {name}: {value:.1%}" for name, value in r["accuracy"].items()]
    lines += [
        f"inference {name} (64 ch · 500 Hz): p50 {v['p50']:.3f} ms, p99 {v['p99']:.3f} ms"
        for name, v in r["inference_ms"].items()
    ]
    return lines


def _stim_figures(r: dict) -> list[str]:
    lines = [
        f"phase-locked path, newest sample → serial write: {_stats(r['phase_path_latency_ms'])}"
    ]
    lines += [
        f"phase accuracy {name}: mean error {a['mean_error_deg']:+.1f}°, PLV {a['plv']:.2f} "
        f"({a['n_triggers']} triggers)"
        for name, a in r["phase_accuracy"].items()
    ]
    gov = r["governor_us_per_command"]
    lines.append(f"governor: p50 {gov['p50']:.2f} µs, p99 {gov['p99']:.2f} µs per command")
    return lines


def _replay_figures(r: dict) -> list[str]:
    from bci.cli_replay import offline_report

    return [line.strip() for line in offline_report(r["offline"]).splitlines()]


def _gui_figures(r: dict) -> list[str]:
    return [
        f"console at 64 ch · 1 kHz, 10 s window: {r['fps']:.1f} fps, CPU "
        f"{r['console_cpu_percent']:.0f} % of one core",
        f"engine latency p99 {r['engine_p99_ms_with_gui']:.2f} ms with the console, "
        f"{r['engine_p99_ms_without_gui']:.2f} ms without (p50 {r['engine_p50_ms_with_gui']:.2f} "
        f"/ {r['engine_p50_ms_without_gui']:.2f} ms)",
    ]


FIGURES: dict[str, Callable[[dict], list[str]]] = {
    "latency": _latency_figures,
    "throughput": _throughput_figures,
    "decoders": _decoder_figures,
    "stim": _stim_figures,
    "replay": _replay_figures,
    "gui": _gui_figures,
}
"""The lines of the page for each benchmark's result."""
