"""Tests of the stage chain and of the package's public names."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import bci.signal
from bci.signal import (
    BandPower,
    BandPowerSettings,
    ButterworthFilter,
    ButterworthSettings,
    ChannelPicker,
    CommonAverageReference,
    NotchFilter,
    NotchSettings,
    Pipeline,
    SlidingWindow,
    SlidingWindowSettings,
)
from tests.signal._streaming import chunk_bounds, random_signal, stream

SFREQ = 250.0
NAMES = ("Fz", "C3", "Cz", "C4")


def _eeg_pipeline() -> Pipeline:
    return Pipeline(
        [
            ButterworthFilter(
                ButterworthSettings(kind="bandpass", low_hz=1.0, high_hz=40.0, sfreq=SFREQ)
            ),
            NotchFilter(NotchSettings(freq_hz=50.0, sfreq=SFREQ, harmonics=2)),
            CommonAverageReference(ch_names=NAMES),
            ChannelPicker(NAMES, ["C3", "C4"]),
            SlidingWindow(SlidingWindowSettings(length_s=0.5, hop_s=0.2, sfreq=SFREQ)),
            BandPower(BandPowerSettings(((8.0, 12.0), (13.0, 30.0)), SFREQ), ch_names=["C3", "C4"]),
        ]
    )


@settings(max_examples=50, deadline=None)
@given(data=st.data(), n_samples=st.integers(1, 400), seed=st.integers(0, 2**32 - 1))
def test_pipeline_is_chunk_invariant(data, n_samples, seed):
    signal, times = random_signal(seed, n_samples, len(NAMES), SFREQ)
    whole, whole_times = _eeg_pipeline()(signal, times)
    streamed, streamed_times = stream(
        _eeg_pipeline(), signal, times, data.draw(chunk_bounds(n_samples))
    )
    expected_n = 0 if n_samples < 125 else 1 + (n_samples - 125) // 50
    assert whole.shape == (expected_n, 4)
    np.testing.assert_allclose(streamed, whole, rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(streamed_times, whole_times)


def test_pipeline_equals_calling_the_stages_in_turn():
    signal, times = random_signal(0, 300, len(NAMES), SFREQ)
    pipeline, stages = _eeg_pipeline(), _eeg_pipeline().stages
    out, out_times = pipeline(signal, times)
    data, t = signal, times
    for stage in stages:
        data, t = stage(data, t)
    np.testing.assert_array_equal(out, data)
    np.testing.assert_array_equal(out_times, t)


def test_ch_names_out_come_from_the_last_stage_that_names_channels():
    assert _eeg_pipeline().ch_names_out == (
        "C3 8-12 Hz",
        "C3 13-30 Hz",
        "C4 8-12 Hz",
        "C4 13-30 Hz",
    )
    filt = ButterworthFilter(ButterworthSettings(kind="lowpass", high_hz=30.0, sfreq=SFREQ))
    assert Pipeline([ChannelPicker(NAMES, ["Cz"]), filt]).ch_names_out == ("Cz",)
    assert Pipeline([filt]).ch_names_out is None
    assert (
        Pipeline(
            [ChannelPicker(NAMES, ["Cz"]), BandPower(BandPowerSettings(((8.0, 12.0),), SFREQ))]
        ).ch_names_out
        is None
    )


def test_empty_pipeline_passes_chunks_through():
    signal, times = random_signal(1, 10, 2)
    out, out_times = Pipeline([])(signal, times)
    assert out is signal and out_times is times


def test_reset_resets_every_stateful_stage():
    pipeline = _eeg_pipeline()
    signal, times = random_signal(2, 300, len(NAMES), SFREQ)
    first, _ = pipeline(signal, times)
    pipeline.reset()
    assert pipeline.stages[0].zi is None and pipeline.stages[4].n_seen == 0
    again, _ = pipeline(signal, times)
    np.testing.assert_array_equal(again, first)


def test_non_callable_stage_is_a_type_error():
    with pytest.raises(TypeError, match=r"stages\[1\] must be a stage"):
        Pipeline([CommonAverageReference(), "notch"])


def test_public_names_are_exported():
    for name in bci.signal.__all__:
        assert getattr(bci.signal, name) is not None
