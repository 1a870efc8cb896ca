"""Phase accuracy of the phase-locked trigger on the virtual subject, simulated as the engine
runs it: causal preprocessing chunk by chunk, a 1 ms control loop, pulses at loop ticks; and
the offline truth at the pulses of a recorded session.

The ground truth is the phase of the offline zero-phase band-pass (``filtfilt``) of the same raw
Laplacian signal, at each pulse time: what an offline analysis of the recording would call the
phase the pulse hit.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np
from scipy import signal as sps

from bci.control.phase import (
    MontageKind,
    PhaseMethod,
    PhaseTrigger,
    PhaseTriggerSettings,
    montage_weights,
    pipeline_sos,
)
from bci.engine.preprocess import eeg_pipeline
from bci.protocol.schema import PreprocessingSection
from devices.virtual_subject import EegSettings, SubjectParams, VirtualSubject

PHASE_PICKS = ("C3", "FC1", "FC5", "CP1", "CP5")
"""C3 and the four neighbours of Zrenner et al. (2018)'s C3 Hjorth Laplacian, centre first."""

_TRUTH_ORDER = 4  # Butterworth order of the offline reference band-pass (applied twice)


def phase_preprocessing(picks: tuple[str, ...] = PHASE_PICKS) -> PreprocessingSection:
    """Causal preprocessing for phase-locked protocols.

    Parameters
    ----------
    picks : tuple of str
        Channels, the Laplacian's centre first.

    Returns
    -------
    section : PreprocessingSection
        No CAR (the Laplacian is the reference), 50 Hz notch, a wide 1–45 Hz order-2
        band-pass: it removes drift and EMG yet shifts the mu band's phase by only ~10°, which
        ``PhaseTriggerSettings.upstream_sos`` then takes back out.
    """
    return PreprocessingSection(
        picks=list(picks), car=False, notch_hz=50, bandpass_hz=(1.0, 45.0), filter_order=2
    )


def circular_error(phases_deg, target_deg: float = 0.0) -> tuple[float, float]:
    """Circular mean error against ``target_deg`` (degrees, in (-180, 180]) and phase-locking
    value (0–1) of the phases a trigger hit; nan for none."""
    errors = np.deg2rad(np.asarray(phases_deg, dtype=float) - target_deg)
    mean = np.mean(np.exp(1j * errors)) if errors.size else complex(math.nan, math.nan)
    return math.degrees(np.angle(mean)), float(abs(mean))


PULSE_ARTIFACT_S = (-0.005, 0.4)
"""Around each TMS pulse, the virtual subject's artifact and evoked potential, s."""


def recorded_pulse_phases(xdf_path, protocol, blank_s=PULSE_ARTIFACT_S) -> np.ndarray:
    """The true phase (degrees) at each pulse of a recorded phase-locked session.

    The raw EEG of the XDF is turned into the protocol's montage signal; each pulse's
    ``blank_s`` window is replaced by a straight line (a zero-phase filter would smear the
    artifact back onto the pulse); the signal is zero-phase band-passed (the controller's band)
    and Hilbert-transformed offline; its phase is read at each pulse's write time.

    Parameters
    ----------
    xdf_path : str or Path
        The session's recording.
    protocol : Protocol
        The session's protocol (prefix, picks, controller band and montage).
    blank_s : tuple of float or None
        Window around each pulse to bridge, s; None keeps the signal as recorded.
    """
    import pyxdf

    from bci.streams import STIM_CHANNELS, stream_names

    names = stream_names(protocol.session.prefix)
    streams, _ = pyxdf.load_xdf(str(xdf_path), synchronize_clocks=True)
    by_name = {stream["info"]["name"][0]: stream for stream in streams}
    eeg, stim = by_name[names["eeg"]], by_name[names["stim"]]
    labels = [ch["label"][0] for ch in eeg["info"]["desc"][0]["channels"][0]["channel"]]
    picks = protocol.preprocessing.picks
    data = np.asarray(eeg["time_series"], dtype=float)[:, [labels.index(c) for c in picks]]
    signal = data @ montage_weights(picks, protocol.controller.montage)
    times = np.asarray(eeg["time_stamps"])
    pulses = np.asarray(stim["time_series"])[:, STIM_CHANNELS.index("pulses")] > 0
    pulse_times = np.asarray(stim["time_stamps"])[pulses]
    for pulse in pulse_times if blank_s is not None else ():
        start, stop = np.searchsorted(times, pulse + np.asarray(blank_s))
        start, stop = max(start, 1), min(stop, len(times) - 1)
        signal[start:stop] = np.linspace(signal[start - 1], signal[stop], stop - start)
    sfreq = float(eeg["info"]["nominal_srate"][0])
    sos = sps.butter(_TRUTH_ORDER, protocol.controller.band_hz, btype="bandpass", fs=sfreq,
                     output="sos")  # fmt: skip
    phase = np.angle(sps.hilbert(sps.sosfiltfilt(sos, signal)))
    # interpolate on the unit circle: the phase wraps between samples
    cos = np.interp(pulse_times, times, np.cos(phase))
    sin = np.interp(pulse_times, times, np.sin(phase))
    return np.degrees(np.angle(cos + 1j * sin))


