"""The governor's modality rules: pulses, dose limits, the emergency stop, settings validation."""

import math

import numpy as np
import pytest

from bci.safety.ceilings import HARD_CEILINGS, charge_density_uc_cm2, max_pulse_amplitude_ma
from bci.safety.governor import MAX_HOLD_S, Governor, GovernorSettings


def tms(**kw) -> Governor:
    return Governor(GovernorSettings("tms", 70.0, math.inf, **kw))


def test_tms_pulses_are_rate_limited_and_need_an_armed_output():
    gov = tms()
    assert gov.request_pulse(0.0) is False  # output off (disarmed)
    assert gov.request(60.0, 0.0) == 60.0  # TMS intensity is a setting: no slew
    assert gov.request_pulse(0.5) is True
    assert gov.request_pulse(1.2) is False  # 0.7 s after the last: under the 1 Hz ceiling
    assert gov.request_pulse(1.5) is True
    assert gov.request_pulse(1.0) is False  # a clock that went back counts as too soon
    assert gov.state.n_pulses == 2 and gov.state.n_refused == 3
    assert gov.state.charge_mc == 0.0  # %MSO · s is not a charge
    details = [e.detail for e in gov.state.events if e.kind == "refuse"]
    assert "output is off" in details[0] and "minimum 1 s" in details[1]


def test_tms_trip_disarms_at_once_and_the_pulse_limit_latches():
    gov = tms(max_pulses=2)
    gov.request(60.0, 0.0)
    assert gov.trip("input stall", 0.1) == 0.0  # no ramp for TMS: disarm
    assert gov.request_pulse(2.0) is False
    gov.recover(2.0)
    gov.request(60.0, 2.0)
    assert gov.request_pulse(2.0) and gov.request_pulse(3.0)
    assert gov.request_pulse(4.0) is False
    assert "2 pulses" in gov.state.latched
    gov.recover(5.0)  # a dose limit is not a trip: it stays
    assert gov.request(60.0, 5.0) == 0.0


def test_emergency_stop_zeroes_now_and_holds_until_an_explicit_rearm():
    gov = Governor(GovernorSettings("tdcs", 2.0, 1.0, max_step_s=0.1))
    for t in np.arange(0.0, 2.0, 0.1):
        gov.request(2.0, float(t))
    assert gov.amplitude > 1.5
    assert gov.estop("operator", 2.0) == 0.0
    assert gov.request(2.0, 2.1) == 0.0 and gov.estopped
    gov.recover(2.2)  # a watchdog recovery does not lift it
    assert gov.request(2.0, 2.3) == 0.0
    assert gov.rearm(2.4, who="tester") is True
    assert gov.request(2.0, 2.5) == pytest.approx(0.1)  # rises again through the slew limit
    kinds = [e.kind for e in gov.state.events if e.kind in ("estop", "rearm")]
    assert kinds == ["estop", "rearm"]
    assert gov.rearm(2.6) is False  # nothing to re-arm


def test_session_time_limit_ramps_down_before_it_is_reached():
    gov = Governor(GovernorSettings("tdcs", 1.0, 1.0, max_session_s=20.0, stop_ramp_s=0.5))
    for t in np.arange(0.0, 40.0, 0.05):
        gov.request(1.0, float(t))
    assert "stimulation time" in gov.state.latched
    assert gov.amplitude == 0.0 and gov.state.on_time_s <= 20.0


def test_a_stall_counts_at_most_one_hold_of_charge():
    gov = Governor(GovernorSettings("tdcs", 2.0, 1.0, max_step_s=1.0))
    gov.request(0.0, 0.0)
    gov.request(1.0, 1.0)
    gov.tick(1000.0)  # the device zeroed the output after MAX_HOLD_S without a command
    assert gov.state.charge_mc == pytest.approx(1.0 * MAX_HOLD_S)


def test_polarity_only_for_tdcs():
    tacs = Governor(GovernorSettings("tacs", 1.0, 1.0, frequency_hz=10.0, max_step_s=1.0))
    assert tacs.request(-1.0, 0.0) == 0.0 and tacs.request(-1.0, 1.0) == 0.0
    tdcs = Governor(GovernorSettings("tdcs", 1.0, 1.0, max_step_s=1.0))
    tdcs.request(0.0, 0.0)
    assert tdcs.request(-1.0, 1.0) == pytest.approx(-1.0)


def test_charge_density_bounds_pulse_train_amplitude():
    assert charge_density_uc_cm2(3.0, 60.0, 0.06) == pytest.approx(3.0)
    assert max_pulse_amplitude_ma(60.0, 0.06) == pytest.approx(30.0)
    GovernorSettings("pulse_train", 3.0, 4.0, frequency_hz=130, pulse_width_us=60,
                     electrode_area_cm2=0.06)  # fmt: skip
    with pytest.raises(ValueError, match="charge-density"):
        GovernorSettings("pulse_train", 10.0, 4.0, frequency_hz=130, pulse_width_us=450,
                         electrode_area_cm2=0.01)  # fmt: skip
    with pytest.raises(ValueError, match="pulse_width_us"):
        GovernorSettings("pulse_train", 1.0, 4.0, frequency_hz=130, pulse_width_us=500,
                         electrode_area_cm2=0.06)  # fmt: skip
    with pytest.raises(ValueError, match="electrode_area_cm2"):
        GovernorSettings("pulse_train", 1.0, 4.0, frequency_hz=130, pulse_width_us=60)


@pytest.mark.parametrize(
    ("modality", "kw", "match"),
    [
        ("tdcs", {"max_charge_mc": 8000.0}, "max_charge_mc"),
        ("tdcs", {"max_session_s": 3000.0}, "max_session_s"),
        ("tacs", {"frequency_hz": 200.0}, "frequency_hz"),
        ("tacs", {"frequency_hz": 0.05}, "frequency_hz"),
        ("tdcs", {"frequency_hz": 10.0}, "frequency_hz must be 0"),
        (
            "pulse_train",
            {"frequency_hz": 300.0, "pulse_width_us": 60, "electrode_area_cm2": 0.06},
            "frequency_hz",
        ),
    ],
)
def test_session_limits_beyond_the_hard_ceilings_are_refused(modality, kw, match):
    with pytest.raises(ValueError, match=match):
        GovernorSettings(modality, 1.0, 1.0, **kw)


def test_tms_min_pulse_interval_cannot_go_below_one_second():
    with pytest.raises(ValueError, match="min_pulse_interval_s"):
        GovernorSettings("tms", 50.0, math.inf, min_pulse_interval_s=0.5)
    assert GovernorSettings("tms", 50.0, math.inf).min_pulse_interval_s == 1.0
    assert HARD_CEILINGS["tdcs"].max_charge_mc == 7200.0
