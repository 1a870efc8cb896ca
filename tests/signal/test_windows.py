"""Tests of the sliding window."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bci.signal import SlidingWindow, SlidingWindowSettings
from tests.signal._streaming import chunk_bounds, random_signal, stream

SFREQ = 100.0


def _offline_windows(data, times, n_length, n_hop):
    ends = range(n_length - 1, data.shape[0], n_hop)
    windows = np.stack([data[e - n_length + 1 : e + 1] for e in ends]) if ends else None
    if windows is None:
        windows = np.empty((0, n_length, data.shape[1]))
    return windows, times[list(ends)]


@settings(max_examples=100, deadline=None)
@given(
    data=st.data(),
    n_samples=st.integers(1, 200),
    n_channels=st.integers(1, 3),
    n_length=st.integers(1, 40),
    n_hop=st.integers(1, 50),
    seed=st.integers(0, 2**32 - 1),
)
def test_windows_are_chunk_invariant_and_match_offline(
    data, n_samples, n_channels, n_length, n_hop, seed
):
    signal, times = random_signal(seed, n_samples, n_channels)
    bounds = data.draw(chunk_bounds(n_samples))
    stage = SlidingWindow(SlidingWindowSettings(n_length / SFREQ, n_hop / SFREQ, SFREQ))
    assert (stage.n_length, stage.n_hop) == (n_length, n_hop)
    windows, end_times = stream(stage, signal, times, bounds)
    expected, expected_times = _offline_windows(signal, times, n_length, n_hop)
    np.testing.assert_array_equal(windows, expected)
    np.testing.assert_array_equal(end_times, expected_times)
    assert stage.n_seen == n_samples


def test_first_window_only_after_length_samples():
    stage = SlidingWindow(SlidingWindowSettings(length_s=0.5, hop_s=0.1, sfreq=SFREQ))
    signal, times = random_signal(0, 60, 2)
    windows, end_times = stage(signal[:49], times[:49])
    assert windows.shape == (0, 50, 2) and end_times.shape == (0,)
    windows, end_times = stage(signal[49:60], times[49:60])
    assert windows.shape == (2, 50, 2)  # ends at samples 49 and 59
    np.testing.assert_array_equal(end_times, times[[49, 59]])
    np.testing.assert_array_equal(windows[1], signal[10:60])


def test_empty_chunk_leaves_state_untouched():
    stage = SlidingWindow(SlidingWindowSettings(length_s=0.1, hop_s=0.05, sfreq=SFREQ))
    signal, times = random_signal(1, 25, 3)
    stage(signal[:12], times[:12])
    windows, end_times = stage(np.empty((0, 3)), np.empty(0))
    assert windows.shape == (0, 10, 3) and end_times.shape == (0,)
    assert stage.n_seen == 12
    out, _ = stage(signal[12:], times[12:])
    expected, _ = _offline_windows(signal, times, 10, 5)
    np.testing.assert_array_equal(out, expected[1:])  # the window ending at 9 came earlier


def test_channel_count_change_and_reset_start_over():
    stage = SlidingWindow(SlidingWindowSettings(length_s=0.1, hop_s=0.1, sfreq=SFREQ))
    signal3, times3 = random_signal(2, 15, 3)
    signal2, times2 = random_signal(3, 15, 2)
    stage(signal3, times3)
    windows, _ = stage(signal2, times2)
    assert stage.n_seen == 15 and windows.shape == (1, 10, 2)
    np.testing.assert_array_equal(windows[0], signal2[:10])
    stage.reset()
    assert stage.n_seen == 0
    windows, _ = stage(signal2[:9], times2[:9])
    assert windows.shape[0] == 0


def test_lengths_round_to_whole_samples():
    made = SlidingWindowSettings(length_s=0.1, hop_s=0.03, sfreq=256.0)
    assert (made.n_length, made.n_hop) == (26, 8)


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"length_s": 0.0}, "length_s"),
        ({"length_s": 0.001}, "length_s"),
        ({"hop_s": -0.1}, "hop_s"),
        ({"hop_s": 0.001}, "hop_s"),
        ({"sfreq": float("inf")}, "sfreq"),
    ],
)
def test_bad_settings_name_the_parameter(kwargs, parameter):
    kwargs = {"length_s": 1.0, "hop_s": 0.1, "sfreq": SFREQ, **kwargs}
    with pytest.raises(ValueError, match=parameter):
        SlidingWindowSettings(**kwargs)
