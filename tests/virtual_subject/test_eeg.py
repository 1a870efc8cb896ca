"""EEG generator: reproducible, chunk-invariant, realistic spectra, channel layouts, artifacts."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy import signal

from bci.streams import SAMPLE_INDEX_CHANNEL
from devices.virtual_subject import EegGenerator, EegSettings, SubjectParams, VirtualSubject
from devices.virtual_subject.montage import CHANNELS_32, CHANNELS_64

from .helpers import band_power


def _scripted(subject: VirtualSubject) -> None:
    """A few cues and stimulation commands so that chunk-invariance covers event handling."""
    subject.cue("right", time=1.0)
    subject.cue("rest", time=3.2)
    subject.cue("left", time=4.0)
    subject.stimulate(1.0, 10.0, 0, "tacs", "Oz", "Cz", time=1.5)
    subject.stimulate(0.0, 10.0, 0, "tacs", "Oz", "Cz", time=2.5)
    subject.stimulate(90.0, 0.0, 1, "tms", "C3", None, time=2.0)
    subject.stimulate(1.0, 0.0, 0, "tdcs", "C3", "Fp2", time=0.5)
    subject.stimulate(2.0, 130.0, 0, "pulse_train", "C4", None, time=4.5)


def _subject(seed: int = 3, **settings) -> VirtualSubject:
    return VirtualSubject(SubjectParams.from_seed(seed), EegSettings(**settings), fnirs=None)


def test_same_seed_gives_identical_signal():
    a, b = _subject(sfreq=250.0), _subject(sfreq=250.0)
    _scripted(a)
    _scripted(b)
    assert np.array_equal(a.eeg(1500), b.eeg(1500))


def test_any_chunking_gives_the_same_signal():
    whole = _subject(sfreq=500.0, sample_index=True)
    _scripted(whole)
    expected = whole.eeg(3000)
    chunked = _subject(sfreq=500.0, sample_index=True)
    _scripted(chunked)
    rng = np.random.default_rng(0)
    parts, done = [], 0
    while done < 3000:
        n = int(min(rng.choice([0, 1, 2, 7, 10, 33, 250]), 3000 - done))
        parts.append(chunked.eeg(n))
        done += n
    np.testing.assert_allclose(np.vstack(parts), expected, rtol=0, atol=1e-9)


def test_empty_chunk_has_right_shape_and_leaves_state():
    subject = _subject(sfreq=250.0)
    empty = subject.eeg(0)
    assert empty.shape == (0, 32) and subject.time == 0.0
    reference = _subject(sfreq=250.0)
    np.testing.assert_array_equal(subject.eeg(100), reference.eeg(100))


def test_different_seeds_have_different_alpha_peaks():
    peaks = []
    for seed in (4, 6):  # IAF 8.8 and 11.7 Hz
        subject = _subject(seed, sfreq=250.0)
        oz = subject.eeg_channel_names.index("Oz")
        freqs, psd = signal.welch(subject.eeg(250 * 120)[:, oz], fs=250.0, nperseg=2000)
        band = (freqs >= 7) & (freqs <= 13.5)
        peaks.append(freqs[band][np.argmax(psd[band])])
        assert abs(peaks[-1] - subject.params.rhythms.alpha_frequency_hz) < 0.8
    assert abs(peaks[0] - peaks[1]) > 1.5


def test_background_follows_the_subjects_power_law():
    params = SubjectParams.from_seed(4)
    quiet = dataclasses.replace(
        params,
        artifacts=dataclasses.replace(params.artifacts, blink_rate_per_min=0.0,
                                      emg_rate_per_min=0.0, emg_tonic_uv=0.0),
    )  # fmt: skip
    gen = EegGenerator(quiet, EegSettings(channels=("Fz",), sfreq=250.0))
    freqs, psd = signal.welch(gen(250 * 120)[:, 0], fs=250.0, nperseg=1000)
    fit = ((freqs >= 2) & (freqs <= 6)) | ((freqs >= 32) & (freqs <= 45))
    slope = np.polyfit(np.log10(freqs[fit]), np.log10(psd[fit,]), 1)[0]
    assert abs(-slope - quiet.background.aperiodic_exponent) < 0.5


@pytest.mark.parametrize("line_freq", [50.0, 60.0])
def test_line_noise_at_mains_frequency(line_freq):
    subject = _subject(sfreq=500.0, line_freq=line_freq)
    freqs, psd = signal.welch(subject.eeg(500 * 20), fs=500.0, nperseg=1000, axis=0)
    peak = psd[np.argmin(np.abs(freqs - line_freq))]
    around = np.median(psd[(freqs > line_freq + 3) & (freqs < line_freq + 8)], axis=0)
    assert np.median(peak / around) > 5  # a clear spectral line above the background


@pytest.mark.parametrize(
    ("n_channels", "expected"), [(32, CHANNELS_32), (64, CHANNELS_64), (8, None), (128, None)]
)
def test_channel_layouts(n_channels, expected):
    settings = EegSettings(n_channels=n_channels, sfreq=1000.0)
    names = settings.eeg_channel_names
    assert len(names) == n_channels and len(set(names)) == n_channels
    assert {"C3", "Cz", "C4"} <= set(names)
    if expected is not None:
        assert names == expected
    data = EegGenerator(SubjectParams.from_seed(0), settings)(100)
    assert data.shape == (100, n_channels) and np.all(np.isfinite(data))


@pytest.mark.parametrize("sfreq", [250.0, 2000.0])
def test_sampling_rates_keep_amplitudes(sfreq):
    x = _subject(sfreq=sfreq).eeg(int(sfreq * 10))
    c3 = EegSettings().eeg_channel_names.index("C3")
    mu = band_power(x[:, [c3]], sfreq, 8, 30)[0] * 22  # ≈ band variance
    assert 20 < mu < 400  # µV²: a few µV to ~20 µV RMS of sensorimotor rhythm


def test_sample_index_counts_from_zero_across_chunks():
    subject = _subject(sfreq=250.0, sample_index=True)
    assert subject.eeg_channel_names[-1] == SAMPLE_INDEX_CHANNEL
    index = np.concatenate([subject.eeg(n)[:, -1] for n in (3, 0, 250, 47)])
    np.testing.assert_array_equal(index, np.arange(300))


@pytest.mark.parametrize(("kind", "low", "high"), [("noisy", 60.0, 1e4), ("flat", 0.0, 0.2)])
def test_bad_channel(kind, low, high):
    subject = _subject(sfreq=250.0, bad_channel="P3", bad_channel_kind=kind)
    x = subject.eeg(2500)
    x = x - x.mean(axis=0)
    bad = subject.eeg_channel_names.index("P3")
    assert low < x[:, bad].std() < high
    assert np.median(x.std(axis=0)) < 60


def test_blinks_are_frontal():
    subject = _subject(6, sfreq=250.0)
    x = subject.eeg(250 * 60)
    sos = signal.butter(2, [0.5, 8.0], "bandpass", fs=250.0, output="sos")
    slow = signal.sosfiltfilt(sos, x, axis=0)
    names = subject.eeg_channel_names
    fp1, oz = names.index("Fp1"), names.index("Oz")
    assert slow[:, fp1].max() > 60  # blink peaks of ~100-200 µV at Fp1
    assert slow[:, fp1].max() > 3 * slow[:, oz].max()


def test_emg_bursts_are_temporal_and_broadband():
    subject = _subject(2, sfreq=500.0)
    x = subject.eeg(500 * 60)
    names = subject.eeg_channel_names
    gamma = band_power(x, 500.0, 60, 140)
    assert gamma[names.index("T7")] > 3 * gamma[names.index("Pz")]


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [("sfreq", 50.0, "sfreq"), ("channels", ("C3", "XX9"), "XX9"), ("bad_channel", "Iz", "Iz"),
     ("line_freq", 300.0, "line_freq"), ("n_channels", 2, "n_channels"),
     ("bad_channel_kind", "loose", "loose")],
)  # fmt: skip
def test_bad_settings_name_parameter_and_value(field, value, match):
    with pytest.raises(ValueError, match=match):
        EegSettings(**{field: value})
    with pytest.raises(ValueError, match="n_samples"):
        _subject(sfreq=250.0).eeg(-1)
