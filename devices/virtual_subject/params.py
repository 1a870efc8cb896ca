"""Who the virtual subject is: frozen, seed-drawn parameters with their literature sources.

``SubjectParams()`` is a typical subject (population medians); ``SubjectParams.from_seed(seed)``
draws one member of a population, so that different seeds are different people (different alpha
peak, ERD depth, artifact habits, tDCS responsiveness...), as transfer learning needs. Every
amplitude is an RMS at the named electrode, in µV, unless said otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .hemodynamics import HemodynamicParams
from .noise import STREAM_PARAMS, rng_stream
from .stimulation import StimulationParams
from .validation import check_ranges, clipped

_RHYTHM_RANGES = {
    "alpha_frequency_hz": (8.0, 12.5),
    "alpha_amplitude_uv": (3.0, 20.0),
    "mu_frequency_hz": (9.0, 13.0),
    "mu_bandwidth_hz": (2.0, 4.5),
    "mu_amplitude_uv": (3.0, 12.0),
    "mu_asymmetry": (-0.2, 0.2),
    "beta_frequency_hz": (18.0, 25.0),
    "beta_bandwidth_hz": (3.0, 8.0),
    "beta_amplitude_uv": (1.0, 6.0),
}


@dataclass(frozen=True)
class RhythmParams:
    """Oscillations: posterior alpha and sensorimotor mu and beta."""

    alpha_frequency_hz: float = 10.0
    """Individual alpha frequency (IAF), Hz, 8–12.5; drawn N(10, 1) (Klimesch 1999)."""
    alpha_amplitude_uv: float = 8.0
    """Posterior alpha RMS at O1/O2, µV, 3–20; log-normal around 8 µV, i.e. the 20–60 µV
    peak-to-peak of resting eyes-closed/eyes-open alpha (Niedermeyer & Lopes da Silva 2005)."""
    mu_frequency_hz: float = 10.5
    """Mu rhythm peak, Hz, 9–13; IAF + N(0.4, 0.6), since mu sits in the alpha band and slightly
    above the occipital peak (Pfurtscheller & Lopes da Silva 1999)."""
    mu_bandwidth_hz: float = 3.0
    """Width of the mu band-pass, Hz, 2–4.5; drawn U(2.5, 4)."""
    mu_amplitude_uv: float = 8.0
    """Mu RMS at C3/C4 at rest, µV, 3–12; log-normal around 8 µV (Pfurtscheller & Lopes da
    Silva 1999: mu is weaker than occipital alpha)."""
    mu_asymmetry: float = 0.0
    """Right-minus-left relative mu amplitude, −0.2–0.2 (right = (1 + a)·amp, left =
    (1 − a)·amp); drawn N(0, 0.07): resting mu is rarely perfectly symmetric."""
    beta_frequency_hz: float = 21.5
    """Sensorimotor beta peak, Hz, 18–25; drawn N(21.5, 1.8) (Pfurtscheller & Lopes da Silva
    1999: central beta 18–25 Hz)."""
    beta_bandwidth_hz: float = 5.0
    """Width of the beta band-pass, Hz, 3–8; drawn U(4, 7)."""
    beta_amplitude_uv: float = 3.0
    """Beta RMS at C3/C4 at rest, µV, 1–6; log-normal around 3 µV."""

    def __post_init__(self) -> None:
        check_ranges(self, _RHYTHM_RANGES)

    @classmethod
    def draw(cls, rng: np.random.Generator) -> RhythmParams:
        """One subject's rhythms drawn from the population distributions above."""
        iaf = rng.normal(10.0, 1.0)
        return clipped(cls, _RHYTHM_RANGES, {
            "alpha_frequency_hz": iaf,
            "alpha_amplitude_uv": 8.0 * rng.lognormal(0.0, 0.3),
            "mu_frequency_hz": iaf + rng.normal(0.4, 0.6),
            "mu_bandwidth_hz": rng.uniform(2.5, 4.0),
            "mu_amplitude_uv": 8.0 * rng.lognormal(0.0, 0.2),
            "mu_asymmetry": rng.normal(0.0, 0.07),
            "beta_frequency_hz": rng.normal(21.5, 1.8),
            "beta_bandwidth_hz": rng.uniform(4.0, 7.0),
            "beta_amplitude_uv": 3.0 * rng.lognormal(0.0, 0.25),
        })  # fmt: skip


