"""Tests of optical density and the modified Beer–Lambert law, against MNE-Python."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bci.signal import (
    BeerLambert,
    BeerLambertSettings,
    OpticalDensity,
    OpticalDensitySettings,
    parse_fnirs_channels,
)
from bci.signal._extinction import WAVELENGTH_RANGE_NM, extinction_coefficients
from tests.signal._streaming import chunk_bounds, stream

SFREQ = 10.0
NAMES = ("S1_D1 760", "S1_D1 850", "S2_D1 760", "S2_D1 850", "S2_D2 760", "S2_D2 850")
# Optode positions, m: three pairs 3.0, 3.5 and 2.5 cm apart.
SOURCES = {"S1": (0.0, 0.0, 0.0), "S2": (0.065, 0.0, 0.0)}
DETECTORS = {"D1": (0.03, 0.0, 0.0), "D2": (0.065, 0.025, 0.0)}
DISTANCES_CM = (3.0, 3.5, 2.5)


def _intensities(seed: int, n_samples: int, n_channels: int = len(NAMES)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    levels = rng.uniform(0.2, 3.0, n_channels)
    return levels * np.exp(rng.normal(0.0, 0.05, (n_samples, n_channels)))


def _mne_raw(intensities: np.ndarray):
    """An MNE RawArray of fnirs_cw_amplitude channels with optode positions and wavelengths."""
    import mne

    info = mne.create_info(list(NAMES), SFREQ, "fnirs_cw_amplitude")
    for ch, name in zip(info["chs"], NAMES, strict=True):
        pair, wavelength = name.split(" ")
        source, detector = (np.array(p) for p in (SOURCES[pair[:2]], DETECTORS[pair[3:]]))
        ch["loc"][:3] = (source + detector) / 2
        ch["loc"][3:6] = source
        ch["loc"][6:9] = detector
        ch["loc"][9] = float(wavelength)
    return mne.io.RawArray(intensities.T, info, verbose="error")


def test_optical_density_and_beer_lambert_match_mne():
    from mne.preprocessing.nirs import beer_lambert_law, optical_density, source_detector_distances

    intensities = _intensities(0, 120)
    times = np.arange(120) / SFREQ
    raw = _mne_raw(intensities)
    np.testing.assert_allclose(
        source_detector_distances(raw.info)[::2] * 100, DISTANCES_CM, rtol=1e-12
    )
    raw_od = optical_density(raw, verbose="error")
    # MNE's I0 is the mean of the whole recording: a baseline as long as the recording.
    od, od_times = OpticalDensity(OpticalDensitySettings(baseline_samples=120))(intensities, times)
    np.testing.assert_allclose(od, raw_od.get_data().T, rtol=1e-9, atol=1e-15)
    np.testing.assert_array_equal(od_times, times)
    for ppf in (6.0, (6.5, 5.5)):
        raw_hb = beer_lambert_law(raw_od, ppf=ppf)
        stage = BeerLambert(BeerLambertSettings(NAMES, DISTANCES_CM, ppf=ppf))
        assert stage.ch_names_out == tuple(raw_hb.ch_names)
        hb, _ = stage(od, times)
        expected = raw_hb.get_data().T
        np.testing.assert_allclose(hb, expected, rtol=1e-9, atol=1e-9 * np.abs(expected).max())
        # And from MNE's own optical density, to isolate the Beer-Lambert step.
        hb_from_mne_od, _ = stage(raw_od.get_data().T, times)
        np.testing.assert_allclose(hb_from_mne_od, expected, rtol=1e-9, atol=1e-18)


def test_beer_lambert_inverts_the_forward_model_with_three_wavelengths():
    # Least squares over three wavelengths: no MNE reference is needed, the forward model is
    # the law itself, OD(λ) = 2.303 · ε(λ) · d · ppf · c, so noise-free OD must give c back.
    names = ("S1_D1 690", "S1_D1 760", "S1_D1 850", "S2_D1 690", "S2_D1 760", "S2_D1 850")
    distances, ppf = (3.0, 1.5), 6.0
    rng = np.random.default_rng(3)
    hb = rng.normal(0.0, 1e-6, (50, 4))  # (hbo, hbr) per pair, mol/L
    od = np.empty((50, 6))
    for p in range(2):
        for k, wl in enumerate((690, 760, 850)):
            eps = np.array(extinction_coefficients(wl))
            od[:, 3 * p + k] = 2.303 * distances[p] * ppf * (hb[:, 2 * p : 2 * p + 2] @ eps)
    out, _ = BeerLambert(BeerLambertSettings(names, distances, ppf))(od, np.zeros(50))
    np.testing.assert_allclose(out, hb, rtol=1e-9, atol=1e-9 * np.abs(hb).max())


@settings(max_examples=80, deadline=None)
@given(
    data=st.data(),
    n_samples=st.integers(1, 100),
    baseline=st.integers(1, 20),
    seed=st.integers(0, 2**32 - 1),
)
def test_optical_density_is_chunk_invariant(data, n_samples, baseline, seed):
    intensities = _intensities(seed, n_samples, 4)
    intensities[data.draw(st.integers(0, n_samples - 1)), 1] = -1.0  # one bad sample
    times = np.arange(n_samples) / SFREQ
    make = OpticalDensitySettings(baseline_samples=baseline)
    whole_stage = OpticalDensity(make)
    whole, whole_times = whole_stage(intensities, times)
    stage = OpticalDensity(make)
    streamed, streamed_times = stream(stage, intensities, times, data.draw(chunk_bounds(n_samples)))
    np.testing.assert_array_equal(streamed, whole)
    np.testing.assert_array_equal(streamed_times, whole_times)
    assert stage.n_clipped == whole_stage.n_clipped == 1
    expected_n = n_samples if n_samples >= baseline else 0
    assert whole.shape == (expected_n, 4)


def test_optical_density_holds_back_until_the_baseline_is_complete():
    intensities = _intensities(4, 10, 2)
    times = np.arange(10) / SFREQ
    stage = OpticalDensity(OpticalDensitySettings(baseline_samples=4))
    od, od_times = stage(intensities[:3], times[:3])
    assert od.shape == (0, 2) and od_times.shape == (0,) and stage.baseline is None
    od, od_times = stage(intensities[3:6], times[3:6])
    np.testing.assert_array_equal(od_times, times[:6])
    i0 = intensities[:4].mean(axis=0)
    np.testing.assert_allclose(stage.baseline, i0)
    np.testing.assert_allclose(od, -np.log(intensities[:6] / i0), rtol=1e-14)


def test_optical_density_default_baseline_is_the_first_sample():
    intensities = _intensities(5, 5, 3)
    od, _ = OpticalDensity()(intensities, np.arange(5.0))
    np.testing.assert_allclose(od, -np.log(intensities / intensities[0]), rtol=1e-14)
    assert not od[0].any()


def test_optical_density_clips_non_positive_intensities():
    stage = OpticalDensity(OpticalDensitySettings(min_intensity=1e-3))
    intensities = np.array([[1.0, 2.0], [0.0, -5.0], [1e-4, 2.0]])
    od, _ = stage(intensities, np.arange(3.0))
    assert stage.n_clipped == 3
    np.testing.assert_allclose(od[1:, 0], -np.log(1e-3))
    np.testing.assert_allclose(od[1, 1], -np.log(1e-3 / 2.0))
    assert np.isfinite(od).all()


def test_optical_density_empty_chunk_channel_change_and_reset():
    stage = OpticalDensity(OpticalDensitySettings(baseline_samples=2))
    assert stage(np.empty((0, 3)), np.empty(0))[0].shape == (0, 3)
    stage(_intensities(6, 3, 3), np.arange(3.0))
    baseline = stage.baseline
    assert stage(np.empty((0, 3)), np.empty(0))[0].shape == (0, 3)
    np.testing.assert_array_equal(stage.baseline, baseline)
    two = _intensities(7, 3, 2)
    od, _ = stage(two, np.arange(3.0))  # new channel layout: a new baseline
    np.testing.assert_allclose(stage.baseline, two[:2].mean(axis=0))
    assert od.shape == (3, 2)
    stage.reset()
    assert stage.baseline is None and stage.n_clipped == 0


def test_parse_fnirs_channels_groups_pairs():
    pairs = parse_fnirs_channels(["S1_D1 760", "S1_D1 850", "S10_D2 690.5", "S10_D2 830"])
    assert pairs == [("S1_D1", [0, 1], [760.0, 850.0]), ("S10_D2", [2, 3], [690.5, 830.0])]


@pytest.mark.parametrize(
    ("names", "message"),
    [
        ([], "at least one"),
        (["S1_D1 760", "S1_D1 hbo"], r"ch_names\[1\] must look like"),
        (["S1_D1 760", "S2_D1 760", "S1_D1 850"], "S1_D1 reappears"),
        (["S1_D1 760", "S2_D1 760", "S2_D1 850"], "at least two wavelengths"),
        (["S1_D1 760", "S1_D1 760"], "must not repeat"),
    ],
)
def test_parse_fnirs_channels_errors(names, message):
    with pytest.raises(ValueError, match=message):
        parse_fnirs_channels(names)


def test_extinction_table_values_and_interpolation():
    assert WAVELENGTH_RANGE_NM == (650.0, 1000.0)
    assert extinction_coefficients(760) == (586.0, 1548.52)  # Prahl's table, cm⁻¹/M
    assert extinction_coefficients(850) == (1058.0, 691.32)
    np.testing.assert_allclose(extinction_coefficients(851), ((1058 + 1062) / 2, 691.2))
    with pytest.raises(ValueError, match="wavelength_nm"):
        extinction_coefficients(600)


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"distances_cm": 0.0}, "distances_cm"),
        ({"distances_cm": (3.0, 3.0)}, "distances_cm"),
        ({"distances_cm": 30.0}, "distances_cm"),
        ({"distances_cm": (3.0, -1.0, 3.0)}, r"distances_cm\[1\]"),
        ({"ppf": (6.0, 6.0, 6.0)}, "ppf"),
        ({"ppf": float("nan")}, "ppf"),
        ({"ch_names": ("S1_D1 500", "S1_D1 850")}, "wavelength_nm"),
    ],
)
def test_bad_beer_lambert_settings_name_the_parameter(kwargs, parameter):
    kwargs = {"ch_names": NAMES, "distances_cm": 3.0, **kwargs}
    with pytest.raises(ValueError, match=parameter):
        BeerLambertSettings(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [({"baseline_samples": 0}, "baseline_samples"), ({"min_intensity": 0.0}, "min_intensity")],
)
def test_bad_optical_density_settings_name_the_parameter(kwargs, parameter):
    with pytest.raises(ValueError, match=parameter):
        OpticalDensitySettings(**kwargs)


def test_beer_lambert_shapes_and_channel_check():
    stage = BeerLambert(BeerLambertSettings(list(NAMES), [3.0, 3.5, 2.5]))
    assert stage.settings.distances_cm == (3.0, 3.5, 2.5)
    assert stage.matrix.shape == (6, 6) and not stage.matrix.flags.writeable
    assert stage(np.empty((0, 6)), np.empty(0))[0].shape == (0, 6)
    with pytest.raises(ValueError, match="data has 4 channels"):
        stage(np.zeros((2, 4)), np.zeros(2))
