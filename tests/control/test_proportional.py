"""ProportionalController: amplitude follows a probability or a biomarker between limits."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bci.control import ProportionalController, ProportionalSettings


def make(**kw) -> ProportionalController:
    settings = {
        "target_index": 1,
        "p_low": 0.5,
        "p_high": 0.9,
        "ceiling": 1.0,
        "ramp_up_per_s": 0.5,
        "ramp_down_per_s": 1.0,
        **kw,
    }
    return ProportionalController(ProportionalSettings(**settings))


def test_target_maps_the_probability_linearly_between_floor_and_ceiling():
    ctl = make(floor=0.2)
    assert ctl.target(np.array([0.6, 0.4])) == pytest.approx(0.2)
    assert ctl.target(np.array([0.3, 0.7])) == pytest.approx(0.6)
    assert ctl.target(np.array([0.0, 1.0])) == pytest.approx(1.0)
    assert math.isnan(ctl.target(np.array([0.0, math.nan])))


def test_amplitude_ramps_up_and_down_at_the_set_rates():
    ctl = make()
    assert ctl(np.array([0.0, 1.0]), 0.0) == 0.0
    assert ctl(np.array([0.0, 1.0]), 1.0) == pytest.approx(0.5)
    assert ctl(np.array([1.0, 0.0]), 1.2) == pytest.approx(0.3)
    assert ctl.amplitude == pytest.approx(0.3)


def test_a_one_element_biomarker_row_drives_it_with_target_index_0():
    ctl = make(target_index=0, ramp_up_per_s=10.0)
    ctl(np.array([0.9]), 0.0)
    assert ctl(np.array([0.7]), 1.0) == pytest.approx(0.5)


def test_holds_while_the_decoder_abstains():
    ctl = make(ramp_up_per_s=1.0, abstain_below=0.7)
    ctl(np.array([0.1, 0.9]), 0.0)
    assert ctl(np.array([0.1, 0.9]), 0.5) == pytest.approx(0.5)
    assert ctl(np.array([0.45, 0.55]), 1.0) == pytest.approx(0.5)
    assert ctl(np.array([0.1, 0.9]), 1.2) == pytest.approx(0.7)  # the ramp counts from 1.0


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_a_non_finite_row_never_changes_the_output(bad):
    ctl = make()
    ctl(np.array([0.0, 1.0]), 0.0)
    ctl(np.array([0.0, 1.0]), 0.4)
    before = ctl.amplitude
    assert ctl(np.array([bad, 1.0]), 0.8) == before
    assert ctl(np.array([0.0, bad]), 0.9) == before


def test_reset_starts_from_the_floor_or_the_amplitude_given():
    ctl = make(floor=0.1)
    ctl(np.array([0.0, 1.0]), 0.0)
    ctl(np.array([0.0, 1.0]), 1.0)
    ctl.reset(0.4)
    assert ctl(np.array([0.0, 1.0]), 2.0) == pytest.approx(0.4)
    assert ctl(np.array([0.0, 1.0]), 2.2) == pytest.approx(0.5)
    ctl.reset()
    assert ctl.amplitude == pytest.approx(0.1)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"target_index": -1}, "target_index"),
        ({"target_index": 1.5}, "target_index"),
        ({"p_low": 0.9, "p_high": 0.5}, "p_low"),
        ({"floor": 2.0, "ceiling": 1.0}, "floor"),
        ({"abstain_below": 1.5}, "abstain_below"),
        ({"ramp_up_per_s": 0.0}, "ramp_up_per_s"),
        ({"ramp_down_per_s": math.nan}, "ramp_down_per_s"),
    ],
)
def test_settings_errors_name_the_field(kw, match):
    with pytest.raises(ValueError, match=match):
        make(**kw)
