"""Tests of band-power features."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal as sps

from bci.signal import BandPower, BandPowerSettings, band_power

SFREQ = 250.0
BANDS = ((8.0, 12.0), (13.0, 30.0))


def _scipy_band_power(window, band):
    freqs, psd = sps.periodogram(window, SFREQ, window="hann", axis=0)
    in_band = (freqs >= band[0]) & (freqs <= band[1])
    return psd[in_band].mean(axis=0)


@pytest.mark.parametrize("n_length", [250, 251])
def test_band_power_equals_scipy_periodogram(n_length):
    rng = np.random.default_rng(0)
    window = rng.standard_normal((n_length, 3)) + 7.0
    for band in [(8.0, 12.0), (0.0, 4.0), (100.0, 125.0)]:
        np.testing.assert_allclose(
            band_power(window, SFREQ, band), _scipy_band_power(window, band), rtol=1e-12
        )
    single = band_power(window[:, 0], SFREQ, (8.0, 12.0))
    assert np.ndim(single) == 0
    np.testing.assert_allclose(single, _scipy_band_power(window[:, 0], (8.0, 12.0)), rtol=1e-12)


def test_band_power_of_a_sine_sits_in_its_band():
    t = np.arange(500) / SFREQ
    window = np.sin(2 * np.pi * 10.0 * t)[:, None]
    assert band_power(window, SFREQ, (8.0, 12.0))[0] > 1e3 * band_power(window, SFREQ, (20, 30))[0]


def test_band_power_errors():
    with pytest.raises(ValueError, match="band"):
        band_power(np.zeros((10, 1)), SFREQ, (12.0, 8.0))
    with pytest.raises(ValueError, match="window must have shape"):
        band_power(np.zeros((2, 2, 2)), SFREQ, (8.0, 12.0))
    with pytest.raises(ValueError, match="sfreq"):
        band_power(np.zeros(10), 0.0, (8.0, 12.0))
    with pytest.raises(ValueError, match=r"band \(8, 8.5\) Hz holds no frequency bin"):
        band_power(np.zeros(10), SFREQ, (8.0, 8.5))


@pytest.mark.parametrize("log", [True, False])
def test_features_are_channel_major_band_powers(log):
    rng = np.random.default_rng(1)
    windows = rng.standard_normal((4, 250, 3))
    times = np.arange(4.0)
    stage = BandPower(BandPowerSettings(BANDS, SFREQ, log=log), ch_names=["C3", "Cz", "C4"])
    features, out_times = stage(windows, times)
    assert features.shape == (4, 6)
    np.testing.assert_array_equal(out_times, times)
    for w in range(4):
        for c in range(3):
            for b, band in enumerate(BANDS):
                expected = _scipy_band_power(windows[w, :, c], band)
                expected = np.log10(expected) if log else expected
                np.testing.assert_allclose(features[w, c * 2 + b], expected, rtol=1e-12)
    assert stage.ch_names_out == (
        "C3 8-12 Hz",
        "C3 13-30 Hz",
        "Cz 8-12 Hz",
        "Cz 13-30 Hz",
        "C4 8-12 Hz",
        "C4 13-30 Hz",
    )


def test_features_do_not_depend_on_how_windows_are_batched():
    rng = np.random.default_rng(2)
    windows = rng.standard_normal((5, 100, 2))
    stage = BandPower(BandPowerSettings(BANDS, SFREQ))
    whole, _ = stage(windows, np.arange(5.0))
    parts = [stage(windows[i : i + 1], np.array([float(i)]))[0] for i in range(5)]
    np.testing.assert_allclose(np.concatenate(parts), whole, rtol=1e-13)


def test_empty_batch_and_flat_channel():
    stage = BandPower(BandPowerSettings(BANDS, SFREQ))
    assert stage.ch_names_out is None
    features, times = stage(np.empty((0, 250, 3)), np.empty(0))
    assert features.shape == (0, 6) and times.shape == (0,)
    flat, _ = stage(np.full((1, 250, 1), 3.0), np.zeros(1))
    assert np.isfinite(flat).all()


def test_stage_input_errors():
    stage = BandPower(BandPowerSettings(BANDS, SFREQ), ch_names=["C3", "C4"])
    with pytest.raises(ValueError, match="windows must have shape"):
        stage(np.zeros((250, 2)), np.zeros(250))
    with pytest.raises(ValueError, match="times must have shape"):
        stage(np.zeros((2, 250, 2)), np.zeros(3))
    with pytest.raises(ValueError, match="data has 3 channels"):
        stage(np.zeros((1, 250, 3)), np.zeros(1))
    with pytest.raises(ValueError, match="holds no frequency bin"):
        stage(np.zeros((1, 10, 2)), np.zeros(1))


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"bands": ()}, "bands"),
        ({"bands": "alpha"}, "bands"),
        ({"bands": ((12.0, 8.0),)}, r"bands\[0\]"),
        ({"bands": ((8.0, 12.0), (20.0, 200.0))}, r"bands\[1\]"),
        ({"bands": ((-1.0, 4.0),)}, r"bands\[0\]"),
        ({"bands": ((1.0, 2.0, 3.0),)}, r"bands\[0\]"),
        ({"sfreq": 0.0}, "sfreq"),
    ],
)
def test_bad_settings_name_the_parameter(kwargs, parameter):
    kwargs = {"bands": BANDS, "sfreq": SFREQ, **kwargs}
    with pytest.raises(ValueError, match=parameter):
        BandPowerSettings(**kwargs)


def test_settings_normalise_bands_to_float_tuples():
    made = BandPowerSettings([[8, 12]], SFREQ)
    assert made.bands == ((8.0, 12.0),)
