"""Subject parameters: reproducible from a seed, varied across seeds, validated."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from devices.virtual_subject import RhythmParams, StimulationParams, SubjectParams


def test_same_seed_same_subject():
    assert SubjectParams.from_seed(11) == SubjectParams.from_seed(11)


def test_seeds_make_a_varied_population():
    population = [SubjectParams.from_seed(seed) for seed in range(60)]
    iaf = np.array([p.rhythms.alpha_frequency_hz for p in population])
    assert len(set(iaf.round(6))) == len(iaf)  # every subject has its own alpha peak
    assert 9.3 < iaf.mean() < 10.7 and 0.6 < iaf.std() < 1.3  # Klimesch 1999: 10 ± 1 Hz
    erd = np.array([p.erd.mu_erd for p in population])
    assert erd.min() >= 0.5 and erd.max() <= 0.8 and erd.std() > 0.05
    exponent = np.array([p.background.aperiodic_exponent for p in population])
    assert 1.0 <= exponent.min() and exponent.max() <= 2.0
    blink = np.array([p.artifacts.blink_rate_per_min for p in population])
    assert 10 < np.median(blink) < 20  # Bentivoglio 1997
    ceiling = np.array([p.stimulation.tdcs_ceiling for p in population])
    assert ceiling.std() > 0.05  # tDCS responsiveness differs between people


def test_typical_subject_is_valid_and_seed_is_kept():
    assert SubjectParams().rhythms.alpha_frequency_hz == 10.0
    assert SubjectParams.from_seed(5).seed == 5


def test_every_group_draws_inside_its_documented_range():
    for seed in range(200):
        SubjectParams.from_seed(seed)  # __post_init__ range checks would raise


@pytest.mark.parametrize("seed", [-1, 1.5, True])
def test_bad_seed_is_refused_with_its_value(seed):
    with pytest.raises((ValueError, TypeError), match="seed"):
        SubjectParams.from_seed(seed)


def test_out_of_range_parameter_names_field_and_value():
    with pytest.raises(ValueError, match=r"alpha_frequency_hz.*30"):
        RhythmParams(alpha_frequency_hz=30.0)
    with pytest.raises(ValueError, match=r"tdcs_ceiling.*-1"):
        StimulationParams(tdcs_ceiling=-1.0)


def test_params_are_frozen():
    params = SubjectParams()
    with pytest.raises(dataclasses.FrozenInstanceError):
        params.seed = 3  # type: ignore[misc]
