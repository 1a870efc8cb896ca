"""``bci bench throughput``: a one-step ladder end to end, and the memory-growth arithmetic."""

from __future__ import annotations

import json

import pytest

from bci.bench.throughput import WARMUP_S, _growth, run_throughput_bench


def test_one_step_ladder_writes_the_figures_and_a_plot(tmp_path):
    result = run_throughput_bench(tmp_path / "t.json", step_s=3.0, hold_minutes=0.0,
                                  ladder=((16, 250.0),), memory_minutes=0.0,
                                  calibration_trials=4)  # a fit, soon  # fmt: skip
    (step,) = result["steps"]
    assert step["sustained"] and step["dropped"] == 0 and step["gaps"] == 0
    assert step["samples"] > 250 * 3 and step["latency_ms"]["n"] > 100
    assert result["largest_sustained"] == {"channels": 16, "srate": 250.0}
    assert result["hold"] is None and result["memory_session"] is None
    assert json.loads((tmp_path / "t.json").read_text())["steps"][0]["channels"] == 16
    assert (tmp_path / "t.png").stat().st_size > 10_000


def test_growth_counts_from_the_warmup_and_fits_a_slope():
    samples = [(t, 100.0 + (0.01 * (t - WARMUP_S) if t >= WARMUP_S else 5.0)) for t in range(200)]
    growth = _growth(samples)
    assert growth["start"] == 100.0 and growth["growth"] == pytest.approx(0.01 * 139)
    assert growth["per_hour"] == pytest.approx(36.0)
    assert _growth(samples[:30])["growth"] != _growth(samples[:30])["growth"]  # NaN: too short


def _fake_step(channels, srate, seconds, **_) -> dict:
    return {"channels": channels, "srate": srate, "closed_loop_s": seconds, "dropped": 0,
            "gaps": 0, "watchdog_trips": 0, "latency_ms": {"p99": 3.0},
            "sustained": True}  # fmt: skip


def test_a_step_not_sustained_runs_once_more_and_two_failures_stop_the_ladder(tmp_path,
                                                                             monkeypatch):
    from bci.bench import throughput
    from bci.bench.report import FIGURES

    failures = {(128, 1000.0): 1, (256, 1000.0): 2}  # a hiccup, then a real limit

    def step(channels, srate, seconds, **kwargs):
        result = _fake_step(channels, srate, seconds)
        if failures.get((channels, srate), 0) > 0:
            failures[(channels, srate)] -= 1
            result |= {"watchdog_trips": 1, "sustained": False}
        return result

    monkeypatch.setattr(throughput, "_isolated", step)
    ladder = ((64, 1000.0), (128, 1000.0), (256, 1000.0), (256, 2000.0))
    result = run_throughput_bench(tmp_path / "t.json", step_s=1.0, hold_minutes=0.0,
                                  ladder=ladder, memory_minutes=0.0)  # fmt: skip
    steps = result["steps"]
    assert [(s["channels"], s["sustained"]) for s in steps] == [(64, True), (128, True),
                                                                (256, False)]  # fmt: skip
    assert "first_attempt" not in steps[0]
    assert steps[1]["first_attempt"]["watchdog_trips"] == 1
    assert not steps[2]["sustained"] and not steps[2]["first_attempt"]["sustained"]
    assert result["largest_sustained"] == {"channels": 128, "srate": 1000.0}
    lines = FIGURES["throughput"](result)
    assert "on a second attempt; the first: 0 dropped, 0 gaps, 1 watchdog trips" in lines[1]
    assert "NOT sustained" in lines[2] and "second attempt" in lines[2]