def evaluate_phase_accuracy(
    seed: int = 0,
    method: PhaseMethod = "echt",
    duration_s: float = 120.0,
    sfreq: float = 1000.0,
    n_channels: int = 64,
    chunk_s: float = 0.01,
    latency_s: float = 0.0,
    baseline_s: float = 30.0,
    tick_s: float = 0.001,
    montage: MontageKind = "laplacian",
    compensate_upstream: bool = True,
    **overrides: Any,
) -> dict[str, Any]:
    """Stream a resting virtual subject through the trigger and score the phases it hit.

    Parameters
    ----------
    seed : int
        Subject (``SubjectParams.from_seed(seed)``, default SNR).
    method : {"echt", "ar"}
        Phase estimator.
    duration_s : float
        Recording length, s, baseline included.
    sfreq : float
        EEG sampling rate, Hz.
    n_channels : int
        Cap size (must include ``PHASE_PICKS``: 64 does).
    chunk_s : float
        Amplifier chunk length, s: a chunk arrives when its last sample is ``latency_s`` old.
    latency_s : float
        Delay from a sample's acquisition to its availability to the engine, s (transport,
        preprocessing); the output path's delay adds to it one for one.
    baseline_s : float
        Leading stretch used to calibrate the amplitude gate, s; no pulses there.
    tick_s : float
        Control-loop period, s: the trigger is re-checked this often, new data or not.
    montage : {"laplacian", "single"}
        Spatial filter over ``PHASE_PICKS``.
    compensate_upstream : bool
        Pass the preprocessing's filter sections as ``upstream_sos``.
    **overrides
        Other ``PhaseTriggerSettings`` fields (``target_deg``, ``window_s``, ...).

    Returns
    -------
    result : dict
        ``mean_error_deg`` (circular mean of true − target phase), ``plv`` (its resultant
        length), ``n_triggers``, ``rate_hz`` (pulses per second after the baseline),
        ``method``, ``seed``, ``latency_s``, ``target_deg``, ``threshold`` (amplitude gate, µV),
        ``mu_frequency_hz`` (the subject's), ``errors_deg`` (each pulse's error).
    """
    if not 0 < baseline_s < duration_s:
        raise ValueError(
            f"baseline_s must be within (0, duration_s={duration_s}) s, got {baseline_s!r}"
        )
    for name, value in (("latency_s", latency_s), ("tick_s", tick_s), ("chunk_s", chunk_s)):
        if not (math.isfinite(value) and value >= 0) or (name != "latency_s" and value == 0):
            raise ValueError(f"{name} must be a finite number of seconds > 0, got {value!r}")
    settings = PhaseTriggerSettings(sfreq=sfreq, method=method, **overrides)
    weights = montage_weights(PHASE_PICKS, montage)
    params = SubjectParams.from_seed(seed)
    subject = VirtualSubject(params, EegSettings(n_channels=n_channels, sfreq=sfreq), fnirs=None)
    n_total = round(duration_s * sfreq)
    raw = subject.eeg(n_total)
    names = subject.eeg_channel_names
    pipeline = eeg_pipeline(phase_preprocessing(), names, sfreq)
    if compensate_upstream:
        settings = replace(settings, upstream_sos=pipeline_sos(pipeline))
    trigger = PhaseTrigger(settings)

    # Ground truth: zero-phase band-pass of the raw Laplacian (no causal filter anywhere).
    raw_signal = raw[:, [names.index(n) for n in PHASE_PICKS]] @ weights
    truth_sos = sps.butter(_TRUTH_ORDER, settings.band_hz, "bandpass", fs=sfreq, output="sos")
    true_phase = np.angle(sps.hilbert(sps.sosfiltfilt(truth_sos, raw_signal)))

    times = np.arange(n_total) / sfreq
    chunk = max(1, round(chunk_s * sfreq))
    n_base = round(baseline_s * sfreq)
    processed = np.empty(n_total)
    for start in range(0, n_base, chunk):
        stop = min(start + chunk, n_base)
        processed[start:stop] = pipeline(raw[start:stop], times[start:stop])[0] @ weights
    trigger.calibrate(processed[:n_base])

    target = math.radians(settings.target_deg)
    errors: list[float] = []
    decision = None
    tick = math.floor(n_base / sfreq / tick_s + 1e-9)  # loop ticks, counted as integers
    start = n_base
    while start < n_total:
        stop = min(start + chunk, n_total)
        # The chunk is available when its newest sample is latency_s old; the loop notices it
        # at its next tick.
        arrival = times[stop - 1] + latency_s
        while tick * tick_s < arrival - 1e-9:
            if decision is not None and trigger.should_fire(decision, tick * tick_s):
                _fire(trigger, tick * tick_s, true_phase, target, sfreq, errors)
            tick += 1
        processed[start:stop] = pipeline(raw[start:stop], times[start:stop])[0] @ weights
        if stop >= trigger.n_samples:
            decision = trigger(processed[stop - trigger.n_samples : stop], times[stop - 1])
            if trigger.should_fire(decision, tick * tick_s):
                _fire(trigger, tick * tick_s, true_phase, target, sfreq, errors)
        tick += 1
        start = stop

    errors_rad = np.asarray(errors)
    mean_error, plv = circular_error(np.degrees(errors_rad))
    return {
        "mean_error_deg": mean_error,
        "plv": plv,
        "n_triggers": len(errors),
        "rate_hz": len(errors) / (duration_s - baseline_s),
        "method": method,
        "seed": seed,
        "latency_s": latency_s,
        "target_deg": settings.target_deg,
        "threshold": trigger.threshold,
        "mu_frequency_hz": params.rhythms.mu_frequency_hz,
        "errors_deg": np.degrees(errors_rad).tolist(),
    }


def _fire(
    trigger: PhaseTrigger,
    now: float,
    true_phase: np.ndarray,
    target: float,
    sfreq: float,
    errors: list[float],
) -> None:
    """Deliver a pulse at ``now`` and score it against the true phase of that sample."""
    trigger.fired(now)
    index = round(now * sfreq)
    if index < true_phase.size:
        errors.append(float(np.angle(np.exp(1j * (true_phase[index] - target)))))
