"""``bci bench all``'s page: the figures of every benchmark's JSON, failures, the plots."""

from __future__ import annotations

import json

import pytest

from bci.bench import report
from bci.bench.report import BENCHMARKS, FIGURES, run_all, write_page

STATS = {"p50": 1.25, "p99": 2.5, "max": 9.0, "n": 5000}
RESULTS = {
    "latency": {"neuroloop": {"cnn": STATS, "phase": STATS}, "peers": {"mnelsl": STATS},
                "cpu_percent": {"neuroloop.cnn": 60.0, "neuroloop.phase": 55.0,
                                "peers.mnelsl": 48.0},
                "ratio_p99_vs_cnn": {"mnelsl": 1.0}, "date": "2026-11-23T08:00:00",
                "config": {"channels": 64, "srate": 1000.0, "source_chunk_s": 0.001,
                           "hop_s": 0.01, "seconds": 60.0}},
    "throughput": {"steps": [
        {"channels": 256, "srate": 2000.0, "closed_loop_s": 60, "sustained": True, "dropped": 0,
         "gaps": 0, "watchdog_trips": 0, "latency_ms": STATS}],
        "hold": {"channels": 256, "srate": 2000.0, "closed_loop_s": 600, "sustained": True,
                 "dropped": 0, "gaps": 0, "watchdog_trips": 0, "latency_ms": STATS,
                 "memory_mb": {"growth": 12.5, "per_hour": 75.0}}},
    "decoders": {"subjects": 10, "calibration_trials_per_class": 20,
                 "accuracy": {"eegnet": 0.875}, "inference_ms": {"eegnet": STATS}},
    "stim": {"phase_path_latency_ms": STATS, "governor_us_per_command": STATS,
             "phase_accuracy": {"live": {"mean_error_deg": -3.5, "plv": 0.81, "n_triggers": 40}}},
    "replay": {"offline": {"reproduces": True, "duration_s": 120.0, "channels": 64, "srate": 500.0,
                           "seconds": {"total": 1.5}, "realtime_factor": 80.0, "n_decisions": 11000,
                           "decoder_max_abs_diff": 1.9e-15, "n_commands": 900,
                           "recorded_commands": 900, "stim_max_abs_diff": 2.8e-15}},
    "gui": {"fps": 36.5, "console_cpu_percent": 65.0, "engine_p99_ms_with_gui": 2.8,
            "engine_p99_ms_without_gui": 1.8, "engine_p50_ms_with_gui": 1.42,
            "engine_p50_ms_without_gui": 1.3},
}  # fmt: skip


def test_every_benchmark_has_figures_for_its_result():
    assert set(FIGURES) == set(BENCHMARKS) == set(RESULTS)
    expected = {
        "latency": "`peers.mnelsl`: p50 1.25 ms, p99 2.50 ms, max 9.00 ms (5000 decisions, "
                   "CPU 48 %), p99 1.0× neuroloop.cnn's",
        "throughput": "memory +12.5 MB (+75 MB/h)",
        "decoders": "accuracy eegnet: 87.5%", "stim": "mean error -3.5°, PLV 0.81",
        "replay": "80× real time", "gui": "36.5 fps",
    }  # fmt: skip
    for name, result in RESULTS.items():
        assert expected[name] in "\n".join(FIGURES[name](result)), name


def test_page_has_figures_plots_failures_and_what_did_not_run(tmp_path):
    out, page = tmp_path / "bench", tmp_path / "docs" / "benchmarks.md"
    out.mkdir()
    page.parent.mkdir()
    for name in ("latency", "gui"):
        (out / f"{name}.json").write_text(json.dumps(RESULTS[name]))
    (out / "latency.png").write_bytes(b"\x89PNG fake")
    write_page(out, page, {"stim": "RuntimeError: the emulator did not answer"})
    text = page.read_text()
    assert "## latency" in text and "Ran 2026-11-23T08:00:00." in text
    assert "![latency](benchmarks/latency.png)" in text
    assert (tmp_path / "docs" / "benchmarks" / "latency.png").read_bytes() == b"\x89PNG fake"
    assert "**Failed:** `RuntimeError: the emulator did not answer`" in text
    assert text.split("## throughput")[1].split("##")[0].strip() == "Not run."
    assert "36.5 fps" in text and "Machine: " in text


def test_run_all_reports_a_failing_benchmark_and_runs_the_others(tmp_path, monkeypatch):
    def broken(path, quick):
        raise RuntimeError("no stimulator")

    def fine(path, quick):
        path.write_text(json.dumps(RESULTS["gui"]))
        return RESULTS["gui"]

    monkeypatch.setitem(report.BENCHMARKS, "stim", broken)
    monkeypatch.setitem(report.BENCHMARKS, "gui", fine)
    page = tmp_path / "benchmarks.md"
    errors = run_all(tmp_path / "out", page, only=["stim", "gui"])
    assert errors == {"stim": "RuntimeError: no stimulator"}
    assert "no stimulator" in (tmp_path / "out" / "stim.error.txt").read_text()
    assert "36.5 fps" in page.read_text()
    write_page(tmp_path / "out", page)  # rewritten later, the failure is still shown
    assert "**Failed:** `RuntimeError: no stimulator`" in page.read_text()
    with pytest.raises(ValueError, match="unknown benchmark"):
        run_all(tmp_path / "out", page, only=["speed"])
