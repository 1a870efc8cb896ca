"""Responses to stimulation: tDCS plasticity (BCM ceiling, after-effect), tACS alpha
entrainment, TMS-evoked potentials."""

from __future__ import annotations

import numpy as np
import pytest

from devices.virtual_subject import (
    EegSettings,
    Plasticity,
    StimulationParams,
    SubjectParams,
    VirtualSubject,
)
from devices.virtual_subject.stimulation import motor_drive, tacs_alpha_gain

from .helpers import band_power, remove_sinusoid

MINUTE = 60.0


def _gain_after(plasticity: Plasticity, time_s: float) -> float:
    return float(plasticity.advance(time_s)[0])


def test_motor_drive_follows_electrode_placement():
    assert motor_drive(1.0, "C3", "Fp2") == pytest.approx([1.0, 0.0], abs=0.01)
    assert motor_drive(1.0, "C4", "Fp1") == pytest.approx([0.0, 1.0], abs=0.01)
    # Bilateral montage: anodal under C3, cathodal under C4; negative current swaps them.
    assert motor_drive(2.0, "C3", "C4") == pytest.approx([2.0, -2.0], abs=0.02)
    assert motor_drive(-1.0, "C3", "Fp2") == pytest.approx([-1.0, 0.0], abs=0.01)
    with pytest.raises(ValueError, match=r"anode.*Q7"):
        motor_drive(1.0, "Q7", None)


def test_anodal_tdcs_builds_up_over_minutes_and_outlasts_stimulation():
    plasticity = Plasticity(StimulationParams())
    plasticity.set_drive(0.0, np.array([1.0, 0.0]))
    after_1 = _gain_after(plasticity, 1 * MINUTE)
    after_13 = _gain_after(plasticity, 13 * MINUTE)
    assert 1.0 < after_1 < 1.1 < after_13  # gradual, minutes-long build-up
    assert plasticity.advance(13 * MINUTE)[1] == 1.0  # the other hemisphere is untouched
    plasticity.set_drive(13 * MINUTE, np.zeros(2))
    after_23 = _gain_after(plasticity, 23 * MINUTE)
    after_90 = _gain_after(plasticity, 90 * MINUTE)
    # LTP-like after-effect: still most of it 10 min later, decaying over tens of minutes.
    assert after_23 - 1 > 0.7 * (after_13 - 1)
    assert 1.0 < after_90 < after_23


def test_bcm_ceiling_makes_further_gain_smaller():
    params = StimulationParams()
    plasticity = Plasticity(params)
    plasticity.set_drive(0.0, np.array([1.0, 0.0]))
    gains = [_gain_after(plasticity, m * 4 * MINUTE) for m in range(5)]
    increments = np.diff(gains)
    assert np.all(increments[1:] < increments[:-1])  # the more potentiated, the less gain
    plasticity.advance(60 * MINUTE)
    assert 0 < plasticity.p[0] < params.tdcs_ceiling  # never beyond the homeostatic ceiling


def test_sliding_threshold_weakens_a_second_session():
    plasticity = Plasticity(StimulationParams())
    plasticity.set_drive(0.0, np.array([1.0, 0.0]))
    first = _gain_after(plasticity, 13 * MINUTE) - 1.0
    plasticity.set_drive(13 * MINUTE, np.zeros(2))
    start = _gain_after(plasticity, 43 * MINUTE)
    plasticity.set_drive(43 * MINUTE, np.array([1.0, 0.0]))
    second = _gain_after(plasticity, 56 * MINUTE) - start
    assert 0 < second < 0.8 * first


def test_cathodal_tdcs_weakens_erd():
    plasticity = Plasticity(StimulationParams())
    plasticity.set_drive(0.0, motor_drive(1.0, "Fp2", "C3"))  # cathode over C3
    gain = plasticity.advance(13 * MINUTE)
    assert gain[0] < 0.9 and gain[1] == pytest.approx(1.0, abs=1e-3)
    assert gain[0] > 1 - StimulationParams().tdcs_floor


def test_anodal_tdcs_at_c3_deepens_right_hand_erd_in_the_eeg():
    fs = 250.0
    subject = VirtualSubject(SubjectParams.from_seed(0), EegSettings(n_channels=8, sfreq=fs),
                             fnirs=None)  # fmt: skip
    c3 = subject.eeg_channel_names.index("C3")
    mu = subject.params.rhythms.mu_frequency_hz

    def erd_ratio() -> float:
        """Mu power at C3 during 30 s of right-hand imagery over the 30 s before."""
        rest = subject.eeg(int(30 * fs))[:, [c3]]
        subject.cue("right")
        subject.eeg(int(2 * fs))
        imagery = subject.eeg(int(30 * fs))[:, [c3]]
        subject.cue("rest")
        subject.eeg(int(3 * fs))
        return band_power(imagery, fs, mu - 1.5, mu + 1.5)[0] / band_power(
            rest, fs, mu - 1.5, mu + 1.5)[0]  # fmt: skip

    before = erd_ratio()
    subject.stimulate(1.0, modality="tdcs", anode="C3", cathode="Fp2")
    for _ in range(13):
        subject.eeg(int(MINUTE * fs))
    subject.stimulate(0.0, modality="tdcs", anode="C3", cathode="Fp2")
    gain = subject.erd_gain
    assert gain["left"] > 1.2 and gain["right"] == pytest.approx(1.0, abs=1e-3)
    after = erd_ratio()
    assert after < 0.75 * before  # deeper ERD: less mu power left during imagery
    for _ in range(10):
        subject.eeg(int(MINUTE * fs))
    assert 1.0 < subject.erd_gain["left"] < gain["left"]  # decaying, still there


