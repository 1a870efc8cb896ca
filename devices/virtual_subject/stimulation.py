"""How the virtual brain answers stimulation: tDCS plasticity, tACS entrainment, TMS-evoked
potentials, and the artifacts each leaves in the EEG.

These are pure functions and one pure state object (``Plasticity``); the EEG generator and
``VirtualSubject`` schedule them in time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .montage import position
from .validation import check_ranges, clipped

MODALITIES = ("tdcs", "tacs", "tms", "pulse_train")
"""Stimulation modalities understood by the virtual subject (``bci.streams`` stim desc)."""

HEMISPHERES = ("left", "right")
"""Order of the two motor cortices in every per-hemisphere array."""

_MOTOR_SITES = ("C3", "C4")
# A tES electrode acts on a motor cortex in proportion to a Gaussian of its distance to the
# hand knob (C3/C4): a 5x7 cm sponge centred 2 cm away still mostly covers it.
_ELECTRODE_REACH_M = 0.03
# tACS artifact: modest by design (real ones are mV and removed by template subtraction).
TACS_ARTIFACT_UV_PER_MA = 10.0
TDCS_ARTIFACT_UV_PER_MA = 20.0
PULSE_ARTIFACT_UV_PER_MA = 50.0
TMS_ARTIFACT_UV = 2000.0
"""TMS artifact peak at the coil site at 100 % MSO, µV, before it decays within ~10 ms."""

# TEP components (Ilmoniemi & Kičić 2010; Komssi & Kähkönen 2006): latency s, peak µV at the
# reference intensity, Gaussian width s, and whether the topography is local (coil site) or
# central (vertex-dominant late components).
TEP_COMPONENTS = (
    ("N15", 0.015, -2.0, 0.004, "local"),
    ("P30", 0.030, 3.0, 0.006, "local"),
    ("N45", 0.045, -5.0, 0.008, "local"),
    ("P60", 0.060, 4.0, 0.010, "local"),
    ("N100", 0.100, -8.0, 0.020, "central"),
    ("P180", 0.180, 6.0, 0.035, "central"),
)

_STIM_RANGES = {
    "tdcs_induction_tau_s": (60.0, 1800.0),
    "tdcs_ceiling": (0.0, 1.5),
    "tdcs_floor": (0.0, 0.9),
    "tdcs_decay_tau_s": (300.0, 10800.0),
    "metaplasticity_strength": (0.0, 1.0),
    "metaplasticity_tau_s": (300.0, 10800.0),
    "tacs_alpha_gain": (0.0, 1.0),
    "tacs_tuning_hz": (0.3, 2.0),
    "tacs_time_constant_s": (0.2, 10.0),
    "motor_threshold_pct": (20.0, 90.0),
    "tep_scale": (0.2, 3.0),
}


@dataclass(frozen=True)
class StimulationParams:
    """One subject's responses to non-invasive brain stimulation."""

    tdcs_induction_tau_s: float = 360.0
    """Time constant of the build-up of the tDCS after-effect at 1 mA, s, 60–1800; drawn
    U(240, 480): 1 mA anodal for 9–13 min gives excitability increases (Nitsche & Paulus 2000,
    2001), so the effect must build over minutes."""
    tdcs_ceiling: float = 0.5
    """Largest relative increase of ERD depth reachable by anodal tDCS (``erd_gain`` − 1), 0–1.5;
    drawn U(0.3, 0.8). The approach to it slows as it nears (BCM-like homeostatic ceiling,
    Bienenstock, Cooper & Munro 1982; Karabanov et al. 2015)."""
    tdcs_floor: float = 0.35
    """Largest relative decrease of ERD depth reachable by cathodal tDCS, 0–0.9; drawn
    U(0.2, 0.5) (cathodal tDCS lowers excitability, Nitsche & Paulus 2000)."""
    tdcs_decay_tau_s: float = 3000.0
    """Time constant of the decay of the after-effect, s, 300–10800; drawn U(1800, 4800): 13 min
    of 1 mA gives after-effects lasting up to 90 min (Nitsche & Paulus 2001)."""
    metaplasticity_strength: float = 0.5
    """How much recent potentiation lowers the reachable ceiling (sliding modification
    threshold), 0–1; drawn U(0.3, 0.7) (homeostatic metaplasticity, Karabanov et al. 2015)."""
    metaplasticity_tau_s: float = 1800.0
    """Time constant with which the sliding threshold follows the plasticity state, s,
    300–10800; drawn U(1200, 3600)."""
    tacs_alpha_gain: float = 0.35
    """Relative increase of posterior alpha amplitude by 2 mA tACS at the IAF, 0–1; drawn
    U(0.2, 0.5) (Zaehle et al. 2010; Helfrich et al. 2014)."""
    tacs_tuning_hz: float = 1.0
    """Width (SD) of the entrainment tuning curve around the IAF, Hz, 0.3–2; drawn U(0.7, 1.3).
    No effect beyond ±2 Hz (Arnold tongue at low intensity)."""
    tacs_time_constant_s: float = 2.0
    """Build-up and fade-out time constant of tACS entrainment, s, 0.2–10; drawn U(1, 3)."""
    motor_threshold_pct: float = 45.0
    """Resting motor threshold, % of maximum stimulator output, 20–90; drawn N(45, 8) (typical
    rMT of a figure-of-eight coil; Rossini et al. 2015)."""
    tep_scale: float = 1.0
    """Subject's TEP amplitude relative to ``TEP_COMPONENTS``, 0.2–3; log-normal around 1."""

    def __post_init__(self) -> None:
        check_ranges(self, _STIM_RANGES)

    @classmethod
    def draw(cls, rng: np.random.Generator) -> StimulationParams:
        """One subject's stimulation responses drawn from the population distributions above."""
        return clipped(cls, _STIM_RANGES, {
            "tdcs_induction_tau_s": rng.uniform(240.0, 480.0),
            "tdcs_ceiling": rng.uniform(0.3, 0.8),
            "tdcs_floor": rng.uniform(0.2, 0.5),
            "tdcs_decay_tau_s": rng.uniform(1800.0, 4800.0),
            "metaplasticity_strength": rng.uniform(0.3, 0.7),
            "metaplasticity_tau_s": rng.uniform(1200.0, 3600.0),
            "tacs_alpha_gain": rng.uniform(0.2, 0.5),
            "tacs_tuning_hz": rng.uniform(0.7, 1.3),
            "tacs_time_constant_s": rng.uniform(1.0, 3.0),
            "motor_threshold_pct": rng.normal(45.0, 8.0),
            "tep_scale": rng.lognormal(0.0, 0.25),
        })  # fmt: skip


