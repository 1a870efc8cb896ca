"""Streaming continuous-wave fNIRS of the virtual subject: raw intensities over both motor
cortices at 760 and 850 nm.

Eight long channels (3 cm), four around C3 and four around C4, each two sources and two
detectors in a diamond. Concentration changes (µM) — imagery responses (HRF), Mayer waves,
respiration, cardiac pulsation and local physiological noise — are turned into intensity with
the modified Beer–Lambert law (``hemodynamics``), then motion artifacts, LED drift and detector
noise are applied. Channel names follow MNE: ``"S1_D1 760"``, ``"S1_D1 850"``, pairs
consecutive.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import signal

from bci.streams import CUE_LEFT, CUE_REST, CUE_RIGHT

from . import montage
from .hemodynamics import (
    SOURCE_DETECTOR_DISTANCE_M,
    WAVELENGTHS_NM,
    canonical_hrf,
    optical_density,
)
from .noise import (
    STREAM_FNIRS_ANATOMY,
    STREAM_FNIRS_MOTION,
    STREAM_FNIRS_NOISE,
    KernelOverlay,
    PoissonTimes,
    ScheduledStream,
    StatefulSos,
    band_noise_sos,
    lowpass_noise_sos,
    rng_stream,
    sample_at,
)
from .params import SubjectParams

# (source, detector, hemisphere 0 left / 1 right) of each channel, pairs in output order.
PAIRS = (
    ("S1", "D1", 0), ("S1", "D2", 0), ("S2", "D1", 0), ("S2", "D2", 0),
    ("S3", "D3", 1), ("S3", "D4", 1), ("S4", "D3", 1), ("S4", "D4", 1),
)  # fmt: skip

_SYSTEMIC_HBR = 0.25  # Mayer, respiratory and cardiac oscillations are mostly blood volume:
# HbO and HbR move together, HbR less.
_LOCAL_NOISE_UM = 0.05  # spontaneous local haemodynamic fluctuation per channel, µM RMS
_LED_DRIFT = 0.001  # relative drift of source power and detector gain (stable CW devices drift
_LED_DRIFT_HZ = 0.002  # by well under 1 % over a session, over minutes)
_BLOCK_S = 10.0  # block length at which ``hbo_amplitude_um`` is defined


@dataclass(frozen=True)
class FnirsSettings:
    """The fNIRS device of the virtual subject."""

    sfreq: float = 10.0
    """Sampling rate, Hz, 1–50 (continuous-wave devices: 5–50 Hz)."""

    def __post_init__(self) -> None:
        if not (isinstance(self.sfreq, int | float) and 1.0 <= self.sfreq <= 50.0):
            raise ValueError(f"sfreq must be between 1 and 50 Hz, got {self.sfreq!r}")

    @property
    def channel_names(self) -> tuple[str, ...]:
        """``"S1_D1 760"``, ``"S1_D1 850"``, ... (MNE convention, pairs consecutive)."""
        return tuple(f"{s}_{d} {wl}" for s, d, _ in PAIRS for wl in WAVELENGTHS_NM)


def optode_positions() -> dict[str, np.ndarray]:
    """Positions of the sources and detectors, m (head coordinates of the EEG montage).

    Around C3 (left) and C4 (right): sources anterior and posterior, detectors lateral and
    medial, each ``SOURCE_DETECTOR_DISTANCE_M / √2`` from the centre in the scalp's tangent
    plane, so every source–detector chord is exactly ``SOURCE_DETECTOR_DISTANCE_M``.
    """
    half = SOURCE_DETECTOR_DISTANCE_M / math.sqrt(2)
    positions = {}
    for k, centre_name in enumerate(("C3", "C4")):
        centre = montage.position(centre_name)
        normal = centre / np.linalg.norm(centre)
        anterior = np.array([0.0, 1.0, 0.0]) - normal[1] * normal
        anterior /= np.linalg.norm(anterior)
        lateral = np.cross(normal, anterior)
        if (lateral[0] > 0) != (k == 1):  # lateral points away from the midline
            lateral = -lateral
        positions[f"S{2 * k + 1}"] = centre + half * anterior
        positions[f"S{2 * k + 2}"] = centre - half * anterior
        positions[f"D{2 * k + 1}"] = centre + half * lateral
        positions[f"D{2 * k + 2}"] = centre - half * lateral
    return positions


class FnirsGenerator(ScheduledStream):
    """Stateful fNIRS generator; call it with a sample count to get the next samples, shape
    (n_samples, 16), raw intensity (a.u.).

    Parameters
    ----------
    params : SubjectParams
        The subject.
    settings : FnirsSettings
        The device.
    """

    def __init__(self, params: SubjectParams, settings: FnirsSettings) -> None:
        super().__init__(settings.sfreq, 2 * len(PAIRS))
        self.params = params
        self.settings = settings
        self.channel_names = settings.channel_names
        hemo = params.hemodynamics
        fs = self.sfreq
        n_pairs = len(PAIRS)
        anatomy = rng_stream(params.seed, STREAM_FNIRS_ANATOMY)
        # Coupling of each channel to the activated cortex (optode placement over the hand
        # knob varies) and to systemic physiology (scalp vs brain contribution).
        self._response_weight = anatomy.uniform(0.6, 1.0, n_pairs)
        self._systemic_weight = anatomy.uniform(0.7, 1.3, (3, n_pairs))
        # Detected light: 850 nm typically about twice 760 nm (LED power, absorption).
        level_850 = 10 ** anatomy.uniform(-1.0, 0.3, n_pairs)
        level_760 = level_850 * anatomy.uniform(0.3, 0.7, n_pairs)
        self.baseline_intensity = np.stack([level_760, level_850], axis=1).reshape(-1)
        """Intensity of each channel with no concentration change, a.u., shape (16,)."""
        self._hemisphere = np.array([h for *_, h in PAIRS])

        hrf_hbo = canonical_hrf(fs, hemo.hrf_peak_s, hemo.hrf_undershoot_s)
        delay = round(hemo.hbr_delay_s * fs)
        hrf_hbr = np.concatenate([np.zeros(delay), hrf_hbo])[: hrf_hbo.size]
        block = np.convolve(np.ones(round(_BLOCK_S * fs)), hrf_hbo)
        scale = hemo.hbo_amplitude_um / block.max()
        self._hrf = np.stack([hrf_hbo * scale, hrf_hbr * scale * hemo.hbr_ratio])
        self._hrf_state = np.zeros((2, hrf_hbo.size - 1, 2))  # (HbO/HbR, taps-1, hemisphere)
        self._activation = np.zeros(2)

        self._rng = rng_stream(params.seed, STREAM_FNIRS_NOISE)
        self._systemic = [
            StatefulSos(band_noise_sos(hemo.mayer_hz * 0.8, hemo.mayer_hz * 1.2, fs), 1),
            StatefulSos(band_noise_sos(hemo.respiration_hz * 0.85, hemo.respiration_hz * 1.15,
                                       fs), 1),
            StatefulSos(band_noise_sos(hemo.heart_rate_hz * 0.93, hemo.heart_rate_hz * 1.07,
                                       fs), 1),
        ]  # fmt: skip
        self._systemic_um = np.array([hemo.mayer_um, hemo.respiration_um, hemo.cardiac_um])
        self._local = StatefulSos(lowpass_noise_sos(0.1, fs), 2 * n_pairs)
        led_sos = lowpass_noise_sos(_LED_DRIFT_HZ, fs)
        self._led = StatefulSos(led_sos, 2 * n_pairs)
        # Columns: 3 systemic | local HbO, HbR per pair | LED drift | detector noise
        self._n_noise = 3 + 2 * n_pairs + 4 * n_pairs
        # Burn-in so that nothing starts from zero (60 s: > 10 time constants of the slowest
        # band-pass); the LED drift is too slow for that and starts in its stationary state.
        self._step_noise(self._rng.standard_normal((round(60 * fs), self._n_noise)))
        self._led.set_output_state(self._rng.standard_normal(2 * n_pairs))
        self._motion = KernelOverlay(2 * n_pairs)
        self._motion_times = PoissonTimes(
            hemo.motion_rate_per_min / 60, rng_stream(params.seed, STREAM_FNIRS_MOTION), 5
        )

    def set_imagery(self, label: str, time_s: float) -> None:
        """Start left/right-hand imagery (activating the contralateral motor cortex and, less,
        the ipsilateral one) or return to rest at ``time_s``, s since sample 0."""
        if label not in (CUE_LEFT, CUE_RIGHT, CUE_REST):
            raise ValueError(f"label must be 'left', 'right' or 'rest', got {label!r}")
        activation = np.zeros(2)
        if label != CUE_REST:
            contra = 0 if label == CUE_RIGHT else 1
            activation[:] = self.params.hemodynamics.ipsilateral_fraction
            activation[contra] = 1.0

        def apply() -> None:
            self._activation = activation

        self.schedule(time_s, apply)

    def _step_noise(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Filter one block of white noise into systemic, local and LED-drift signals."""
        n_pairs = len(PAIRS)
        systemic = np.concatenate(
            [f(z[:, k : k + 1]) for k, f in enumerate(self._systemic)], axis=1
        )
        local = self._local(z[:, 3 : 3 + 2 * n_pairs])
        led = self._led(z[:, 3 + 2 * n_pairs : 3 + 4 * n_pairs])
        return systemic, local, led

    def _render(self, m: int) -> np.ndarray:
        n_pairs = len(PAIRS)
        z = self._rng.standard_normal((m, self._n_noise))
        systemic, local, led = self._step_noise(z)
        boxcar = np.broadcast_to(self._activation, (m, 2))
        responses = []
        for k in range(2):  # HbO, HbR: FIR convolution with carried taps
            y, self._hrf_state[k] = signal.lfilter(
                self._hrf[k], [1.0], boxcar, axis=0, zi=self._hrf_state[k]
            )
            responses.append(y[:, self._hemisphere] * self._response_weight)
        sys_hbo = (systemic * self._systemic_um) @ self._systemic_weight
        hbo = responses[0] + sys_hbo + local[:, :n_pairs] * _LOCAL_NOISE_UM
        hbr = responses[1] + _SYSTEMIC_HBR * sys_hbo + local[:, n_pairs:] * _LOCAL_NOISE_UM / 2
        log_gain = -optical_density(hbo, hbr) + led * _LED_DRIFT
        self._schedule_motion(self.n_samples + m)
        motion = self._motion(self.n_samples, m)
        if motion is not None:
            log_gain += motion
        noise = 1.0 + z[:, -2 * n_pairs :] * self.params.hemodynamics.intensity_noise
        return self.baseline_intensity * np.exp(log_gain) * noise

    def _schedule_motion(self, stop: int) -> None:
        """Add the motion artifacts starting before sample ``stop``: a head movement shifts one
        optode, changing the light coupling of every channel that uses it."""
        fs = self.sfreq
        optodes = sorted({s for s, *_ in PAIRS} | {d for _, d, _ in PAIRS})
        for t, (u_kind, u_optode, u_sign, u_size, u_time) in self._motion_times.until(stop / fs):
            optode = optodes[min(int(u_optode * len(optodes)), len(optodes) - 1)]
            spatial = np.repeat([float(optode in (s, d)) for s, d, _ in PAIRS], 2)
            spatial[1::2] *= 1.05  # coupling loss is nearly wavelength-independent
            sign = 1.0 if u_sign < 0.5 else -1.0
            if u_kind < 0.6:  # spike: fast transient, back within seconds
                tau = 0.5 + 1.5 * u_time
                t_axis = np.arange(round(6 * tau * fs)) / fs
                wave = (1 - np.exp(-t_axis / 0.2)) * np.exp(-t_axis / tau)
                wave *= sign * (0.05 + 0.25 * u_size) / wave.max()
            else:  # baseline shift: the optode settles elsewhere and creeps back slowly
                tau = 20.0 + 40.0 * u_time
                t_axis = np.arange(round(5 * tau * fs)) / fs
                wave = sign * (0.02 + 0.08 * u_size) * np.exp(-t_axis / tau)
            self._motion.add(sample_at(t, fs), wave, spatial)
