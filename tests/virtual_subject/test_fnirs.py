"""fNIRS generator: layout, MBLL consistent with MNE, contralateral haemodynamic response,
systemic physiology and motion artifacts."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy import signal

from devices.virtual_subject import FnirsGenerator, FnirsSettings, SubjectParams, VirtualSubject
from devices.virtual_subject.fnirs import PAIRS, optode_positions
from devices.virtual_subject.hemodynamics import (
    PARTIAL_PATHLENGTH_FACTOR,
    SOURCE_DETECTOR_DISTANCE_M,
    concentrations,
    optical_density,
)

FS = 10.0


def _blocks(labels, seed: int = 0):
    """Raw intensities of one block per label (10 s imagery + 20 s rest) after 30 s of rest."""
    subject = VirtualSubject(SubjectParams.from_seed(seed), fnirs=FnirsSettings(sfreq=FS))
    onsets = 30.0 + 30.0 * np.arange(len(labels))
    for label, onset in zip(labels, onsets, strict=True):
        subject.cue(label, time=onset)
        subject.cue("rest", time=onset + 10.0)
    return subject, subject.fnirs(int((onsets[-1] + 30.0) * FS)), onsets


def test_channel_names_follow_mne_and_pairs_are_three_cm_apart():
    names = FnirsSettings().channel_names
    assert names[:4] == ("S1_D1 760", "S1_D1 850", "S1_D2 760", "S1_D2 850")
    assert len(names) == 16
    positions = optode_positions()
    for source, detector, _ in PAIRS:
        distance = np.linalg.norm(positions[source] - positions[detector])
        assert distance == pytest.approx(SOURCE_DETECTOR_DISTANCE_M, abs=1e-9)
    assert all(positions[f"S{k}"][0] < 0 for k in (1, 2))  # left hemisphere optodes
    assert all(positions[f"S{k}"][0] > 0 for k in (3, 4))


def test_same_seed_and_any_chunking_give_the_same_intensities():
    params = SubjectParams.from_seed(2)
    whole = FnirsGenerator(params, FnirsSettings())
    whole.set_imagery("left", 5.0)
    expected = whole(900)
    chunked = FnirsGenerator(params, FnirsSettings())
    chunked.set_imagery("left", 5.0)
    parts = [chunked(n) for n in (0, 1, 13, 100, 386, 400)]
    np.testing.assert_allclose(np.vstack(parts), expected, rtol=1e-12)
    assert np.all(expected > 0)


def test_mbll_matches_mne():
    mne = pytest.importorskip("mne")
    _, raw_intensity, _ = _blocks(["right", "left"])
    names = list(FnirsSettings().channel_names)
    info = mne.create_info(names, FS, "fnirs_cw_amplitude")
    positions = optode_positions()
    for channel, name in zip(info["chs"], names, strict=True):
        pair, wavelength = name.split(" ")
        source, detector = pair.split("_")
        channel["loc"][3:6] = positions[source]
        channel["loc"][6:9] = positions[detector]
        channel["loc"][:3] = (positions[source] + positions[detector]) / 2
        channel["loc"][9] = float(wavelength)
    raw = mne.io.RawArray(raw_intensity.T, info, verbose="error")
    od = mne.preprocessing.nirs.optical_density(raw)
    hb = mne.preprocessing.nirs.beer_lambert_law(od, ppf=PARTIAL_PATHLENGTH_FACTOR)
    ours = concentrations(-np.log(raw_intensity / raw_intensity.mean(axis=0)))
    np.testing.assert_allclose(hb.get_data(picks="hbo").T * 1e6, ours[0], atol=1e-9)
    np.testing.assert_allclose(hb.get_data(picks="hbr").T * 1e6, ours[1], atol=1e-9)


def test_concentrations_invert_optical_density():
    rng = np.random.default_rng(0)
    hbo, hbr = rng.normal(size=(50, 8)), rng.normal(size=(50, 8))
    back = concentrations(optical_density(hbo, hbr))
    np.testing.assert_allclose(back[0], hbo, atol=1e-9)
    np.testing.assert_allclose(back[1], hbr, atol=1e-9)


@pytest.mark.parametrize("seed", [0, 1])
def test_imagery_raises_hbo_and_lowers_hbr_contralaterally(seed):
    labels = ["right", "left", "left", "right", "left", "right", "right", "left"]
    subject, intensity, onsets = _blocks(labels, seed)
    hbo, hbr = concentrations(-np.log(intensity / intensity.mean(axis=0)))
    left_hemisphere = np.array([h == 0 for *_, h in PAIRS])

    def responses(conc):
        """Per block: mean of 5-12 s after onset minus the 5 s before, shape (blocks, pairs)."""
        return np.array([
            conc[int((o + 5) * FS) : int((o + 12) * FS)].mean(axis=0)
            - conc[int((o - 5) * FS) : int(o * FS)].mean(axis=0)
            for o in onsets
        ])  # fmt: skip

    is_right = np.array(labels) == "right"
    d_hbo, d_hbr = responses(hbo), responses(hbr)
    contra = np.where(is_right[:, None], left_hemisphere, ~left_hemisphere)
    amplitude = subject.params.hemodynamics.hbo_amplitude_um
    assert d_hbo[contra].mean() > 0.4 * amplitude
    assert d_hbr[contra].mean() < -0.1 * amplitude  # HbR falls where HbO rises
    # Lateralisation (left minus right hemisphere) flips with the imagined hand; taking the
    # hemispheric difference cancels the global Mayer waves.
    lateral = d_hbo[:, left_hemisphere].mean(axis=1) - d_hbo[:, ~left_hemisphere].mean(axis=1)
    assert lateral[is_right].mean() - lateral[~is_right].mean() > 0.4 * amplitude


@pytest.mark.parametrize(
    ("component", "frequency"),
    [("mayer_um", "mayer_hz"), ("respiration_um", "respiration_hz"),
     ("cardiac_um", "heart_rate_hz")],
)  # fmt: skip
def test_systemic_physiology_is_in_the_spectrum(component, frequency):
    params = SubjectParams.from_seed(1)
    hemo = params.hemodynamics
    spectra = []
    for amplitude in (getattr(hemo, component), 0.0):
        p = dataclasses.replace(params, hemodynamics=dataclasses.replace(
            hemo, **{component: amplitude}))  # fmt: skip
        data = FnirsGenerator(p, FnirsSettings())(int(600 * FS))
        od = -np.log(data / data.mean(axis=0))
        freqs, psd = signal.welch(od[:, 1], fs=FS, nperseg=int(100 * FS))
        spectra.append(psd[np.argmin(np.abs(freqs - getattr(hemo, frequency)))])
    assert spectra[0] > 3 * spectra[1]


def test_motion_artifacts_shift_intensity():
    params = SubjectParams.from_seed(0)
    moving = dataclasses.replace(
        params, hemodynamics=dataclasses.replace(params.hemodynamics, motion_rate_per_min=5.0)
    )
    still = dataclasses.replace(
        params, hemodynamics=dataclasses.replace(params.hemodynamics, motion_rate_per_min=0.0)
    )
    jumps = {}
    for name, p in (("moving", moving), ("still", still)):
        log_intensity = np.log(FnirsGenerator(p, FnirsSettings())(int(300 * FS)))
        jumps[name] = np.abs(np.diff(log_intensity, axis=0)).max()
    assert jumps["moving"] > 0.03 > jumps["still"]


def test_bad_rate_and_missing_fnirs_are_explained():
    with pytest.raises(ValueError, match="sfreq"):
        FnirsSettings(sfreq=500.0)
    with pytest.raises(RuntimeError, match="fnirs"):
        VirtualSubject(fnirs=None).fnirs(10)