_ERD_RANGES = {
    "mu_erd": (0.0, 0.9),
    "beta_erd": (0.0, 0.9),
    "ipsilateral_ers": (0.0, 0.5),
    "latency_s": (0.1, 1.0),
    "time_constant_s": (0.1, 1.0),
    "trial_variability": (0.0, 0.5),
    "beta_rebound": (0.0, 1.0),
    "beta_rebound_s": (0.2, 3.0),
}


@dataclass(frozen=True)
class ErdParams:
    """Motor-imagery event-related (de)synchronisation (Pfurtscheller & Lopes da Silva 1999).

    Imagery of the left hand desynchronises the right sensorimotor cortex (C4) and vice versa.
    """

    mu_erd: float = 0.65
    """Fraction of the contralateral mu generators' power lost during imagery, 0–0.9; drawn
    U(0.5, 0.8), which the 1/f background and volume conduction dilute to the 40–70 % mu-band
    drop measured at C3/C4 in good BCI users (Pfurtscheller & Neuper 2001)."""
    beta_erd: float = 0.45
    """Fraction of the contralateral beta generators' power lost during imagery, 0–0.9; drawn
    U(0.3, 0.6)."""
    ipsilateral_ers: float = 0.1
    """Relative power increase of ipsilateral mu/beta during imagery, 0–0.5; drawn U(0, 0.2)
    ("focal ERD / surround ERS", Pfurtscheller & Lopes da Silva 1999)."""
    latency_s: float = 0.45
    """Delay from cue to ERD onset, s, 0.1–1; drawn U(0.3, 0.6) (Pfurtscheller & Neuper 1997)."""
    time_constant_s: float = 0.45
    """Time constant of ERD build-up and recovery, s, 0.1–1; drawn U(0.3, 0.6)."""
    trial_variability: float = 0.15
    """Coefficient of variation of the ERD depth from trial to trial, 0–0.5; drawn U(0.1, 0.25)."""
    beta_rebound: float = 0.2
    """Contralateral beta power overshoot after imagery ends (post-imagery beta rebound), 0–1;
    drawn U(0.1, 0.4) (Pfurtscheller et al. 2005)."""
    beta_rebound_s: float = 1.0
    """Duration of the beta rebound, s, 0.2–3; drawn U(0.5, 1.5)."""

    def __post_init__(self) -> None:
        check_ranges(self, _ERD_RANGES)

    @classmethod
    def draw(cls, rng: np.random.Generator) -> ErdParams:
        """One subject's ERD drawn from the population distributions above."""
        return clipped(cls, _ERD_RANGES, {
            "mu_erd": rng.uniform(0.5, 0.8),
            "beta_erd": rng.uniform(0.3, 0.6),
            "ipsilateral_ers": rng.uniform(0.0, 0.2),
            "latency_s": rng.uniform(0.3, 0.6),
            "time_constant_s": rng.uniform(0.3, 0.6),
            "trial_variability": rng.uniform(0.1, 0.25),
            "beta_rebound": rng.uniform(0.1, 0.4),
            "beta_rebound_s": rng.uniform(0.5, 1.5),
        })  # fmt: skip


_BACKGROUND_RANGES = {
    "aperiodic_exponent": (1.0, 2.0),
    "background_uv": (3.0, 25.0),
    "spatial_correlation": (0.0, 0.9),
    "correlation_length_m": (0.02, 0.1),
    "noise_floor_uv": (0.1, 2.0),
    "drift_uv": (0.0, 50.0),
    "drift_cutoff_hz": (0.005, 0.2),
    "leadfield_width_m": (0.03, 0.07),
    "source_jitter_m": (0.0, 0.015),
    "channel_gain_sd": (0.0, 0.2),
}


