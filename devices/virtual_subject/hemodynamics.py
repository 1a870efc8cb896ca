"""Haemodynamics for the fNIRS stream: subject parameters, the canonical HRF and the modified
Beer–Lambert law (MBLL) that turns concentration changes into detected light intensity.

The MBLL here is exactly the one MNE inverts (``optical_density`` then ``beer_lambert_law``):
natural-log optical density ``OD = −ln(I / mean(I))`` and ``OD = E · d · PPF · Δc``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from .validation import check_ranges, clipped

WAVELENGTHS_NM = (760, 850)
"""Source wavelengths, nm (either side of the HbO/HbR isosbestic point at ~800 nm)."""

EXTINCTION_PER_MM_PER_M = np.array([[586.0, 1548.52], [1058.0, 691.32]]) * 0.2303
"""Absorption coefficients, rows 760 and 850 nm, columns (HbO, HbR), 1/(mm·M), natural log.

Molar extinction coefficients 586 / 1548.52 (760 nm) and 1058 / 691.32 (850 nm) cm⁻¹/M (decadic)
from Prahl's table (https://omlc.org/spectra/hemoglobin/summary.html), times 0.2303 (ln(10)/10,
rounded exactly as MNE's ``_load_absorption`` rounds it) to turn a decadic per-cm coefficient
into a natural-log per-mm one, so that MNE's ``beer_lambert_law`` inverts this model exactly.
"""

PARTIAL_PATHLENGTH_FACTOR = 6.0
"""Partial pathlength factor (DPF × partial volume) at both wavelengths, MNE's default ``ppf``:
adult DPF ≈ 6 near 800 nm (Duncan et al. 1996; Scholkmann & Wolf 2013)."""

SOURCE_DETECTOR_DISTANCE_M = 0.03
"""Source–detector separation of every channel, m (standard long channels reach cortex)."""


def optical_density(hbo_um: np.ndarray, hbr_um: np.ndarray) -> np.ndarray:
    """Natural-log optical density change caused by concentration changes (MBLL).

    Parameters
    ----------
    hbo_um, hbr_um : array, shape (n_samples, n_pairs)
        Concentration changes, µM.

    Returns
    -------
    od : array, shape (n_samples, 2 * n_pairs)
        ΔOD, pairs consecutive and wavelengths in ``WAVELENGTHS_NM`` order within a pair.
    """
    path_mm = SOURCE_DETECTOR_DISTANCE_M * 1e3 * PARTIAL_PATHLENGTH_FACTOR
    conc_m = np.stack([hbo_um, hbr_um], axis=-1) * 1e-6  # (n, pairs, 2) in M
    od = conc_m @ EXTINCTION_PER_MM_PER_M.T * path_mm  # (n, pairs, wavelengths)
    return od.reshape(od.shape[0], -1)


def concentrations(od: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of ``optical_density``: ΔHbO and ΔHbR in µM from ΔOD.

    Parameters
    ----------
    od : array, shape (n_samples, 2 * n_pairs)
        Natural-log optical density changes, pairs consecutive.

    Returns
    -------
    hbo_um, hbr_um : array, shape (n_samples, n_pairs)
    """
    path_mm = SOURCE_DETECTOR_DISTANCE_M * 1e3 * PARTIAL_PATHLENGTH_FACTOR
    per_pair = od.reshape(od.shape[0], -1, 2)
    conc = per_pair @ np.linalg.inv(EXTINCTION_PER_MM_PER_M * path_mm).T
    return conc[..., 0] * 1e6, conc[..., 1] * 1e6


def canonical_hrf(sfreq: float, peak_s: float, undershoot_s: float, ratio: float = 1 / 6):
    """Double-gamma haemodynamic response function (Glover 1999), sampled at ``sfreq``.

    Parameters
    ----------
    sfreq : float
        Sampling rate, Hz.
    peak_s, undershoot_s : float
        Times of the positive peak and of the undershoot, s.
    ratio : float
        Undershoot amplitude relative to the peak gamma.

    Returns
    -------
    hrf : array, shape (n_taps,)
        30 s long, unit peak.
    """
    t = np.arange(0.0, 30.0, 1.0 / sfreq)
    # Gamma densities with mode at peak_s and undershoot_s (shape k, scale 1: mode = k − 1).
    hrf = stats.gamma.pdf(t, peak_s + 1.0) - ratio * stats.gamma.pdf(t, undershoot_s + 1.0)
    return hrf / hrf.max()


