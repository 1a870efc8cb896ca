"""RampLimiter: the one place where every amplitude policy's ramp rates are applied."""

from __future__ import annotations

import math

import pytest

from bci.control.ramp import RampLimiter, check_rate


@pytest.mark.parametrize("value", [0.0, -1.0, math.nan, math.inf, True, "1"])
def test_check_rate_rejects_what_is_not_a_finite_positive_rate(value):
    with pytest.raises(ValueError, match=r"ramp_up_per_s must be a finite number > 0"):
        check_rate("ramp_up_per_s", value)


def test_check_rate_returns_a_float():
    assert check_rate("rate", 2) == 2.0 and isinstance(check_rate("rate", 2), float)


def test_the_first_call_only_starts_the_clock():
    ramp = RampLimiter(1.0, 2.0, value=0.5)
    assert ramp(3.0, 10.0) == 0.5


def test_rises_and_falls_at_their_own_rates_without_overshoot():
    ramp = RampLimiter(up_per_s=1.0, down_per_s=2.0)
    ramp(1.0, 0.0)
    assert ramp(1.0, 0.25) == pytest.approx(0.25)
    assert ramp(1.0, 0.5) == pytest.approx(0.5)
    assert ramp(1.0, 5.0) == pytest.approx(1.0)  # reached, not passed
    assert ramp(0.0, 5.1) == pytest.approx(0.8)  # down at 2/s
    assert ramp(0.0, 9.0) == 0.0


def test_hold_lets_the_clock_run_so_the_next_step_counts_from_there():
    ramp = RampLimiter(1.0, 1.0)
    ramp(1.0, 0.0)
    assert ramp.hold(5.0) == 0.0
    assert ramp(1.0, 5.1) == pytest.approx(0.1)


def test_time_running_backwards_counts_as_no_time():
    ramp = RampLimiter(1.0, 1.0)
    ramp(1.0, 1.0)
    assert ramp(1.0, 0.5) == 0.0
    assert ramp(1.0, 0.6) == pytest.approx(0.1)


def test_a_non_finite_target_holds_the_value():
    ramp = RampLimiter(1.0, 1.0, value=0.3)
    ramp(0.3, 0.0)
    assert ramp(math.nan, 1.0) == 0.3
    assert ramp(math.inf, 2.0) == 0.3


def test_reset_starts_over_from_the_value_given():
    ramp = RampLimiter(1.0, 1.0)
    ramp(1.0, 0.0)
    ramp(1.0, 0.5)
    ramp.reset(0.2)
    assert ramp.value == 0.2
    assert ramp(1.0, 100.0) == 0.2  # the clock was forgotten too
    with pytest.raises(ValueError, match="value"):
        ramp.reset(math.nan)


def test_bad_rates_and_times_name_the_parameter():
    with pytest.raises(ValueError, match="up_per_s"):
        RampLimiter(0.0, 1.0)
    with pytest.raises(ValueError, match="down_per_s"):
        RampLimiter(1.0, math.inf)
    with pytest.raises(ValueError, match="time"):
        RampLimiter(1.0, 1.0)(1.0, math.nan)
    with pytest.raises(ValueError, match="time"):
        RampLimiter(1.0, 1.0).hold(math.inf)