@dataclass(frozen=True)
class BackgroundParams:
    """Aperiodic background, amplifier noise, drift and the head's volume conduction."""

    aperiodic_exponent: float = 1.5
    """Exponent β of the 1/f^β background power spectrum, 1–2; drawn N(1.5, 0.25)
    (He 2014; Donoghue et al. 2020)."""
    background_uv: float = 8.0
    """RMS of the aperiodic background over 1–40 Hz at each electrode, µV, 3–25; log-normal
    around 8 µV (a 1/f^1.5 spectrum of 1 µV²/Hz at 10 Hz, typical of central sites)."""
    spatial_correlation: float = 0.5
    """Share of background variance common to neighbouring electrodes, 0–0.9; drawn U(0.3, 0.6)
    (volume conduction, Nunez & Srinivasan 2006)."""
    correlation_length_m: float = 0.05
    """Length over which that shared background decorrelates (exp(−d/λ)), m, 0.02–0.1; drawn
    U(0.04, 0.07)."""
    noise_floor_uv: float = 0.5
    """White amplifier noise RMS, µV, 0.1–2; drawn U(0.3, 1) (input noise of research EEG
    amplifiers, < 1 µV RMS)."""
    drift_uv: float = 10.0
    """RMS of slow electrode drift (skin potentials, electrode polarisation), µV, 0–50;
    log-normal around 10 µV."""
    drift_cutoff_hz: float = 0.05
    """Corner frequency of the drift, Hz, 0.005–0.2; drawn U(0.02, 0.1)."""
    leadfield_width_m: float = 0.045
    """Standard deviation of the Gaussian scalp spread of a cortical source, m, 0.03–0.07; drawn
    N(0.045, 0.005): a few cm of smearing by CSF, skull and scalp (Nunez & Srinivasan 2006)."""
    source_jitter_m: float = 0.005
    """Per-axis SD of each source's displacement from its template site, m, 0–0.015 (individual
    anatomy and cap placement; 10-20 placement error is about 5 mm)."""
    channel_gain_sd: float = 0.05
    """SD of the relative gain of each electrode (contact impedance), 0–0.2."""

    def __post_init__(self) -> None:
        check_ranges(self, _BACKGROUND_RANGES)

    @classmethod
    def draw(cls, rng: np.random.Generator) -> BackgroundParams:
        """One subject's background drawn from the population distributions above."""
        return clipped(cls, _BACKGROUND_RANGES, {
            "aperiodic_exponent": rng.normal(1.5, 0.25),
            "background_uv": 8.0 * rng.lognormal(0.0, 0.2),
            "spatial_correlation": rng.uniform(0.3, 0.6),
            "correlation_length_m": rng.uniform(0.04, 0.07),
            "noise_floor_uv": rng.uniform(0.3, 1.0),
            "drift_uv": 10.0 * rng.lognormal(0.0, 0.4),
            "drift_cutoff_hz": rng.uniform(0.02, 0.1),
            "leadfield_width_m": rng.normal(0.045, 0.005),
            "source_jitter_m": 0.005,
            "channel_gain_sd": 0.05,
        })  # fmt: skip


_ARTIFACT_RANGES = {
    "blink_rate_per_min": (0.0, 40.0),
    "blink_amplitude_uv": (50.0, 300.0),
    "blink_duration_s": (0.15, 0.5),
    "emg_rate_per_min": (0.0, 20.0),
    "emg_amplitude_uv": (2.0, 80.0),
    "emg_duration_s": (0.1, 3.0),
    "emg_tonic_uv": (0.0, 5.0),
    "line_noise_uv": (0.0, 20.0),
    "line_harmonic_ratio": (0.0, 1.0),
}


