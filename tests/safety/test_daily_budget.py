"""The governor's daily budget: a session starts from the participant's prior 24 h totals and
latches when prior + session reach a daily limit (pure governor, times fed in)."""

import math

import numpy as np
import pytest

from bci.safety.dose import (
    DAY_S,
    DoseLimitError,
    DoseTotals,
    exhausted,
    frees_at,
    refuse_if_exhausted,
)
from bci.safety.governor import MAX_HOLD_S, Governor, GovernorSettings


def tdcs(**kw) -> GovernorSettings:
    return GovernorSettings("tdcs", 2.0, 1.0, max_step_s=1.0, **kw)


def drive(gov: Governor, amplitude: float, seconds: float, start: float = 0.0,
          step_s: float = 0.1) -> list[float]:  # fmt: skip
    return [gov.request(amplitude, float(t)) for t in np.arange(start, start + seconds, step_s)]


def test_hard_daily_ceilings_fill_unset_daily_limits():
    s = tdcs()
    assert (s.max_daily_s, s.max_daily_charge_mc, s.max_daily_pulses) == (2400, 7200, math.inf)
    tms = GovernorSettings("tms", 60.0, math.inf)
    assert tms.max_daily_s == tms.max_daily_pulses == math.inf
    with pytest.raises(ValueError, match=r"max_daily_s must be within 0\.\.2400 s, got 3000"):
        tdcs(max_daily_s=3000.0)
    with pytest.raises(ValueError, match="max_daily_pulses must be within"):
        GovernorSettings("tms", 60.0, math.inf, max_daily_pulses=-1)


def test_without_a_prior_a_session_starts_from_zero():
    gov = Governor(tdcs(max_daily_s=100.0))
    drive(gov, 1.0, 50.0)
    assert gov.state.latched is None and gov.amplitude == pytest.approx(1.0)
    assert gov.prior == DoseTotals()


def test_a_session_latches_at_the_daily_time_limit_counting_the_prior():
    prior = DoseTotals(on_time_s=2300.0, charge_mc=100.0)
    gov = Governor(tdcs(stop_ramp_s=0.5), prior=prior)
    outputs = drive(gov, 1.0, 200.0)
    assert gov.state.latched.startswith("daily limit reached for the participant: "
                                        "stimulation time")  # fmt: skip
    assert "in 24 h of 2400 s" in gov.state.latched
    assert outputs[-1] == 0.0 and gov.tripped
    # the session's own totals stay the session's; prior + session within the daily limit
    assert gov.state.on_time_s < 100.0
    assert prior.on_time_s + gov.state.on_time_s <= 2400.0
    assert gov.session_totals.on_time_s == gov.state.on_time_s
    assert [e.kind for e in gov.state.events if e.kind == "limit"] == ["limit"]
    # a limit latches: nothing lifts it
    gov.recover(300.0)
    assert drive(gov, 1.0, 5.0, start=301.0)[-1] == 0.0


def test_a_session_latches_at_the_daily_charge_limit():
    prior = DoseTotals(on_time_s=10.0, charge_mc=7150.0)
    gov = Governor(tdcs(), prior=prior)
    drive(gov, 2.0, 100.0)
    assert "daily limit reached for the participant: charge" in gov.state.latched
    assert prior.charge_mc + gov.state.charge_mc <= 7200.0
    assert gov.daily_remaining.charge_mc == pytest.approx(7200.0 - 7150.0 - gov.state.charge_mc)


def test_the_session_limit_is_named_before_the_daily_one():
    gov = Governor(tdcs(max_session_s=20.0), prior=DoseTotals(on_time_s=2380.0))
    drive(gov, 1.0, 40.0)
    assert gov.state.latched.startswith("session limit reached: stimulation time")


