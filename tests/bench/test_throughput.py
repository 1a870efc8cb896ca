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