def motor_drive(amplitude_ma: float, anode: str | None, cathode: str | None) -> np.ndarray:
    """Signed tDCS drive of each motor cortex: > 0 anodal (excitatory), < 0 cathodal.

    Parameters
    ----------
    amplitude_ma : float
        tDCS current, mA; > 0 means anodal under ``anode``.
    anode, cathode : str or None
        10-05 electrode names; None or "" for an electrode off the cap (e.g. extracephalic).

    Returns
    -------
    drive : array, shape (2,)
        mA-equivalent under the left (C3) and right (C4) hand areas.
    """

    def reach(name: str | None, parameter: str) -> np.ndarray:
        if not name:
            return np.zeros(2)
        pos = position(name, parameter)
        dist = np.array([np.linalg.norm(pos - position(site)) for site in _MOTOR_SITES])
        return np.exp(-(dist**2) / (2 * _ELECTRODE_REACH_M**2))

    return amplitude_ma * (reach(anode, "anode") - reach(cathode, "cathode"))


def tacs_alpha_gain(
    params: StimulationParams, iaf_hz: float, amplitude_ma: float, frequency_hz: float
) -> float:
    """Relative increase of alpha amplitude during tACS (0 when off or off-frequency).

    Parameters
    ----------
    params : StimulationParams
    iaf_hz : float
        Subject's individual alpha frequency, Hz.
    amplitude_ma : float
        tACS amplitude, mA; the effect grows linearly up to 2 mA.
    frequency_hz : float
        tACS frequency, Hz.

    Returns
    -------
    gain : float
        Amplitude multiplier minus 1.
    """
    detune = frequency_hz - iaf_hz
    if amplitude_ma == 0 or abs(detune) > 2.0:
        return 0.0
    tuning = math.exp(-(detune**2) / (2 * params.tacs_tuning_hz**2))
    return params.tacs_alpha_gain * min(abs(amplitude_ma), 2.0) / 2.0 * tuning


def tep_intensity_scale(params: StimulationParams, intensity_pct: float) -> float:
    """TEP amplitude multiplier for a TMS pulse of ``intensity_pct`` % MSO.

    TEPs appear from about 60 % of rMT and grow roughly linearly with intensity (Komssi et al.
    2004); 1 at rMT, saturating at 2.5.
    """
    relative = intensity_pct / params.motor_threshold_pct
    return params.tep_scale * float(np.clip((relative - 0.6) / 0.4, 0.0, 2.5))


