"""PhaseTrigger: causal phase estimation, amplitude gate, crossing prediction, refractory."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import signal as sps

from bci.control import (
    PhaseDecision,
    PhaseTrigger,
    PhaseTriggerSettings,
    montage_weights,
    pipeline_sos,
)
from bci.engine.preprocess import eeg_pipeline
from bci.protocol.schema import PreprocessingSection
from bci.signal import ButterworthFilter, ButterworthSettings, ChannelPicker

FS = 1000.0
METHODS = ("echt", "ar")


def make(**kw) -> PhaseTrigger:
    return PhaseTrigger(PhaseTriggerSettings(**{"sfreq": FS, "power_percentile": 0.0, **kw}))


def sinusoid(freq: float, n: int, phase0: float = 0.3, noise: float = 0.0, seed: int = 0):
    t = np.arange(n) / FS
    x = np.cos(2 * np.pi * freq * t + phase0)
    return x + noise * np.random.default_rng(seed).standard_normal(n), t


def phase_errors(trigger, x, t, freq, phase0=0.3) -> np.ndarray:
    """Estimated − true phase, rad, at many window ends."""
    errors = []
    for end in range(trigger.n_samples + 50, x.size, 41):
        phase_deg, _, _ = trigger.estimate(x[:end])
        errors.append(math.radians(phase_deg) - (2 * np.pi * freq * t[end - 1] + phase0))
    return np.asarray(errors)


def circular(errors: np.ndarray) -> tuple[float, float]:
    mean = np.mean(np.exp(1j * errors))
    return math.degrees(np.angle(mean)), abs(mean)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("freq", [8.5, 10.0, 12.5])
def test_phase_of_a_noisy_sinusoid_is_accurate(method, freq):
    x, t = sinusoid(freq, 4000, noise=0.2)
    mean_error, plv = circular(phase_errors(make(method=method), x, t, freq))
    assert abs(mean_error) < 5.0
    assert plv > (0.99 if method == "echt" else 0.9)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("sfreq", [500.0, 2000.0])
def test_other_rates_are_handled(method, sfreq):
    trigger = PhaseTrigger(PhaseTriggerSettings(sfreq=sfreq, method=method, power_percentile=0))
    t = np.arange(int(2 * sfreq)) / sfreq
    x = np.cos(2 * np.pi * 10.0 * t)
    phase_deg, freq, _amplitude = trigger.estimate(x)
    expected = math.degrees(2 * np.pi * 10.0 * t[-1])
    assert abs((phase_deg - expected + 180) % 360 - 180) < 5.0
    assert freq == pytest.approx(10.0, abs=0.5)


@pytest.mark.parametrize("method", METHODS)
def test_frequency_and_amplitude_estimates(method):
    x, _ = sinusoid(11.0, 3000, noise=0.1)
    trigger = make(method=method)
    estimates = np.array([trigger.estimate(x[:end]) for end in range(600, 3000, 50)])
    assert np.median(estimates[:, 1]) == pytest.approx(11.0, abs=0.3)
    assert np.all(estimates[:, 2] > 0.3)


def test_frequency_falls_back_to_the_band_centre_without_a_rhythm():
    x = np.cos(2 * np.pi * 30.0 * np.arange(600) / FS)  # far outside the 8–13 Hz band
    _, freq, _ = make(method="echt").estimate(x)
    assert freq == pytest.approx(10.5)


@pytest.mark.parametrize("method", METHODS)
def test_upstream_filter_phase_is_taken_back_out(method):
    freq = 11.0
    x, t = sinusoid(freq, 6000)
    highpass = ButterworthFilter(
        ButterworthSettings(kind="bandpass", order=4, low_hz=1.0, high_hz=45.0, sfreq=FS)
    )
    filtered = highpass(x[:, np.newaxis], t)[0][:, 0]
    lag = math.degrees(np.angle(sps.sosfreqz(highpass.sos, worN=[freq], fs=FS)[1][0]))
    assert abs(lag) > 15  # a shift worth correcting
    plain = circular(phase_errors(make(method=method), filtered[2000:], t[2000:], freq))[0]
    corrected = make(method=method, upstream_sos=pipeline_sos([highpass]))
    fixed = circular(phase_errors(corrected, filtered[2000:], t[2000:], freq))[0]
    assert plain == pytest.approx(lag, abs=4.0)
    assert abs(fixed) < 4.0


def test_pipeline_sos_collects_the_filters_of_a_pipeline_or_stage_list():
    names = ("C3", "FC1", "FC5", "CP1", "CP5", "Cz")
    section = PreprocessingSection(picks=list(names[:5]), car=False, bandpass_hz=(1.0, 45.0))
    pipeline = eeg_pipeline(section, names, FS)
    sections = pipeline_sos(pipeline)
    expected = np.vstack([stage.sos for stage in pipeline.stages if hasattr(stage, "sos")])
    np.testing.assert_array_equal(np.array(sections), expected)
    assert pipeline_sos(list(pipeline.stages)) == sections
    assert pipeline_sos([ChannelPicker(names, ["C3"])]) == ()


def test_calibrate_sets_the_gate_at_the_percentile_of_the_live_estimator():
    x, _ = sinusoid(10.0, 3000, noise=0.5)
    trigger = make(power_percentile=80.0)
    assert math.isnan(trigger.threshold)
    threshold = trigger.calibrate(x)
    windows = np.lib.stride_tricks.sliding_window_view(x, trigger.n_samples)[::10]
    expected = np.percentile([trigger.estimate(w)[2] for w in windows], 80.0)
    assert threshold == pytest.approx(expected) and trigger.threshold == threshold


def test_calibrate_refuses_a_short_or_non_finite_baseline():
    trigger = make(power_percentile=50.0)
    with pytest.raises(ValueError, match="baseline"):
        trigger.calibrate(np.zeros(100))
    with pytest.raises(ValueError, match="baseline"):
        trigger.calibrate(np.full(1000, np.nan))


def test_the_gate_is_closed_before_calibration_and_for_weak_rhythms():
    x, _ = sinusoid(10.0, 600)
    trigger = make(power_percentile=50.0)
    decision = trigger(x, 1.0)
    assert not decision.gate_open and math.isnan(decision.fire_at)
    trigger.calibrate(x * 2.0)
    assert not trigger(x, 1.0).gate_open
    assert trigger(x * 4.0, 1.0).gate_open
    assert make()(x, 1.0).gate_open  # power_percentile=0: no calibration needed


@pytest.mark.parametrize("target", [180.0, 0.0, 90.0])
def test_fire_at_predicts_the_next_target_crossing(target):
    freq, phase0 = 10.0, 0.3
    x, t = sinusoid(freq, 600, phase0=phase0)
    decision = make(target_deg=target)(x, float(t[-1]))
    # Next time after t[-1] - lateness at which 2π f t + phase0 ≡ target.
    cycles = (math.radians(target) - phase0) / (2 * np.pi)
    crossings = (np.arange(-1, 12) + cycles) / freq
    lateness = 20.0 / (360.0 * freq)
    expected = crossings[crossings >= t[-1] - lateness][0]
    assert decision.fire_at == pytest.approx(expected, abs=0.002)
    assert decision.frequency_hz == pytest.approx(freq, abs=0.2)


def test_a_crossing_just_passed_is_due_now_not_a_cycle_later():
    freq = 10.0
    # The newest sample sits 10° past the trough.
    n = 600
    t = np.arange(n) / FS
    x = np.cos(2 * np.pi * freq * (t - t[-1]) + math.radians(190.0))
    trigger = make()
    decision = trigger(x, float(t[-1]))
    assert decision.fire_at == pytest.approx(t[-1] - 10.0 / 3600.0, abs=0.001)
    assert trigger.should_fire(decision, float(t[-1]))


def test_should_fire_only_within_the_lateness_window():
    trigger = make(max_lateness_deg=36.0)
    decision = PhaseDecision(180.0, 10.0, 1.0, True, 5.0)  # 36° at 10 Hz = 10 ms
    assert not trigger.should_fire(decision, 4.999)
    assert trigger.should_fire(decision, 5.0)
    assert trigger.should_fire(decision, 5.0099)
    assert not trigger.should_fire(decision, 5.0101)
    assert not trigger.should_fire(PhaseDecision(180.0, 10.0, 1.0, False, math.nan), 5.0)


def test_the_refractory_period_blocks_decisions_and_firing():
    trigger = make(refractory_s=1.0)
    x, _t = sinusoid(10.0, 600)
    decision = trigger(x, 10.0)
    trigger.fired(decision.fire_at)
    assert not trigger.should_fire(decision, decision.fire_at + 0.001)
    assert math.isnan(trigger(x, 10.5).fire_at)  # its crossing is within the period
    assert math.isfinite(trigger(x, 11.2).fire_at)
    trigger.fired(20.0)
    trigger.reset()
    assert math.isfinite(trigger(x, 20.1).fire_at)


def test_non_finite_windows_give_a_closed_gate_and_bad_inputs_are_refused():
    trigger = make()
    x, _ = sinusoid(10.0, 600)
    x[100] = np.nan
    decision = trigger(x, 1.0)
    assert not decision.gate_open and math.isnan(decision.fire_at)
    assert math.isnan(trigger(np.ones(600), math.nan).fire_at)
    with pytest.raises(ValueError, match="window"):
        trigger(np.ones(100), 1.0)
    with pytest.raises(ValueError, match="window"):
        trigger(np.ones((600, 2)), 1.0)
    with pytest.raises(ValueError, match="time"):
        trigger.fired(math.inf)


def test_a_flat_window_does_not_break_the_ar_path():
    _phase_deg, freq, amplitude = make(method="ar").estimate(np.zeros(600))
    assert amplitude == 0.0 and freq == pytest.approx(10.5)


def test_calls_design_no_filter(monkeypatch):
    trigger_echt, trigger_ar = make(method="echt"), make(method="ar")

    def forbidden(*args, **kwargs):
        raise AssertionError("filter design inside a call")

    for name in ("butter", "freqz", "sosfreqz", "sosfilt_zi", "firwin", "hilbert"):
        monkeypatch.setattr(sps, name, forbidden)
    x, _ = sinusoid(10.0, 600)
    trigger_echt(x, 1.0)
    trigger_ar(x, 1.0)


def test_decisions_are_frozen():
    decision = make()(sinusoid(10.0, 600)[0], 1.0)
    with pytest.raises(AttributeError):
        decision.fire_at = 0.0


def test_montage_weights():
    picks = ["C3", "FC1", "FC5", "CP1", "CP5"]
    np.testing.assert_allclose(montage_weights(picks), [1, -0.25, -0.25, -0.25, -0.25])
    np.testing.assert_allclose(montage_weights(picks, "single"), [1, 0, 0, 0, 0])
    window = np.random.default_rng(0).standard_normal((50, 5))
    np.testing.assert_allclose(
        window @ montage_weights(picks), window[:, 0] - window[:, 1:].mean(axis=1)
    )


@pytest.mark.parametrize(
    ("picks", "kind", "match"),
    [
        (["C3"], "laplacian", "neighbour"),
        ([], "single", "picks"),
        ("C3", "single", "picks"),
        (["C3", "C3"], "single", "picks"),
        (["C3", "FC1"], "surface", "kind"),
    ],
)
def test_montage_weights_errors(picks, kind, match):
    with pytest.raises(ValueError, match=match):
        montage_weights(picks, kind)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"sfreq": 0.0}, "sfreq"),
        ({"band_hz": (13.0, 8.0)}, "band_hz"),
        ({"band_hz": (8.0, 600.0)}, "band_hz"),
        ({"band_hz": (8.0,)}, "band_hz"),
        ({"method": "hilbert"}, "method"),
        ({"window_s": 0.1}, "window_s"),
        ({"target_deg": math.nan}, "target_deg"),
        ({"power_percentile": 101.0}, "power_percentile"),
        ({"refractory_s": -1.0}, "refractory_s"),
        ({"max_lateness_deg": 0.0}, "max_lateness_deg"),
        ({"upstream_sos": ((1.0, 2.0),)}, "upstream_sos"),
        ({"ar_order": 2.5}, "ar_order"),
        ({"ar_order": 1}, "ar_order"),
        ({"ar_edge_s": 0.2}, "ar_edge_s"),
    ],
)
def test_settings_errors_name_the_field(kw, match):
    with pytest.raises(ValueError, match=match):
        PhaseTriggerSettings(**{"sfreq": FS, **kw})


def test_an_ar_window_too_short_for_the_model_is_refused():
    with pytest.raises(ValueError, match="window_s"):
        PhaseTrigger(PhaseTriggerSettings(sfreq=FS, method="ar", window_s=0.3, ar_order=40))


def test_settings_n_samples():
    assert PhaseTriggerSettings(sfreq=FS, window_s=0.5).n_samples == 500
    assert make(window_s=0.6).n_samples == 600
