"""Tests of the common average reference and the channel picker."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bci.signal import ChannelPicker, CommonAverageReference, CommonAverageReferenceSettings
from tests.signal._streaming import chunk_bounds, random_signal, stream

NAMES = ("Fz", "C3", "Cz", "C4", "EOG", "SampleIndex")


@settings(max_examples=80, deadline=None)
@given(data=st.data(), n_samples=st.integers(1, 200), seed=st.integers(0, 2**32 - 1))
def test_car_is_chunk_invariant(data, n_samples, seed):
    signal, times = random_signal(seed, n_samples, len(NAMES))
    bounds = data.draw(chunk_bounds(n_samples))
    exclude = tuple(data.draw(st.lists(st.sampled_from(NAMES[3:]), unique=True)))
    make = CommonAverageReferenceSettings(exclude=exclude)
    whole, _ = CommonAverageReference(make, NAMES)(signal, times)
    streamed, streamed_times = stream(CommonAverageReference(make, NAMES), signal, times, bounds)
    np.testing.assert_allclose(streamed, whole, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(streamed_times, times)


def test_car_subtracts_the_mean_over_channels():
    signal, times = random_signal(0, 30, 4)
    out, out_times = CommonAverageReference()(signal, times)
    np.testing.assert_allclose(out, signal - signal.mean(axis=1, keepdims=True), atol=1e-12)
    np.testing.assert_allclose(out.sum(axis=1), 0.0, atol=1e-10)
    assert out_times is times or np.array_equal(out_times, times)


def test_car_excluded_channels_pass_through_and_stay_out_of_the_mean():
    signal, times = random_signal(1, 30, len(NAMES))
    stage = CommonAverageReference(
        CommonAverageReferenceSettings(exclude=("EOG", "SampleIndex")), NAMES
    )
    out, _ = stage(signal, times)
    np.testing.assert_array_equal(out[:, 4:], signal[:, 4:])
    mean = signal[:, :4].mean(axis=1, keepdims=True)
    np.testing.assert_allclose(out[:, :4], signal[:, :4] - mean, atol=1e-12)


def test_car_empty_chunk_keeps_channel_count():
    out, times = CommonAverageReference()(np.empty((0, 5)), np.empty(0))
    assert out.shape == (0, 5) and times.shape == (0,)
    stage = CommonAverageReference(CommonAverageReferenceSettings(exclude=("EOG",)), NAMES)
    assert stage(np.empty((0, len(NAMES))), np.empty(0))[0].shape == (0, len(NAMES))


def test_car_errors_name_the_parameter():
    with pytest.raises(ValueError, match="ch_names is required"):
        CommonAverageReference(CommonAverageReferenceSettings(exclude=("EOG",)))
    with pytest.raises(ValueError, match=r"exclude.*\['T7'\].*available.*Fz"):
        CommonAverageReference(CommonAverageReferenceSettings(exclude=("T7",)), NAMES)
    with pytest.raises(ValueError, match="at least one channel"):
        CommonAverageReference(CommonAverageReferenceSettings(exclude=("a", "b")), ("a", "b"))
    with pytest.raises(ValueError, match="exclude must not repeat"):
        CommonAverageReferenceSettings(exclude=("EOG", "EOG"))
    stage = CommonAverageReference(CommonAverageReferenceSettings(exclude=("EOG",)), NAMES)
    with pytest.raises(ValueError, match="data has 3 channels"):
        stage(np.zeros((2, 3)), np.zeros(2))


def test_channel_picker_picks_in_the_order_given():
    signal, times = random_signal(2, 20, len(NAMES))
    picker = ChannelPicker(NAMES, ["C4", "Fz", "Cz"])
    out, out_times = picker(signal, times)
    np.testing.assert_array_equal(out, signal[:, [3, 0, 2]])
    np.testing.assert_array_equal(out_times, times)
    assert picker.ch_names_out == ("C4", "Fz", "Cz")
    assert picker.indices.tolist() == [3, 0, 2]
    assert picker(np.empty((0, len(NAMES))), np.empty(0))[0].shape == (0, 3)


def test_channel_picker_unknown_names_list_missing_and_available():
    with pytest.raises(ValueError, match=r"\['T7', 'O1'\].*available channels: \['Fz'") as info:
        ChannelPicker(NAMES, ["C3", "T7", "O1"])
    assert "SampleIndex" in str(info.value)


@pytest.mark.parametrize(
    ("ch_names_in", "picks", "message"),
    [
        (NAMES, [], "picks must name at least one"),
        (NAMES, ["C3", "C3"], "picks must not repeat"),
        (NAMES, "C3", "picks must be a sequence"),
        (("a", "a"), ["a"], "ch_names_in must not repeat"),
        (("a", 1), ["a"], "ch_names_in must hold channel names"),
    ],
)
def test_channel_picker_bad_arguments(ch_names_in, picks, message):
    with pytest.raises(ValueError, match=message):
        ChannelPicker(ch_names_in, picks)


def test_channel_picker_rejects_a_different_channel_count():
    with pytest.raises(ValueError, match="data has 2 channels"):
        ChannelPicker(NAMES, ["C3"])(np.zeros((4, 2)), np.zeros(4))