_HEMO_RANGES = {
    "hrf_peak_s": (4.0, 8.0),
    "hrf_undershoot_s": (10.0, 20.0),
    "hbo_amplitude_um": (0.05, 2.0),
    "hbr_ratio": (-0.6, -0.1),
    "hbr_delay_s": (0.0, 3.0),
    "ipsilateral_fraction": (0.0, 0.8),
    "heart_rate_hz": (0.8, 1.7),
    "cardiac_um": (0.0, 0.5),
    "respiration_hz": (0.15, 0.45),
    "respiration_um": (0.0, 0.5),
    "mayer_hz": (0.07, 0.13),
    "mayer_um": (0.0, 1.0),
    "motion_rate_per_min": (0.0, 5.0),
    "intensity_noise": (0.0, 0.02),
}


@dataclass(frozen=True)
class HemodynamicParams:
    """One subject's haemodynamics as seen by fNIRS over the motor cortex (concentrations in µM,
    computed with ``PARTIAL_PATHLENGTH_FACTOR``)."""

    hrf_peak_s: float = 6.0
    """Time to peak of the canonical HRF, s, 4–8; drawn U(5, 7) (Glover 1999: 5–6 s)."""
    hrf_undershoot_s: float = 16.0
    """Time of the post-stimulus undershoot, s, 10–20; drawn U(12, 16) (Glover 1999)."""
    hbo_amplitude_um: float = 0.4
    """Peak ΔHbO over the contralateral motor cortex for a 10 s imagery block, µM, 0.05–2; drawn
    U(0.2, 0.6) (motor-imagery fNIRS, e.g. Holper & Wolf 2011)."""
    hbr_ratio: float = -0.33
    """ΔHbR relative to ΔHbO, −0.6 to −0.1; drawn U(−0.4, −0.25) (HbR falls by about a third as
    much as HbO rises)."""
    hbr_delay_s: float = 1.0
    """Extra delay of the HbR response, s, 0–3; drawn U(0.5, 2)."""
    ipsilateral_fraction: float = 0.3
    """Ipsilateral response relative to contralateral, 0–0.8; drawn U(0.1, 0.4)."""
    heart_rate_hz: float = 1.15
    """Heart rate, Hz, 0.8–1.7; drawn U(1.0, 1.33) (60–80 bpm at rest)."""
    cardiac_um: float = 0.1
    """Cardiac pulsation RMS in HbO, µM, 0–0.5; drawn U(0.05, 0.15)."""
    respiration_hz: float = 0.25
    """Breathing rate, Hz, 0.15–0.45; drawn U(0.2, 0.33) (12–20 breaths/min)."""
    respiration_um: float = 0.1
    """Respiratory oscillation RMS in HbO, µM, 0–0.5; drawn U(0.05, 0.2)."""
    mayer_hz: float = 0.1
    """Mayer-wave frequency, Hz, 0.07–0.13; drawn N(0.1, 0.01) (Julien 2006; Yücel et al. 2016)."""
    mayer_um: float = 0.25
    """Mayer-wave RMS in HbO, µM, 0–1; drawn U(0.1, 0.4)."""
    motion_rate_per_min: float = 0.5
    """Motion artifacts (spikes and baseline shifts) per minute, 0–5; drawn U(0.1, 1)."""
    intensity_noise: float = 0.002
    """Relative white noise of detected intensity (shot and detector noise), 0–0.02; drawn
    U(0.001, 0.004)."""

    def __post_init__(self) -> None:
        check_ranges(self, _HEMO_RANGES)

    @classmethod
    def draw(cls, rng: np.random.Generator) -> HemodynamicParams:
        """One subject's haemodynamics drawn from the population distributions above."""
        return clipped(cls, _HEMO_RANGES, {
            "hrf_peak_s": rng.uniform(5.0, 7.0),
            "hrf_undershoot_s": rng.uniform(12.0, 16.0),
            "hbo_amplitude_um": rng.uniform(0.2, 0.6),
            "hbr_ratio": rng.uniform(-0.4, -0.25),
            "hbr_delay_s": rng.uniform(0.5, 2.0),
            "ipsilateral_fraction": rng.uniform(0.1, 0.4),
            "heart_rate_hz": rng.uniform(1.0, 1.33),
            "cardiac_um": rng.uniform(0.05, 0.15),
            "respiration_hz": rng.uniform(0.2, 0.33),
            "respiration_um": rng.uniform(0.05, 0.2),
            "mayer_hz": rng.normal(0.1, 0.01),
            "mayer_um": rng.uniform(0.1, 0.4),
            "motion_rate_per_min": rng.uniform(0.1, 1.0),
            "intensity_noise": rng.uniform(0.001, 0.004),
        })  # fmt: skip
