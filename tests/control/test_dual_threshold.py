"""DualThresholdController: onset/termination counts, hysteresis, blanking, ramps."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bci.control import DualThresholdController, DualThresholdSettings


def make(**kw) -> DualThresholdController:
    settings = {
        "lower": 1.0,
        "upper": 2.0,
        "onset_windows": 3,
        "termination_windows": 2,
        "on_amplitude": 1.0,
        "ramp_up_per_s": 100.0,
        "ramp_down_per_s": 100.0,
        **kw,
    }
    return DualThresholdController(DualThresholdSettings(**settings))


def feed(ctl, values, t0=0.0, dt=0.1) -> list[str]:
    states = []
    for k, value in enumerate(values):
        ctl(np.array([value]), t0 + k * dt)
        states.append(ctl.state)
    return states


def test_onset_needs_n_consecutive_windows_above_upper():
    ctl = make()
    assert feed(ctl, [2.5, 2.5, 1.5, 2.5, 2.5, 2.5]) == ["off"] * 5 + ["on"]
    assert ctl.n_changes == 1


def test_termination_needs_m_consecutive_windows_below_lower():
    ctl = make(onset_windows=1)
    assert feed(ctl, [3.0, 0.5, 1.5, 0.5, 0.5]) == ["on", "on", "on", "on", "off"]
    assert ctl.n_changes == 2


def test_values_between_the_thresholds_hold_either_state():
    ctl = make(onset_windows=1, termination_windows=1)
    assert feed(ctl, [1.5] * 5) == ["off"] * 5
    assert feed(ctl, [2.5] + [1.5] * 5, t0=1.0) == ["on"] * 6
    assert feed(ctl, [0.5] + [1.5] * 5, t0=2.0) == ["off"] * 6


def test_blanking_ignores_the_biomarker_after_each_change():
    ctl = make(onset_windows=1, termination_windows=1, blanking_s=0.5)
    ctl(np.array([3.0]), 0.0)
    assert ctl.state == "on"
    for t in (0.1, 0.2, 0.3, 0.4):  # would switch off without blanking
        ctl(np.array([0.0]), t)
        assert ctl.state == "on"
    ctl(np.array([0.0]), 0.5)
    assert ctl.state == "off" and ctl.n_changes == 2


def test_blanking_does_not_advance_the_counts():
    ctl = make(onset_windows=1, termination_windows=2, blanking_s=0.3)
    ctl(np.array([3.0]), 0.0)
    ctl(np.array([0.0]), 0.1)  # blanked: not counted
    ctl(np.array([0.0]), 0.3)  # first counted
    assert ctl.state == "on"
    ctl(np.array([0.0]), 0.4)
    assert ctl.state == "off"


def test_output_ramps_towards_the_state_amplitude():
    ctl = make(
        onset_windows=1, on_amplitude=2.0, off_amplitude=0.5, ramp_up_per_s=1.0, ramp_down_per_s=2.0
    )
    assert ctl(np.array([0.0]), 0.0) == 0.5
    assert ctl(np.array([3.0]), 0.5) == pytest.approx(1.0)  # switched: 0.5 s at 1/s
    assert ctl(np.array([3.0]), 1.0) == pytest.approx(1.5)
    assert ctl(np.array([3.0]), 9.0) == pytest.approx(2.0)
    feed(ctl, [0.0, 0.0], t0=9.1, dt=0.0)  # termination_windows=2 at the same instant
    assert ctl.state == "off"
    assert ctl(np.array([0.0]), 9.3) == pytest.approx(1.6)


def test_value_index_picks_a_probability_column():
    ctl = make(lower=0.3, upper=0.7, onset_windows=1, value_index=1)
    ctl(np.array([0.2, 0.8]), 0.0)
    assert ctl.state == "on"


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_a_non_finite_row_never_changes_the_output_or_the_counts(bad):
    ctl = make(onset_windows=2)
    ctl(np.array([3.0]), 0.0)
    assert ctl(np.array([bad]), 0.1) == 0.0
    ctl(np.array([3.0]), 0.2)  # the non-finite row neither counted nor broke the run
    assert ctl.state == "on"


def test_reset_starts_over_off_from_the_amplitude_given():
    ctl = make(onset_windows=1, ramp_down_per_s=1.0)
    ctl(np.array([3.0]), 0.0)
    ctl(np.array([3.0]), 1.0)
    ctl.reset(0.8)
    assert ctl.state == "off" and ctl.amplitude == 0.8
    ctl(np.array([1.5]), 2.0)
    assert ctl(np.array([1.5]), 2.5) == pytest.approx(0.3)
    ctl.reset()
    assert ctl.amplitude == 0.0 and ctl.n_changes == 1  # lifetime count kept


def test_from_baseline_sets_the_thresholds_at_percentiles():
    values = np.r_[np.linspace(0.0, 10.0, 101), np.nan]
    settings = DualThresholdSettings.from_baseline(
        values, 25, 90, on_amplitude=1.0, onset_windows=4
    )
    assert settings.lower == pytest.approx(2.5) and settings.upper == pytest.approx(9.0)
    assert settings.onset_windows == 4


def test_with_thresholds_returns_a_checked_copy():
    settings = DualThresholdSettings(lower=1.0, upper=2.0, on_amplitude=1.0)
    moved = settings.with_thresholds(0.5, 3.0)
    assert (moved.lower, moved.upper, settings.lower) == (0.5, 3.0, 1.0)
    with pytest.raises(ValueError, match="lower must be <= upper"):
        settings.with_thresholds(3.0, 0.5)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (([1.0, 2.0, 3.0], 90, 10), "lower_percentile and upper_percentile"),
        (([1.0, 2.0, 3.0], -5, 10), "lower_percentile"),
        (([1.0, 2.0, 3.0], 10, 101), "upper_percentile"),
        (([1.0, math.nan], 10, 90), "values"),
    ],
)
def test_from_baseline_errors_name_the_argument(args, match):
    with pytest.raises(ValueError, match=match):
        DualThresholdSettings.from_baseline(*args, on_amplitude=1.0)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"lower": 3.0}, "lower must be <= upper"),
        ({"upper": math.nan}, "upper"),
        ({"onset_windows": 0}, "onset_windows"),
        ({"termination_windows": 1.5}, "termination_windows"),
        ({"blanking_s": -1.0}, "blanking_s"),
        ({"on_amplitude": -1.0}, "on_amplitude"),
        ({"off_amplitude": math.inf}, "off_amplitude"),
        ({"value_index": -1}, "value_index"),
        ({"ramp_up_per_s": 0.0}, "ramp_up_per_s"),
        ({"ramp_down_per_s": -2.0}, "ramp_down_per_s"),
    ],
)
def test_settings_errors_name_the_field(kw, match):
    with pytest.raises(ValueError, match=match):
        make(**kw)
