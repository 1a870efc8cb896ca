"""Tests of the streaming Butterworth and notch filters."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import signal as sps

from bci.signal import ButterworthFilter, ButterworthSettings, NotchFilter, NotchSettings
from tests.signal._streaming import chunk_bounds, random_signal, stream

SFREQ = 250.0
KIND_CUTOFFS = {
    "bandpass": {"low_hz": 8.0, "high_hz": 30.0},
    "bandstop": {"low_hz": 45.0, "high_hz": 55.0},
    "highpass": {"low_hz": 1.0},
    "lowpass": {"high_hz": 40.0},
}


def _offline(stage, data: np.ndarray) -> np.ndarray:
    """The offline reference: one sosfilt call from the stage's seeded state."""
    return sps.sosfilt(stage.sos, data, axis=0, zi=stage.initial_state(data[0]))[0]


@st.composite
def signal_and_chunks(draw: st.DrawFn):
    n_samples = draw(st.integers(1, 300))
    n_channels = draw(st.integers(1, 4))
    data, times = random_signal(draw(st.integers(0, 2**32 - 1)), n_samples, n_channels)
    return data, times, draw(chunk_bounds(n_samples))


@pytest.mark.parametrize("kind", sorted(KIND_CUTOFFS))
@settings(max_examples=60, deadline=None)
@given(case=signal_and_chunks(), order=st.integers(1, 6), seed_from_first=st.booleans())
def test_butterworth_streaming_equals_offline_sosfilt(kind, case, order, seed_from_first):
    data, times, bounds = case
    make = ButterworthSettings(
        kind=kind,
        order=order,
        sfreq=SFREQ,
        seed_from_first=seed_from_first,
        **KIND_CUTOFFS[kind],
    )
    reference = _offline(ButterworthFilter(make), data)
    out, out_times = stream(ButterworthFilter(make), data, times, bounds)
    np.testing.assert_allclose(out, reference, rtol=0, atol=1e-10)
    np.testing.assert_array_equal(out_times, times)


@settings(max_examples=80, deadline=None)
@given(
    case=signal_and_chunks(),
    freq=st.sampled_from([50.0, 60.0]),
    harmonics=st.integers(1, 4),
    quality=st.floats(5.0, 60.0),
)
def test_notch_streaming_equals_offline_sosfilt(case, freq, harmonics, quality):
    data, times, bounds = case
    make = NotchSettings(freq_hz=freq, quality=quality, harmonics=harmonics, sfreq=SFREQ)
    reference = _offline(NotchFilter(make), data)
    out, _ = stream(NotchFilter(make), data, times, bounds)
    np.testing.assert_allclose(out, reference, rtol=0, atol=1e-10)


def test_butterworth_design_matches_scipy_butter():
    stage = ButterworthFilter(
        ButterworthSettings(kind="bandpass", order=3, low_hz=8.0, high_hz=30.0, sfreq=SFREQ)
    )
    expected = sps.butter(3, [8.0, 30.0], btype="bandpass", fs=SFREQ, output="sos")
    np.testing.assert_array_equal(stage.sos, expected)
    stage.sos[:] = 0.0  # a copy: the stage's own sections stay intact
    np.testing.assert_array_equal(stage.sos, expected)


def test_seeded_state_has_no_startup_transient():
    # A constant offset is the steady state: a lowpass passes it, a highpass outputs zero.
    data = np.full((500, 2), [25.0, -3.0])
    times = np.arange(500) / SFREQ
    low = ButterworthFilter(ButterworthSettings(kind="lowpass", high_hz=40.0, sfreq=SFREQ))
    high = ButterworthFilter(ButterworthSettings(kind="highpass", low_hz=1.0, sfreq=SFREQ))
    np.testing.assert_allclose(low(data, times)[0], data, atol=1e-9)
    np.testing.assert_allclose(high(data, times)[0], 0.0, atol=1e-9)
    unseeded = ButterworthFilter(
        ButterworthSettings(kind="highpass", low_hz=1.0, sfreq=SFREQ, seed_from_first=False)
    )
    assert np.abs(unseeded(data, times)[0][0]).max() > 1.0  # the transient seeding avoids


def test_initial_state_shape_and_zero_when_unseeded():
    make = dict(kind="bandpass", order=4, low_hz=8.0, high_hz=30.0, sfreq=SFREQ)
    seeded = ButterworthFilter(ButterworthSettings(**make))
    zi = seeded.initial_state(np.array([1.0, 2.0, 3.0]))
    assert zi.shape == (seeded.sos.shape[0], 2, 3)
    np.testing.assert_allclose(zi[:, :, 1], 2 * sps.sosfilt_zi(seeded.sos))
    unseeded = ButterworthFilter(ButterworthSettings(**make, seed_from_first=False))
    assert not unseeded.initial_state(np.array([1.0, 2.0])).any()
    with pytest.raises(ValueError, match="first_sample"):
        seeded.initial_state(np.zeros((2, 2)))