def test_daily_pulses_count_the_prior():
    settings = GovernorSettings("tms", 60.0, math.inf, max_daily_pulses=10, max_pulses=100)
    gov = Governor(settings, prior=DoseTotals(pulses=8))
    gov.request(60.0, 0.0)
    fired = [gov.request_pulse(float(t)) for t in range(1, 6)]
    assert fired == [True, True, False, False, False]
    assert gov.state.n_pulses == 2
    assert gov.state.latched == "daily limit reached for the participant: 10 pulses in 24 h of 10"
    assert gov.daily_remaining.pulses == 0


def test_daily_remaining_says_what_is_left():
    gov = Governor(tdcs(), prior=DoseTotals(on_time_s=400.0, charge_mc=1000.0))
    left = gov.daily_remaining
    assert (left.on_time_s, left.charge_mc, left.pulses) == (2000.0, 6200.0, math.inf)
    drive(gov, 1.0, 10.0)
    assert gov.daily_remaining.on_time_s == pytest.approx(2000.0 - gov.state.on_time_s)


@pytest.mark.parametrize("seed", range(20))
def test_prior_plus_session_never_passes_a_daily_limit(seed):
    rng = np.random.default_rng(seed)
    prior = DoseTotals(on_time_s=float(rng.uniform(2200, 2400)),
                       charge_mc=float(rng.uniform(6500, 7200)))  # fmt: skip
    gov = Governor(tdcs(stop_ramp_s=float(rng.uniform(0.05, 1.0))), prior=prior)
    t = 0.0
    for _ in range(3000):
        t += float(rng.uniform(0.001, 0.3))
        gov.request(float(rng.uniform(-3, 3)), t)
    gov.tick(t + 10 * MAX_HOLD_S)
    assert prior.on_time_s + gov.state.on_time_s <= 2400.0 + 1e-9
    assert prior.charge_mc + gov.state.charge_mc <= 7200.0 + 1e-9


def test_prior_must_be_dose_totals():
    with pytest.raises(TypeError, match="prior must be a DoseTotals"):
        Governor(tdcs(), prior=(1.0, 2.0, 3))
    with pytest.raises(ValueError, match=r"DoseTotals\.charge_mc must be a number >= 0"):
        DoseTotals(1.0, -2.0, 0)


def test_refuse_if_exhausted_stops_a_session_that_could_not_stimulate():
    settings = tdcs()
    refuse_if_exhausted(settings, None)
    refuse_if_exhausted(settings, DoseTotals(on_time_s=2000.0, charge_mc=5000.0))
    with pytest.raises(DoseLimitError) as err:
        refuse_if_exhausted(settings, DoseTotals(on_time_s=2399.0, charge_mc=3000.0), "P017",
                            free_at=1_700_000_000.0)  # fmt: skip
    message = str(err.value)
    assert message.startswith("daily tdcs limit reached for participant 'P017': stimulation "
                              "time 2399 s of 2400 s in the last 24 h.")  # fmt: skip
    assert "The budget frees up at 20" in message and "bci dose" in message
    with pytest.raises(DoseLimitError, match="charge 7200 mC of 7200 mC"):
        refuse_if_exhausted(settings, DoseTotals(on_time_s=10.0, charge_mc=7200.0))
    tms = GovernorSettings("tms", 60.0, math.inf, max_daily_pulses=50)
    with pytest.raises(DoseLimitError, match="50 pulses of 50"):
        refuse_if_exhausted(tms, DoseTotals(pulses=50))
    assert isinstance(DoseLimitError("x"), ValueError)


def test_frees_at_is_when_enough_dose_leaves_the_window():
    settings = tdcs()
    lines = [(1000.0, DoseTotals(600.0, 600.0)), (2000.0, DoseTotals(1200.0, 1200.0)),
             (3000.0, DoseTotals(600.0, 600.0))]  # fmt: skip
    assert exhausted(settings, DoseTotals(2400.0, 2400.0))
    # once the first 600 s leave the window 1800 s are left in it: the session may run
    assert frees_at(settings, reversed(lines)) == 1000.0 + DAY_S
    assert frees_at(settings, lines[:2]) is None
