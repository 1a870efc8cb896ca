"""Streaming EEG of the virtual subject: sources projected to a 10-05 cap, plus artifacts.

Contents, all in µV: spatially correlated 1/f background, posterior alpha at the IAF,
sensorimotor mu and beta with imagery ERD/ERS, eye blinks, temporal EMG bursts, mains
interference, electrode drift, amplifier noise, stimulation responses and artifacts, an optional
bad channel and an optional sample-index channel. Generating ``n`` samples at once or in any
split gives the same signal (see ``noise``), as long as events are scheduled before the samples
they affect are generated.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from bci.streams import CUE_LEFT, CUE_REST, CUE_RIGHT, SAMPLE_INDEX_CHANNEL

from . import montage
from .eeg_sources import SourceModel
from .noise import (
    STREAM_BLINKS,
    STREAM_EEG_NOISE,
    STREAM_EMG,
    STREAM_TRIALS,
    Envelope,
    KernelOverlay,
    PoissonTimes,
    ScheduledStream,
    StatefulSos,
    band_noise_sos,
    lowpass_noise_sos,
    power_law_sos,
    rng_stream,
    sample_at,
)
from .params import SubjectParams
from .stim_artifacts import StimArtifacts
from .stimulation import tacs_alpha_gain, tms_kernel

SAMPLE_INDEX_WRAP = 1 << 24
"""The sample index wraps here so that it stays exact in float32 (4.6 h at 1 kHz)."""

_BAD_NOISE_UV = 80.0  # broadband noise of a "noisy" channel (poor contact)
_BAD_LINE_FACTOR = 10.0  # a high-impedance contact picks up far more mains
_FLAT_NOISE_UV = 0.05  # a disconnected input still shows a little amplifier noise
_BURN_IN_S = 5.0  # > 10 time constants of the slowest burned-in filter (1/f corner at 0.3 Hz)


@dataclass(frozen=True)
class EegSettings:
    """The EEG amplifier and cap of the virtual subject."""

    n_channels: int = 32
    """Number of EEG channels (not counting ``SampleIndex``), 3 to ~340; 32 and 64 give the
    standard caps of ``montage``. Ignored when ``channels`` is given."""
    sfreq: float = 500.0
    """Sampling rate, Hz, 128–5000 (typical amplifiers: 250–2000)."""
    channels: tuple[str, ...] | None = None
    """Explicit 10-05 electrode names, overriding ``n_channels``."""
    line_freq: float = 50.0
    """Mains frequency, Hz, > 0 and below Nyquist (50 Europe/Asia, 60 Americas)."""
    bad_channel: str | None = None
    """Name of one channel with a bad contact, or None."""
    bad_channel_kind: str = "noisy"
    """``"noisy"`` (loose electrode: large broadband noise and mains) or ``"flat"``
    (disconnected input)."""
    sample_index: bool = False
    """Append a ``SampleIndex`` channel counting samples from 0 (wrapping at 2**24)."""

    def __post_init__(self) -> None:
        if not (isinstance(self.sfreq, int | float) and 128.0 <= self.sfreq <= 5000.0):
            raise ValueError(f"sfreq must be between 128 and 5000 Hz, got {self.sfreq!r}")
        if not (isinstance(self.line_freq, int | float) and 0 < self.line_freq < self.sfreq / 2):
            raise ValueError(
                f"line_freq must be > 0 and below sfreq/2 = {self.sfreq / 2} Hz, "
                f"got {self.line_freq!r}"
            )
        names = self.eeg_channel_names  # validates n_channels / channels
        if len(set(names)) != len(names):
            raise ValueError(f"channels must be unique, got {names}")
        if self.bad_channel is not None and self.bad_channel not in names:
            raise ValueError(f"bad_channel must be one of the channels, got {self.bad_channel!r}")
        if self.bad_channel_kind not in ("noisy", "flat"):
            raise ValueError(
                f"bad_channel_kind must be 'noisy' or 'flat', got {self.bad_channel_kind!r}"
            )

    @property
    def eeg_channel_names(self) -> tuple[str, ...]:
        """EEG electrode names, in output order."""
        if self.channels is not None:
            for name in self.channels:
                montage.position(name, "channels")
            return tuple(self.channels)
        return montage.select_channels(self.n_channels)

    @property
    def channel_names(self) -> tuple[str, ...]:
        """All output channel names: the electrodes, then ``SampleIndex`` if enabled."""
        extra = (SAMPLE_INDEX_CHANNEL,) if self.sample_index else ()
        return (*self.eeg_channel_names, *extra)


class EegGenerator(ScheduledStream):
    """Stateful EEG generator; call it with a sample count to get the next samples, shape
    (n_samples, n_channels), µV (the ``SampleIndex`` column, if any, counts samples).

    Parameters
    ----------
    params : SubjectParams
        The subject.
    settings : EegSettings
        Cap and amplifier.
    """

    def __init__(self, params: SubjectParams, settings: EegSettings) -> None:
        super().__init__(settings.sfreq, len(settings.channel_names))
        self.params = params
        self.settings = settings
        self.channel_names = settings.channel_names
        names = settings.eeg_channel_names
        self._positions = montage.channel_positions(names)
        n_ch = len(names)
        fs = self.sfreq
        rh, bg, art, erd = params.rhythms, params.background, params.artifacts, params.erd
        self._model = SourceModel(params, self._positions, fs, settings.line_freq)

        self._rng = rng_stream(params.seed, STREAM_EEG_NOISE)
        # Column layout of the one Gaussian draw per block (row-major draws keep chunking exact):
        # background | drift | amplifier noise | sources (model.kinds order) | bad channel
        n_src = len(self._model.kinds)
        self._n_noise = 3 * n_ch + n_src + 1
        self._background = StatefulSos(power_law_sos(bg.aperiodic_exponent, fs), n_ch)
        drift_sos = lowpass_noise_sos(bg.drift_cutoff_hz, fs)
        self._drift = StatefulSos(drift_sos, n_ch)
        # Start the drift in its stationary state: its corner is too slow to burn in.
        self._drift.set_output_state(self._rng.standard_normal(n_ch))
        bands = {
            "mu": (rh.mu_frequency_hz - rh.mu_bandwidth_hz / 2,
                   rh.mu_frequency_hz + rh.mu_bandwidth_hz / 2),
            "beta": (rh.beta_frequency_hz - rh.beta_bandwidth_hz / 2,
                     rh.beta_frequency_hz + rh.beta_bandwidth_hz / 2),
            "alpha": (rh.alpha_frequency_hz - 1.0, rh.alpha_frequency_hz + 1.0),
            "emg": (20.0, 150.0),
        }  # fmt: skip
        # One filter per kind over that kind's columns (kinds are contiguous in the model).
        kinds = np.array(self._model.kinds)
        self._source_filters = [
            (
                np.flatnonzero(kinds == kind),
                StatefulSos(band_noise_sos(*bands[kind], fs), int(np.sum(kinds == kind))),
            )
            for kind in dict.fromkeys(self._model.kinds)
        ]
        # Envelope column of each source in [mu L, mu R, beta L, beta R, alpha, EMG L, EMG R].
        offset = {"mu": 0, "beta": 2, "alpha": 4, "emg": 5}
        self._envelope_column = np.array(
            [
                offset[kind] + (side if kind != "alpha" else 0)
                for kind, side in zip(self._model.kinds, self._model.sides, strict=True)
            ]
        )
        self._burn_in()

        # Mu L, mu R, beta L, beta R amplitude factors (1 = resting level).
        self._erd = Envelope(np.ones(4), erd.time_constant_s, fs)
        self._alpha = Envelope(np.ones(1), params.stimulation.tacs_time_constant_s, fs)
        self._emg_bursts = KernelOverlay(2)
        self._blink_overlay = KernelOverlay(n_ch)
        self._tms_overlay = KernelOverlay(n_ch)
        self._blink_times = PoissonTimes(
            art.blink_rate_per_min / 60, rng_stream(params.seed, STREAM_BLINKS), n_marks=2
        )
        self._emg_times = PoissonTimes(
            art.emg_rate_per_min / 60, rng_stream(params.seed, STREAM_EMG), n_marks=3
        )
        self._trial_rng = rng_stream(params.seed, STREAM_TRIALS)
        self._stim = StimArtifacts(self._positions, fs)
        self._imagery = CUE_REST  # label of the cue in effect at the current sample
        self._cue = -1  # id of that cue
        bad = settings.bad_channel
        self._bad = None if bad is None else settings.eeg_channel_names.index(bad)

    @property
    def positions(self) -> np.ndarray:
        """Electrode positions, shape (n_eeg_channels, 3), m."""
        return self._positions.copy()

    # ----------------------------------------------------------------------------- scheduling
    def set_imagery(
        self, label: str, time_s: float, erd_gain: Callable[[float], np.ndarray] | None = None
    ) -> None:
        """Start left/right-hand imagery or return to rest at ``time_s``.

        Parameters
        ----------
        label : str
            ``"left"``, ``"right"`` or ``"rest"`` (``bci.streams`` cue labels).
        time_s : float
            Cue time, s since sample 0.
        erd_gain : callable, optional
            ``erd_gain(t)`` gives the ERD depth multiplier of the left and right motor cortex,
            shape (2,), at time ``t`` (tDCS plasticity); asked when the ERD sets in. Default 1.
        """
        erd = self.params.erd
        if label not in (CUE_LEFT, CUE_RIGHT, CUE_REST):
            raise ValueError(f"label must be 'left', 'right' or 'rest', got {label!r}")
        cue = next(self._counter)
        # Drawn now, in call order, so that the trial sequence does not depend on chunking.
        trial = float(np.clip(self._trial_rng.normal(1.0, erd.trial_variability), 0.2, 1.6))
        contra = 0 if label == CUE_RIGHT else 1  # right hand -> left cortex (C3)

        def start() -> None:
            previous, self._imagery, self._cue = self._imagery, label, cue
            if label == CUE_REST and previous != CUE_REST:
                recovered = np.ones(4)
                was_contra = 0 if previous == CUE_RIGHT else 1
                recovered[2 + was_contra] = math.sqrt(1.0 + erd.beta_rebound)
                self._erd.target = recovered

        # Delayed changes (ERD onset, end of rebound) only apply if no later cue has taken over
        # in the meantime; "later" is judged in signal time, when the events are applied.
        def later() -> None:
            if self._cue != cue:
                return
            target = np.ones(4)
            if label != CUE_REST:
                gain = 1.0 if erd_gain is None else float(erd_gain(self.time)[contra])
                mu_depth = min(0.95, erd.mu_erd * trial * gain)
                beta_depth = min(0.95, erd.beta_erd * trial * gain)
                target[:] = math.sqrt(1.0 + erd.ipsilateral_ers)
                target[contra] = math.sqrt(1.0 - mu_depth)
                target[2 + contra] = math.sqrt(1.0 - beta_depth)
            self._erd.target = target

        self.schedule(time_s, start)
        delay = erd.beta_rebound_s if label == CUE_REST else erd.latency_s
        self.schedule(time_s + delay, later)

    def set_tacs(
        self,
        time_s: float,
        amplitude_ma: float,
        frequency_hz: float,
        anode: str | None,
        cathode: str | None,
    ) -> None:
        """tACS from ``time_s`` on (amplitude 0 switches it off): alpha entrainment + artifact."""
        gain = tacs_alpha_gain(
            self.params.stimulation,
            self.params.rhythms.alpha_frequency_hz,
            amplitude_ma,
            frequency_hz,
        )

        def apply() -> None:
            self._alpha.target = np.array([1.0 + gain])
            self._stim.set("tacs", self.n_samples, amplitude_ma, frequency_hz, anode, cathode)

        self.schedule(time_s, apply)

    def set_artifact(
        self,
        modality: str,
        time_s: float,
        amplitude_ma: float,
        frequency_hz: float,
        anode: str | None,
        cathode: str | None,
    ) -> None:
        """tDCS offset or pulse-train artifact from ``time_s`` on (amplitude 0 stops it)."""
        self.schedule(
            time_s,
            lambda: self._stim.set(
                modality, self.n_samples, amplitude_ma, frequency_hz, anode, cathode
            ),
        )

    def tms_pulse(self, time_s: float, intensity_pct: float, site: np.ndarray) -> None:
        """One TMS pulse at ``time_s``: TEP plus pulse artifact (``stimulation.tms_kernel``)."""
        kernel = tms_kernel(
            self.params.stimulation, intensity_pct, site, self._positions, self.sfreq
        )
        self.schedule(time_s, lambda: self._tms_overlay.add(self.n_samples, kernel))

    # ------------------------------------------------------------------------------ generation
    def _burn_in(self) -> None:
        """Run the noise filters into their stationary state so there is no start-up transient."""
        n_ch = self._positions.shape[0]
        for _ in range(int(_BURN_IN_S)):
            z = self._rng.standard_normal((int(self.sfreq), n_ch + len(self._model.kinds)))
            self._background(z[:, :n_ch] @ self._model.background_mix)
            for columns, filt in self._source_filters:
                filt(z[:, n_ch + columns])

    def _render(self, m: int) -> np.ndarray:
        """``m`` samples with the control state (targets, stimulation) held constant."""
        first = self.n_samples
        n_ch = self._positions.shape[0]
        model, prm = self._model, self.params
        z = self._rng.standard_normal((m, self._n_noise))
        x = self._background(z[:, :n_ch] @ model.background_mix) * prm.background.background_uv
        x += self._drift(z[:, n_ch : 2 * n_ch]) * prm.background.drift_uv
        raw = z[:, 3 * n_ch : -1].copy()
        for columns, filt in self._source_filters:
            raw[:, columns] = filt(raw[:, columns])
        self._schedule_bursts(first + m)
        emg_env = np.full((m, 2), prm.artifacts.emg_tonic_uv)
        bursts = self._emg_bursts(first, m)
        if bursts is not None:
            emg_env += bursts
        envelopes = np.concatenate([self._erd(m), self._alpha(m), emg_env], axis=1)
        sources = raw * envelopes[:, self._envelope_column]
        x += sources @ model.leadfield
        for overlay in (self._blink_overlay, self._tms_overlay):
            extra = overlay(first, m)
            if extra is not None:
                x += extra
        x *= model.channel_gain
        x += z[:, 2 * n_ch : 3 * n_ch] * prm.background.noise_floor_uv
        index = np.arange(first, first + m)
        line = model.line(index)
        x += line
        stim = self._stim(index)
        if stim is not None:
            x += stim
        if self._bad is not None:
            if self.settings.bad_channel_kind == "flat":
                x[:, self._bad] = z[:, -1] * _FLAT_NOISE_UV
            else:
                x[:, self._bad] += z[:, -1] * _BAD_NOISE_UV + line[:, self._bad] * _BAD_LINE_FACTOR
        if self.settings.sample_index:
            x = np.concatenate([x, (index % SAMPLE_INDEX_WRAP)[:, None]], axis=1)
        return x

    def _schedule_bursts(self, stop: int) -> None:
        """Add the blinks and EMG bursts that start before sample ``stop``."""
        art = self.params.artifacts
        fs = self.sfreq
        for t, (u_duration, u_amplitude) in self._blink_times.until(stop / fs):
            duration = art.blink_duration_s * (0.8 + 0.4 * u_duration)
            peak = 0.35 * duration
            tt = np.arange(int(2.5 * duration * fs)) / fs / peak
            size = art.blink_amplitude_uv * (0.8 + 0.4 * u_amplitude)
            self._blink_overlay.add(
                sample_at(t, fs),
                tt**2 * np.exp(2.0 * (1.0 - tt)) * size,
                self._model.blink_leadfield,
            )
        for t, (u_length, u_amplitude, u_side) in self._emg_times.until(stop / fs):
            length = max(2, int(art.emg_duration_s * (0.5 + u_length) * fs))
            amplitude = art.emg_amplitude_uv * (0.6 + u_amplitude)
            sides = [(1.0, 0.0), (0.0, 1.0), (1.0, 1.0)][min(int(3 * u_side), 2)]
            self._emg_bursts.add(sample_at(t, fs), np.hanning(length) * amplitude, np.array(sides))