@pytest.mark.parametrize("stage_cls", ["butter", "notch"])
def test_empty_chunk_returns_empty_and_leaves_state_untouched(stage_cls):
    if stage_cls == "butter":
        stage = ButterworthFilter(ButterworthSettings(kind="lowpass", high_hz=30.0, sfreq=SFREQ))
    else:
        stage = NotchFilter(NotchSettings(sfreq=SFREQ))
    empty, empty_times = stage(np.empty((0, 3)), np.empty(0))
    assert empty.shape == (0, 3) and empty_times.shape == (0,)
    assert stage.zi is None
    data, times = random_signal(1, 50, 3)
    stage(data, times)
    before = stage.zi.copy()
    empty, _ = stage(np.empty((0, 3)), np.empty(0))
    assert empty.shape == (0, 3)
    np.testing.assert_array_equal(stage.zi, before)


def test_channel_count_change_resets_state():
    make = ButterworthSettings(kind="highpass", low_hz=1.0, sfreq=SFREQ)
    stage = ButterworthFilter(make)
    data3, times3 = random_signal(2, 40, 3)
    data2, times2 = random_signal(3, 40, 2)
    stage(data3, times3)
    out, _ = stage(data2, times2)
    fresh, _ = ButterworthFilter(make)(data2, times2)
    np.testing.assert_array_equal(out, fresh)
    assert stage.zi.shape[2] == 2


def test_reset_reseeds_from_next_sample():
    make = NotchSettings(sfreq=SFREQ)
    stage = NotchFilter(make)
    data, times = random_signal(4, 60, 2)
    stage(data, times)
    stage.reset()
    assert stage.zi is None
    np.testing.assert_array_equal(stage(data, times)[0], NotchFilter(make)(data, times)[0])


def test_notch_removes_line_noise_and_skips_harmonics_above_nyquist():
    stage = NotchFilter(NotchSettings(freq_hz=50.0, harmonics=5, sfreq=SFREQ))
    assert stage.freqs_hz == (50.0, 100.0)  # 150 Hz and up are above Nyquist (125 Hz)
    assert stage.sos.shape == (2, 6)
    t = np.arange(5000) / SFREQ
    line = np.sin(2 * np.pi * 50.0 * t) + np.sin(2 * np.pi * 100.0 * t)
    out, _ = stage(line[:, None], t)
    assert np.abs(out[-500:]).max() < 0.01


def test_chunk_shape_errors_name_the_argument():
    stage = ButterworthFilter(ButterworthSettings(kind="lowpass", high_hz=30.0, sfreq=SFREQ))
    with pytest.raises(ValueError, match="data must have shape"):
        stage(np.zeros(5), np.zeros(5))
    with pytest.raises(ValueError, match="times must have shape"):
        stage(np.zeros((5, 2)), np.zeros(4))


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"kind": "notch", "low_hz": 1.0}, "kind"),
        ({"kind": "lowpass", "high_hz": 30.0, "order": 0}, "order"),
        ({"kind": "lowpass", "high_hz": 30.0, "order": 11}, "order"),
        ({"kind": "lowpass", "high_hz": 30.0, "order": 2.5}, "order"),
        ({"kind": "lowpass", "high_hz": 30.0, "order": True}, "order"),
        ({"kind": "lowpass", "high_hz": 125.0}, "high_hz"),
        ({"kind": "lowpass", "high_hz": -1.0}, "high_hz"),
        ({"kind": "lowpass", "high_hz": float("nan")}, "high_hz"),
        ({"kind": "lowpass"}, "high_hz"),
        ({"kind": "lowpass", "high_hz": 30.0, "low_hz": 1.0}, "low_hz"),
        ({"kind": "highpass", "low_hz": 0.0}, "low_hz"),
        ({"kind": "highpass", "low_hz": 1.0, "high_hz": 30.0}, "high_hz"),
        ({"kind": "bandpass", "low_hz": 30.0, "high_hz": 8.0}, "low_hz"),
        ({"kind": "bandstop", "low_hz": 8.0}, "high_hz"),
        ({"kind": "lowpass", "high_hz": 30.0, "sfreq": 0.0}, "sfreq"),
    ],
)
def test_bad_butterworth_settings_name_the_parameter(kwargs, parameter):
    kwargs = {"sfreq": SFREQ, **kwargs}
    with pytest.raises(ValueError, match=parameter):
        ButterworthSettings(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"freq_hz": 0.0}, "freq_hz"),
        ({"freq_hz": 125.0}, "freq_hz"),
        ({"quality": 0.0}, "quality"),
        ({"harmonics": 0}, "harmonics"),
        ({"sfreq": -250.0}, "sfreq"),
    ],
)
def test_bad_notch_settings_name_the_parameter(kwargs, parameter):
    kwargs = {"sfreq": SFREQ, **kwargs}
    with pytest.raises(ValueError, match=parameter) as info:
        NotchSettings(**kwargs)
    assert repr(kwargs[parameter]) in str(info.value)


def test_settings_are_frozen():
    make = ButterworthSettings(kind="lowpass", high_hz=30.0, sfreq=SFREQ)
    with pytest.raises(AttributeError):
        make.order = 2  # type: ignore[misc]
