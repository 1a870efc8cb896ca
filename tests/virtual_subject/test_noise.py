"""Stateful building blocks: exact under any chunking, and what they claim spectrally."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal

from devices.virtual_subject import noise


def _splits(n: int, seed: int = 0) -> list[int]:
    rng = np.random.default_rng(seed)
    sizes, done = [], 0
    while done < n:
        sizes.append(int(min(rng.choice([0, 1, 5, 64, 300]), n - done)))
        done += sizes[-1]
    return sizes


@pytest.mark.parametrize("compiled", [True, False])
def test_stateful_sos_matches_scipy_over_any_chunking(compiled, monkeypatch):
    if not compiled:
        monkeypatch.setattr(noise, "_sosfilt", None)  # the public-API fallback
    sos = noise.power_law_sos(1.3, 500.0)
    x = np.random.default_rng(1).standard_normal((2000, 4))
    filt, parts, start = noise.StatefulSos(sos, 4), [], 0
    for size in _splits(2000):
        parts.append(filt(x[start : start + size]))
        start += size
    np.testing.assert_array_equal(np.vstack(parts), signal.sosfilt(sos, x, axis=0))


@pytest.mark.parametrize("exponent", [1.0, 1.5, 2.0])
def test_power_law_filter_slope_and_scale(exponent):
    sos = noise.power_law_sos(exponent, 1000.0)
    freqs, response = signal.sosfreqz(sos, worN=1 << 14, fs=1000.0)
    fit = (freqs > 2) & (freqs < 200)
    slope = np.polyfit(np.log10(freqs[fit]), np.log10(np.abs(response[fit]) ** 2), 1)[0]
    assert slope == pytest.approx(-exponent, abs=0.1)
    band = (freqs >= 1) & (freqs <= 40)
    variance = np.trapezoid(np.abs(response[band]) ** 2 * 2 / 1000.0, freqs[band])
    assert variance == pytest.approx(1.0, rel=0.05)  # unit RMS over 1-40 Hz


def test_band_noise_has_unit_rms():
    sos = noise.band_noise_sos(9.0, 12.0, 250.0)
    y = signal.sosfilt(sos, np.random.default_rng(2).standard_normal(250 * 400))
    assert y[2500:].std() == pytest.approx(1.0, rel=0.05)


def test_envelope_and_overlay_are_chunk_invariant():
    def run(sizes):
        env = noise.Envelope(np.ones(2), 0.3, 100.0)
        overlay = noise.KernelOverlay(2)
        overlay.add(5, np.hanning(50), np.array([1.0, 0.5]))
        overlay.add(30, np.ones((20, 2)))
        out, first = [], 0
        for k, size in enumerate(sizes):
            if k == 2:
                env.target = np.array([0.2, 1.5])
            extra = overlay(first, size)
            out.append(env(size) + (0.0 if extra is None else extra))
            first += size
        return np.vstack(out)

    reference = run([10, 10, 80])
    assert np.allclose(run([10, 10, 3, 0, 40, 37]), reference, atol=1e-12)
    assert reference[-1] == pytest.approx([0.2, 1.5], abs=0.1)  # converges to its targets


def test_marked_poisson_process_does_not_depend_on_query_times():
    def events(ends):
        process = noise.PoissonTimes(0.5, noise.rng_stream(3, 99), n_marks=2)
        out = []
        for end in ends:
            out += process.until(end)
        return out

    whole, pieces = events([200.0]), events(np.linspace(1, 200, 77))
    assert len(whole) == len(pieces) > 50
    for (t1, m1), (t2, m2) in zip(whole, pieces, strict=True):
        assert t1 == t2 and np.array_equal(m1, m2)


def test_rng_streams_are_independent_and_validated():
    a = noise.rng_stream(1, noise.STREAM_BLINKS).random(3)
    b = noise.rng_stream(1, noise.STREAM_EMG).random(3)
    assert not np.allclose(a, b)
    np.testing.assert_array_equal(a, noise.rng_stream(1, noise.STREAM_BLINKS).random(3))
    with pytest.raises(ValueError, match="seed"):
        noise.rng_stream(-2, 0)


def test_set_output_state_needs_a_first_order_section():
    with pytest.raises(RuntimeError, match="first-order"):
        noise.StatefulSos(noise.band_noise_sos(8, 12, 250), 1).set_output_state(np.zeros(1))
