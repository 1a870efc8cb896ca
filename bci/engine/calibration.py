"""Cut labeled training windows out of the calibration block's preprocessed signal."""

from __future__ import annotations

import numpy as np

from bci.acquire import RingBuffer
from bci.protocol.schema import DecoderSection, PreprocessingSection

TRAIN_STEP_S = 0.25
"""Step between the overlapping training windows cut from each epoch, s."""


def epoch_windows(
    data: np.ndarray,
    times: np.ndarray,
    sfreq: float,
    start_s: float,
    stop_s: float,
    n_samples: int,
    step_s: float = TRAIN_STEP_S,
) -> tuple[np.ndarray, np.ndarray] | None:
    """Overlapping ``n_samples`` windows, one every ``step_s``, within ``[start_s, stop_s)``, and
    the time of each one's last sample; None unless the stretch is in the signal whole (no gap).

    Parameters
    ----------
    data : array, shape (n_times, n_channels)
    times : array, shape (n_times,)
        Sample times, s, increasing.
    """
    n_epoch = round((stop_s - start_s) * sfreq)
    step = max(round(step_s * sfreq), 1)
    first = np.searchsorted(times, start_s, side="left")
    stop = np.searchsorted(times, stop_s, side="left")
    if stop - first < n_epoch or np.any(np.diff(times[first:stop]) > 1.5 / sfreq):
        return None
    starts = first + np.arange(0, n_epoch - n_samples + 1, step)
    index = starts[:, None] + np.arange(n_samples)
    return data[index], times[starts + n_samples - 1]


def windows_ending(data: np.ndarray, times: np.ndarray, sfreq: float, ends: np.ndarray,
                   n_samples: int) -> np.ndarray | None:  # fmt: skip
    """The ``n_samples`` latest samples at or before each time in ``ends`` (the fNIRS windows
    that go with EEG windows), shape (len(ends), n_samples, n_channels); None if one is not in
    the signal whole: before its start, stale (no sample within 1.5 periods of its end), or
    across a gap."""
    stops = np.searchsorted(times, ends, side="right")
    if stops.min() < n_samples or np.any(ends - times[stops - 1] > 1.5 / sfreq):
        return None
    index = stops[:, None] - n_samples + np.arange(n_samples)
    if np.any(np.diff(times[index], axis=1) > 1.5 / sfreq):
        return None
    return data[index]


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
    data, times = processed.latest(len(processed))
    windows, labels, groups, ends = [], [], [], []
    for trial, (onset, label) in enumerate(cues):
        cut = epoch_windows(
            data, times, sfreq, onset + decoder.epoch_tmin_s, onset + decoder.epoch_tmax_s, n_window
        )
        if cut is None:
            continue  # trial lost to a gap or beyond the ring's horizon
        windows.append(cut[0])
        ends.append(cut[1])
        labels += [label] * len(cut[1])
        groups += [trial] * len(cut[1])
    if len(set(labels)) < 2:
        raise RuntimeError(
            f"Only {len(set(groups))} usable calibration trials of {len(cues)} (classes "
            f"{sorted(set(labels))}); the decoder needs both classes. Check the EEG stream for "
            "gaps and run a longer calibration block."
        )
    return np.concatenate(windows), np.array(labels), np.array(groups), np.concatenate(ends)


def windows_ending_at(processed: RingBuffer, ends: np.ndarray, n_samples: int,
                      sfreq: float) -> np.ndarray:  # fmt: skip
    """:func:`windows_ending` over a ring (the session's fNIRS at ``sfreq`` Hz).

    Raises
    ------
    RuntimeError
        A window is not in the ring whole (it starts too early, or the stream stalled).
    """
    data, times = processed.latest(len(processed))
    windows = windows_ending(data, times, sfreq, ends, n_samples)
    if windows is None:
        raise RuntimeError(
            f"The fNIRS record ({times[0] if len(times) else float('nan'):.1f}–"
            f"{times[-1] if len(times) else float('nan'):.1f} s) does not hold a whole "
            f"{n_samples}-sample window before every calibration window ({ends.min():.1f}–"
            f"{ends.max():.1f} s): it started too late or stalled. Start calibration later (a "
            "longer baseline block), shorten decoder.nirs_window_s, or check the fNIRS stream."
        )
    return windows
