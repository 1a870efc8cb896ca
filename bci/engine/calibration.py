"""Cut labeled training windows out of the calibration block's preprocessed signal."""

from __future__ import annotations

import numpy as np

from bci.acquire import RingBuffer
from bci.protocol.schema import DecoderSection, PreprocessingSection

TRAIN_STEP_S = 0.25
"""Step between the overlapping training windows cut from each epoch, s."""


def calibration_windows(
    processed: RingBuffer,
    cues: list[tuple[float, str]],
    sfreq: float,
    decoder: DecoderSection,
    preprocessing: PreprocessingSection,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Decoder-length windows from ``[cue + tmin, cue + tmax]`` of every calibration trial.

    Parameters
    ----------
    processed : RingBuffer
        Preprocessed EEG (the decoder's channels) covering the calibration block.
    cues : list of (float, str)
        Cue time (s, local clock) and label of each calibration trial.
    sfreq : float
        Sampling rate, Hz.

    Returns
    -------
    windows : array, shape (n_windows, n_samples, n_channels)
    labels : array of str, shape (n_windows,)
    groups : array of int, shape (n_windows,)
        Trial index of each window, so cross-validation keeps trials whole.
    ends : array, shape (n_windows,)
        Time of each window's last sample, s (to cut the matching fNIRS windows).
    """
    n_window = round(preprocessing.window_s * sfreq)
    n_epoch = round((decoder.epoch_tmax_s - decoder.epoch_tmin_s) * sfreq)
    step = max(round(TRAIN_STEP_S * sfreq), 1)
    starts = range(0, n_epoch - n_window + 1, step)
    windows, labels, groups, ends = [], [], [], []
    for trial, (onset, label) in enumerate(cues):
        epoch, times = processed.between(onset + decoder.epoch_tmin_s, onset + decoder.epoch_tmax_s)
        if len(epoch) < n_epoch or np.any(np.diff(times) > 1.5 / sfreq):
            continue  # trial lost to a gap or beyond the ring's horizon
        for start in starts:
            windows.append(epoch[start : start + n_window])
            labels.append(label)
            groups.append(trial)
            ends.append(times[start + n_window - 1])
    if len(set(labels)) < 2:
        raise RuntimeError(
            f"Only {len(set(groups))} usable calibration trials of {len(cues)} (classes "
            f"{sorted(set(labels))}); the decoder needs both classes. Check the EEG stream for "
            "gaps and run a longer calibration block."
        )
    return np.stack(windows), np.array(labels), np.array(groups), np.array(ends)


def windows_ending_at(processed: RingBuffer, ends: np.ndarray, n_samples: int) -> np.ndarray:
    """The ``n_samples`` latest samples at or before each time in ``ends`` (fNIRS windows that
    match EEG windows), shape (len(ends), n_samples, n_channels).

    Raises
    ------
    RuntimeError
        The ring does not reach back far enough for the first window.
    """
    data, times = processed.latest(len(processed))
    stops = np.searchsorted(times, ends, side="right")
    if len(stops) and stops.min() < n_samples:
        raise RuntimeError(
            f"The fNIRS record starts {times[0] if len(times) else float('nan'):.1f} s, too late "
            f"for a {n_samples}-sample window ending at {ends.min():.1f} s; start calibration "
            "trials later (a longer baseline block) or shorten decoder.nirs_window_s."
        )
    return np.stack([data[stop - n_samples : stop] for stop in stops])