def tms_kernel(
    params: StimulationParams,
    intensity_pct: float,
    site: np.ndarray,
    electrodes: np.ndarray,
    sfreq: float,
) -> np.ndarray:
    """EEG response to one TMS pulse: TEP plus the short large pulse artifact.

    Parameters
    ----------
    params : StimulationParams
    intensity_pct : float
        Pulse intensity, % MSO, 0–100.
    site : array, shape (3,)
        Coil position, m.
    electrodes : array, shape (n_channels, 3)
        Electrode positions, m.
    sfreq : float
        Sampling rate, Hz.

    Returns
    -------
    kernel : array, shape (n_samples, n_channels)
        µV, starting at the pulse sample and lasting 0.4 s.
    """
    t = np.arange(round(0.4 * sfreq)) / sfreq
    vertex = position("Cz")
    local = _gaussian(electrodes, site, 0.04)
    central = _gaussian(electrodes, 0.5 * (site + vertex), 0.06)
    scale = tep_intensity_scale(params, intensity_pct)
    kernel = np.zeros((t.size, electrodes.shape[0]))
    for _, latency, peak, width, topography in TEP_COMPONENTS:
        wave = peak * scale * np.exp(-0.5 * ((t - latency) / width) ** 2)
        kernel += np.multiply.outer(wave, local if topography == "local" else central)
    # Pulse artifact: a decaying exponential (amplifier recovery), largest under the coil and
    # present everywhere (Ilmoniemi & Kičić 2010).
    artifact = TMS_ARTIFACT_UV * intensity_pct / 100.0 * np.exp(-t / 0.002)
    kernel += np.multiply.outer(artifact, 0.1 + 0.9 * _gaussian(electrodes, site, 0.05))
    return kernel


def artifact_spread(
    electrodes: np.ndarray, anode: str | None, cathode: str | None, floor: float = 0.2
) -> np.ndarray:
    """Relative size of a tES artifact at each electrode: largest next to the stimulation
    electrodes, ``floor`` far away, shape (n_channels,)."""
    weight = np.zeros(electrodes.shape[0])
    for name, parameter in ((anode, "anode"), (cathode, "cathode")):
        if name:
            weight = np.maximum(weight, _gaussian(electrodes, position(name, parameter), 0.06))
    return floor + (1.0 - floor) * weight


def _gaussian(points: np.ndarray, centre: np.ndarray, width_m: float) -> np.ndarray:
    return np.exp(-np.sum((points - centre) ** 2, axis=-1) / (2 * width_m**2))


class Plasticity:
    """tDCS-induced plasticity of the two motor cortices (the ERD gain), with a BCM-like ceiling.

    State per hemisphere: ``p`` (relative change of ERD depth; ``erd_gain = 1 + p``) and a
    sliding threshold ``theta`` that follows ``p`` slowly. For a drive ``u`` (mA-equivalent):

    - anodal (u > 0): ``p`` approaches ``ceiling − strength·theta`` with rate ``u / tau_ind``;
    - cathodal (u < 0): ``p`` approaches ``−floor − strength·theta`` with rate ``|u| / tau_ind``;
    - always: ``p`` decays to 0 with ``tau_decay`` (the after-effect fades over tens of minutes).

    Approaching a bound exponentially is the homeostatic ceiling (more potentiation, less further
    gain), and the sliding threshold makes a second session less effective than the first. The
    state advances on a fixed 1 s grid of absolute time, so the result never depends on when or
    how often it is queried.

    Parameters
    ----------
    params : StimulationParams
    step_s : float
        Integration grid, s.
    """

    def __init__(self, params: StimulationParams, step_s: float = 1.0) -> None:
        self.params = params
        self.step_s = step_s
        self.p = np.zeros(2)
        self.theta = np.zeros(2)
        self.time = 0.0
        self._drive = np.zeros(2)
        self._pending: list[tuple[float, np.ndarray]] = []

    @property
    def erd_gain(self) -> np.ndarray:
        """ERD depth multiplier of the left and right motor cortex, shape (2,)."""
        return 1.0 + self.p

    def set_drive(self, time_s: float, drive: np.ndarray) -> None:
        """Apply a new tDCS drive (see ``motor_drive``) from ``time_s`` on, s."""
        self._pending.append((max(time_s, self.time), np.asarray(drive, dtype=float)))
        self._pending.sort(key=lambda item: item[0])

    def advance(self, time_s: float) -> np.ndarray:
        """Integrate up to the last grid point at or before ``time_s``; return ``erd_gain``."""
        prm = self.params
        while self.time + self.step_s <= time_s + 1e-9:
            while self._pending and self._pending[0][0] <= self.time + 1e-9:
                self._drive = self._pending.pop(0)[1]
            dt = self.step_s
            u = self._drive
            bound = np.where(u >= 0, prm.tdcs_ceiling, -prm.tdcs_floor)
            bound = bound - prm.metaplasticity_strength * self.theta
            bound = np.where(u >= 0, np.maximum(bound, 0.0), np.minimum(bound, 0.0))
            approach = np.exp(-np.abs(u) * dt / prm.tdcs_induction_tau_s)
            self.p = bound + (self.p - bound) * approach
            self.p *= math.exp(-dt / prm.tdcs_decay_tau_s)
            self.theta += (self.p - self.theta) * (1 - math.exp(-dt / prm.metaplasticity_tau_s))
            self.time += dt
        return self.erd_gain