def test_tacs_at_the_alpha_peak_raises_posterior_alpha():
    fs = 250.0
    params = SubjectParams.from_seed(0)
    iaf = params.rhythms.alpha_frequency_hz
    ratios = {}
    for frequency in (iaf, iaf + 5.0):
        subject = VirtualSubject(params, EegSettings(n_channels=8, sfreq=fs), fnirs=None)
        oz = subject.eeg_channel_names.index("Oz")
        before = subject.eeg(int(60 * fs))[:, [oz]]
        subject.stimulate(2.0, frequency, modality="tacs", anode="Oz", cathode="Cz")
        subject.eeg(int(10 * fs))  # entrainment builds up
        during = subject.eeg(int(60 * fs))[:, [oz]]
        line = (frequency - 0.5, frequency + 0.5)
        assert band_power(during, fs, *line)[0] > 2 * band_power(before, fs, *line)[0]  # artifact
        during = remove_sinusoid(during, fs, frequency)
        ratios[frequency] = band_power(during, fs, iaf - 1.5, iaf + 1.5)[0] / band_power(
            before, fs, iaf - 1.5, iaf + 1.5)[0]  # fmt: skip
    assert ratios[iaf] > 1.15
    assert ratios[iaf + 5.0] < 1.1  # off the alpha peak: no entrainment


def test_tacs_tuning():
    params = StimulationParams()
    assert tacs_alpha_gain(params, 10.0, 2.0, 10.0) == pytest.approx(params.tacs_alpha_gain)
    assert tacs_alpha_gain(params, 10.0, 1.0, 10.0) == pytest.approx(params.tacs_alpha_gain / 2)
    assert 0 < tacs_alpha_gain(params, 10.0, 2.0, 11.5) < tacs_alpha_gain(params, 10.0, 2.0, 10.5)
    assert tacs_alpha_gain(params, 10.0, 2.0, 12.5) == 0.0
    assert tacs_alpha_gain(params, 10.0, 4.0, 10.0) == pytest.approx(params.tacs_alpha_gain)


def test_tms_pulse_evokes_a_tep_scaled_by_intensity():
    fs = 1000.0
    params = SubjectParams.from_seed(0)
    threshold = params.stimulation.motor_threshold_pct
    averages = {}
    for relative in (1.2, 0.5):
        subject = VirtualSubject(params, EegSettings(n_channels=8, sfreq=fs), fnirs=None)
        times = 2.0 + 1.5 * np.arange(40)
        for t in times:
            subject.stimulate(relative * threshold, pulses=1, modality="tms", anode="C3", time=t)
        data = subject.eeg(int((times[-1] + 1.0) * fs))
        epochs = np.array([data[int(t * fs) - 100 : int(t * fs) + 400] for t in times])
        averages[relative] = (epochs - epochs[:, :100].mean(axis=1, keepdims=True)).mean(axis=0)
    names = subject.eeg_channel_names
    c3, cz = names.index("C3"), names.index("Cz")
    tep = averages[1.2]
    assert tep[100, c3] > 300  # pulse artifact at the coil
    assert tep[100 + 90 : 100 + 110, c3].mean() < -3  # N100
    assert tep[100 + 170 : 100 + 190, cz].mean() > 3  # P180, vertex

    def n100_to_p180(average: np.ndarray) -> float:
        return average[100 + 170 : 100 + 190, cz].mean() - average[100 + 90 : 100 + 110, cz].mean()

    # Half the motor threshold is below the TEP threshold (~60 % rMT): no N100-P180 complex.
    assert n100_to_p180(tep) > 8 > 2 * abs(n100_to_p180(averages[0.5]))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"modality": "ect"}, "modality"), ({"pulses": 3}, "pulses"),
     ({"amplitude": float("nan")}, "amplitude"), ({"anode": "Q1"}, "anode"),
     ({"modality": "tms", "amplitude": 150.0, "pulses": 1}, "MSO"),
     ({"frequency_hz": -1.0}, "frequency_hz")],
)  # fmt: skip
def test_bad_commands_are_refused(kwargs, match):
    subject = VirtualSubject(fnirs=None, eeg=EegSettings(n_channels=8, sfreq=250.0))
    command = {"amplitude": 1.0, "modality": "tdcs", "anode": "C3"} | kwargs
    with pytest.raises(ValueError, match=match):
        subject.stimulate(**command)
