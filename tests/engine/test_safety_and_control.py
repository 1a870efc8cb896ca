import itertools
import math

import numpy as np
import pytest

from bci.control import ProportionalController, ProportionalSettings
from bci.safety.governor import Governor, GovernorSettings


def make_governor(**kw) -> Governor:
    settings = {"modality": "tdcs", "max_amplitude": 2.0, "max_slew_per_s": 1.0, **kw}
    return Governor(GovernorSettings(**settings))


def test_governor_clamps_amplitude_and_slew_and_counts_them():
    gov = make_governor(max_step_s=0.2)
    assert gov.request(2.0, 0.0) == 0.0  # the first request starts from zero
    assert gov.request(5.0, 0.1) == pytest.approx(0.1)  # slew: 1 mA/s over 0.1 s
    for t in np.arange(0.2, 4.0, 0.1):
        out = gov.request(5.0, float(t))
    assert out == pytest.approx(2.0)  # session ceiling
    assert gov.state.n_clamped > 0 and all(e.kind == "clamp" for e in gov.state.events)
    assert gov.state.max_abs_amplitude == pytest.approx(2.0)
    assert gov.state.charge_mc > 0


def test_a_silence_never_becomes_one_large_step():
    gov = make_governor(max_step_s=0.1)
    gov.request(0.0, 0.0)
    assert gov.request(2.0, 5.0) == pytest.approx(0.1)  # 5 s of silence counts as 0.1 s


def test_non_finite_request_is_refused_and_trips_to_zero():
    gov = make_governor(stop_ramp_s=0.5)
    gov.request(0.0, 0.0)
    for t in np.arange(0.1, 1.0, 0.1):
        gov.request(0.5, float(t))
    assert gov.request(math.nan, 1.0) == pytest.approx(0.5)  # the ramp down starts here
    assert gov.tripped and gov.state.n_refused == 1
    assert gov.request(math.inf, 1.25) == pytest.approx(0.25)
    assert gov.request(1.0, 1.6) == 0.0
    with pytest.raises(ValueError, match="time"):
        gov.request(1.0, math.nan)


def test_trip_ramps_to_zero_within_stop_ramp_and_never_rises():
    gov = make_governor(stop_ramp_s=0.5)
    gov.request(0.0, 0.0)
    for t in np.arange(0.1, 2.0, 0.1):
        gov.request(1.5, float(t))
    assert gov.amplitude == pytest.approx(1.5)
    gov.trip("input stall", 2.0)
    outputs = [gov.request(2.0, 2.0 + dt) for dt in np.arange(0, 0.6, 0.05)]
    assert all(b <= a + 1e-12 for a, b in itertools.pairwise(outputs))
    assert gov.tick(2.5) == 0.0
    gov.recover(3.0)
    assert gov.request(2.0, 3.1) == pytest.approx(0.1)  # rises again only through the slew limit
    assert [e.kind for e in gov.state.events if e.kind != "clamp"] == ["trip", "recover"]


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"max_amplitude": 4.5}, "max_amplitude"),
        ({"modality": "ect"}, "modality"),
        ({"max_slew_per_s": 5.0}, "max_slew_per_s"),
        ({"stop_ramp_s": 2.0}, "stop_ramp_s"),
    ],
)
def test_governor_settings_cannot_exceed_hard_ceilings(kw, match):
    with pytest.raises(ValueError, match=match):
        make_governor(**kw)


def test_proportional_controller_maps_probability_with_ramps():
    ctl = ProportionalController(
        ProportionalSettings(target_index=1, p_low=0.5, p_high=0.9, ceiling=1.0, ramp_up_per_s=0.5)
    )
    assert ctl.target(np.array([0.5, 0.5])) == 0.0
    assert ctl.target(np.array([0.3, 0.7])) == pytest.approx(0.5)
    assert ctl.target(np.array([0.0, 1.0])) == 1.0
    ctl(np.array([0.0, 1.0]), 0.0)
    assert ctl(np.array([0.0, 1.0]), 1.0) == pytest.approx(0.5)  # ramp-limited
    assert ctl(np.array([1.0, 0.0]), 1.2) == pytest.approx(0.3)  # ramp down 1/s
    ctl.reset(0.4)  # resume from the stimulator's actual output
    assert ctl(np.array([0.0, 1.0]), 2.0) == pytest.approx(0.4)
    assert ctl(np.array([0.0, 1.0]), 2.2) == pytest.approx(0.5)
    ctl.reset()
    assert ctl.amplitude == 0.0
    with pytest.raises(ValueError, match="p_low < p_high"):
        ProportionalSettings(target_index=0, p_low=0.9, p_high=0.5)


def test_proportional_controller_holds_while_the_decoder_abstains():
    ctl = ProportionalController(
        ProportionalSettings(target_index=1, ceiling=1.0, ramp_up_per_s=1.0, abstain_below=0.7)
    )
    ctl(np.array([0.1, 0.9]), 0.0)
    assert ctl(np.array([0.1, 0.9]), 0.5) == pytest.approx(0.5)
    assert ctl(np.array([0.45, 0.55]), 1.0) == pytest.approx(0.5)  # unsure: held, not lowered
    assert ctl(np.array([0.1, 0.9]), 1.2) == pytest.approx(0.7)  # the ramp counts from 1.0
    with pytest.raises(ValueError, match="abstain_below"):
        ProportionalSettings(target_index=0, abstain_below=1.5)
