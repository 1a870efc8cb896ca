"""ClassMapController: each decoded class asks for its amplitude, gated by confidence."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bci.control import ClassMapController, ClassMapSettings


def make(**kw) -> ClassMapController:
    settings = {
        "amplitudes": (0.0, 1.0, 2.0),
        "abstain_below": 0.6,
        "ramp_up_per_s": 1.0,
        "ramp_down_per_s": 2.0,
        **kw,
    }
    return ClassMapController(ClassMapSettings(**settings))


def test_the_winning_class_sets_the_target_and_the_output_ramps_to_it():
    ctl = make()
    assert ctl(np.array([0.1, 0.1, 0.8]), 0.0) == 0.0
    assert ctl.target == 2.0
    assert ctl(np.array([0.1, 0.1, 0.8]), 1.0) == pytest.approx(1.0)
    assert ctl(np.array([0.1, 0.8, 0.1]), 5.0) == pytest.approx(1.0)
    assert ctl(np.array([0.8, 0.1, 0.1]), 5.25) == pytest.approx(0.5)  # down at 2/s


def test_an_unsure_decision_keeps_the_previous_target():
    ctl = make()
    ctl(np.array([0.1, 0.1, 0.8]), 0.0)
    assert ctl(np.array([0.5, 0.2, 0.3]), 0.5) == pytest.approx(0.5)  # still heading for 2
    assert ctl.target == 2.0
    assert ctl(np.array([0.5, 0.2, 0.3]), 1.0) == pytest.approx(1.0)


@pytest.mark.parametrize("bad", [math.nan, -math.inf])
def test_a_non_finite_row_never_changes_the_output(bad):
    ctl = make()
    ctl(np.array([0.1, 0.1, 0.8]), 0.0)
    ctl(np.array([0.1, 0.1, 0.8]), 0.5)
    assert ctl(np.array([bad, 0.1, 0.8]), 1.0) == pytest.approx(0.5)
    assert ctl.target == 2.0


def test_reset_holds_the_amplitude_given_until_a_confident_decision():
    ctl = make(amplitudes=(0.5, 1.0))
    assert ctl.amplitude == 0.5  # the lowest class amplitude
    ctl.reset(0.8)
    ctl(np.array([0.5, 0.5]), 0.0)
    assert ctl(np.array([0.5, 0.5]), 1.0) == 0.8
    ctl.reset()
    assert ctl.amplitude == 0.5 and ctl.target == 0.5


def test_a_row_of_the_wrong_length_is_refused():
    with pytest.raises(ValueError, match=r"row must have shape \(3,\)"):
        make()(np.array([0.5, 0.5]), 0.0)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"amplitudes": (1.0,)}, "amplitudes"),
        ({"amplitudes": (1.0, -1.0)}, "amplitudes"),
        ({"amplitudes": (1.0, math.nan)}, "amplitudes"),
        ({"abstain_below": 1.5}, "abstain_below"),
        ({"ramp_up_per_s": 0.0}, "ramp_up_per_s"),
        ({"ramp_down_per_s": math.inf}, "ramp_down_per_s"),
    ],
)
def test_settings_errors_name_the_field(kw, match):
    with pytest.raises(ValueError, match=match):
        make(**kw)