@dataclass(frozen=True)
class ArtifactParams:
    """Physiological and technical artifacts."""

    blink_rate_per_min: float = 15.0
    """Spontaneous blinks per minute (Poisson), 0–40; log-normal around 15/min (Bentivoglio et
    al. 1997: 17/min at rest, lower while reading or attending a screen)."""
    blink_amplitude_uv: float = 150.0
    """Peak of a blink at Fp1/Fp2, µV, 50–300; drawn U(100, 200)."""
    blink_duration_s: float = 0.3
    """Blink duration, s, 0.15–0.5; drawn U(0.2, 0.4)."""
    emg_rate_per_min: float = 3.0
    """Temporalis muscle bursts (jaw clenching, swallowing) per minute, 0–20; drawn U(1, 6)."""
    emg_amplitude_uv: float = 20.0
    """EMG RMS (20–150 Hz) at T7/T8 during a burst, µV, 2–80; log-normal around 20 µV
    (Goncharova et al. 2003)."""
    emg_duration_s: float = 0.8
    """Mean burst duration, s, 0.1–3; drawn U(0.3, 1.5)."""
    emg_tonic_uv: float = 1.0
    """Tonic EMG RMS at T7/T8 between bursts, µV, 0–5; drawn U(0.5, 2)."""
    line_noise_uv: float = 3.0
    """Mains interference amplitude (peak) at a good electrode, µV, 0–20; log-normal around
    3 µV (50 Hz in Europe, 60 Hz in the Americas; grows with electrode impedance)."""
    line_harmonic_ratio: float = 0.2
    """Amplitude of the 3rd mains harmonic relative to the fundamental, 0–1."""

    def __post_init__(self) -> None:
        check_ranges(self, _ARTIFACT_RANGES)

    @classmethod
    def draw(cls, rng: np.random.Generator) -> ArtifactParams:
        """One subject's artifact habits drawn from the population distributions above."""
        return clipped(cls, _ARTIFACT_RANGES, {
            "blink_rate_per_min": 15.0 * rng.lognormal(0.0, 0.3),
            "blink_amplitude_uv": rng.uniform(100.0, 200.0),
            "blink_duration_s": rng.uniform(0.2, 0.4),
            "emg_rate_per_min": rng.uniform(1.0, 6.0),
            "emg_amplitude_uv": 20.0 * rng.lognormal(0.0, 0.4),
            "emg_duration_s": rng.uniform(0.3, 1.5),
            "emg_tonic_uv": rng.uniform(0.5, 2.0),
            "line_noise_uv": 3.0 * rng.lognormal(0.0, 0.5),
            "line_harmonic_ratio": rng.uniform(0.1, 0.3),
        })  # fmt: skip


@dataclass(frozen=True)
class SubjectParams:
    """Everything that makes one virtual subject different from another.

    Examples
    --------
    >>> typical = SubjectParams()
    >>> someone = SubjectParams.from_seed(7)
    >>> someone.rhythms.alpha_frequency_hz != typical.rhythms.alpha_frequency_hz
    True
    """

    seed: int = 0
    """Seed of every random stream of this subject (anatomy, noise, artifacts, trials), >= 0."""
    rhythms: RhythmParams = field(default_factory=RhythmParams)
    """Alpha, mu and beta oscillations."""
    erd: ErdParams = field(default_factory=ErdParams)
    """Motor-imagery ERD/ERS."""
    background: BackgroundParams = field(default_factory=BackgroundParams)
    """1/f background, noise floor, drift and volume conduction."""
    artifacts: ArtifactParams = field(default_factory=ArtifactParams)
    """Blinks, EMG and mains interference."""
    stimulation: StimulationParams = field(default_factory=StimulationParams)
    """Responses to tDCS, tACS and TMS."""
    hemodynamics: HemodynamicParams = field(default_factory=HemodynamicParams)
    """fNIRS haemodynamic responses and systemic physiology."""

    def __post_init__(self) -> None:
        if isinstance(self.seed, bool) or not isinstance(self.seed, int | np.integer):
            raise TypeError(f"seed must be an int, got {type(self.seed).__name__}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")

    @classmethod
    def from_seed(cls, seed: int) -> SubjectParams:
        """Draw one subject of the population.

        Parameters
        ----------
        seed : int
            Subject seed, >= 0. The same seed always gives the same subject.

        Returns
        -------
        params : SubjectParams
        """
        rng = rng_stream(seed, STREAM_PARAMS)
        # Each group gets its own child stream so adding a parameter to one group leaves the
        # other groups of every existing seed unchanged.
        children = [np.random.default_rng(s) for s in rng.bit_generator.seed_seq.spawn(6)]
        return cls(
            seed=int(seed),
            rhythms=RhythmParams.draw(children[0]),
            erd=ErdParams.draw(children[1]),
            background=BackgroundParams.draw(children[2]),
            artifacts=ArtifactParams.draw(children[3]),
            stimulation=StimulationParams.draw(children[4]),
            hemodynamics=HemodynamicParams.draw(children[5]),
        )
