"""Run recordings through the engine's causal preprocessing and cut labeled training windows.

The continuous signal of each file goes through :func:`~bci.engine.preprocess.eeg_pipeline`
(common average → picks → notch → band-pass) and :func:`~bci.engine.preprocess.fnirs_pipeline`
(optical density → HbO/HbR, mol/L) chunk by chunk, exactly as the engine runs them online.
Windows are then cut as :func:`~bci.engine.calibration.calibration_windows` cuts them from the
decoder's first input: one every ``TRAIN_STEP_S`` within ``[event + tmin, event + tmax)``. A
second input (the fNIRS of a hybrid decoder) gets the window that ends with each first-input
window's last sample, as :func:`~bci.engine.calibration.windows_ending_at` (what the engine
hands the decoder at that moment). A trial that runs past either end of its file or across a
gap in the data is dropped whole.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from bci.engine.calibration import TRAIN_STEP_S, epoch_windows, windows_ending
from bci.engine.preprocess import eeg_pipeline, fnirs_pipeline
from bci.protocol.schema import PreprocessingSection
from bci.train.files import Recording, Signal, TrainingInputError

CHUNK_S = 10.0
"""Preprocessing chunk, s (results do not depend on it; it bounds the memory of one call)."""


def bar_disabled(progress: bool) -> bool | None:
    """tqdm's ``disable`` for a progress switch: bars on a terminal only (None), or never."""
    return None if progress else True


@dataclass(frozen=True)
class Epoching:
    """Where training windows are cut relative to each event."""

    tmin_s: float
    """Epoch start after the event, s."""
    tmax_s: float
    """Epoch end after the event, s."""
    window_s: dict[str, float]
    """Window length of each input the decoder reads (``"eeg"``, ``"nirs"``), s; the first
    input's windows lie within the epoch, the others end with them."""
    step_s: float = TRAIN_STEP_S
    """Step between windows, s."""

    def __post_init__(self) -> None:
        first = next(iter(self.window_s))
        if self.tmax_s - self.tmin_s < self.window_s[first] - 1e-9:
            raise TrainingInputError(
                f"the epoch --tmin {self.tmin_s:g} s to --tmax {self.tmax_s:g} s is shorter than "
                f"the {first} window of {self.window_s[first]:g} s; widen the epoch or shorten "
                "the window."
            )


@dataclass(frozen=True)
class TrialWindows:
    """Labeled windows of every usable trial of a set of recordings."""

    windows: dict[str, np.ndarray]
    """Per input, shape (n_windows, n_samples, n_channels): EEG µV, fNIRS HbO/HbR mol/L."""
    labels: np.ndarray
    """Class of each window, shape (n_windows,)."""
    groups: np.ndarray
    """Trial of each window, shape (n_windows,), numbered across files."""
    ch_names: dict[str, tuple[str, ...]]
    """Channels of each input after preprocessing."""
    sfreq: dict[str, float]
    """Rate of each input, Hz."""
    n_dropped: int
    """Trials dropped (past the end of a file or across a gap)."""

    @property
    def trial_labels(self) -> np.ndarray:
        """Class of each trial, in trial order, shape (n_trials,)."""
        _, first = np.unique(self.groups, return_index=True)
        return self.labels[np.sort(first)]

    @property
    def n_trials(self) -> int:
        return len(np.unique(self.groups))

    def trials_per_class(self) -> dict[str, int]:
        return dict(sorted(Counter(self.trial_labels.tolist()).items()))


def _run(pipeline, signal: Signal, kind: str, what: str, progress: bool) -> Signal:
    """Push a whole signal through a pipeline in chunks; the output (channels of type ``kind``)
    as a Signal."""
    chunk = max(int(CHUNK_S * signal.sfreq), 1)
    data, times = [], []
    starts = range(0, len(signal.times), chunk)
    for start in tqdm(starts, desc=what, unit="chunk", leave=False, disable=bar_disabled(progress)):
        out, out_times = pipeline(
            signal.data[start : start + chunk], signal.times[start : start + chunk]
        )
        data.append(out)
        times.append(out_times)
    names = tuple(pipeline.ch_names_out or signal.ch_names)
    return Signal(
        np.concatenate(data), np.concatenate(times), signal.sfreq, names,
        (kind,) * len(names), signal.source,
    )  # fmt: skip


def preprocess_eeg(
    recording: Recording, pre: PreprocessingSection, progress: bool = False
) -> Signal:
    """The recording's EEG through the engine's EEG pipeline: ``pre.picks`` only, µV."""
    eeg = recording.eeg
    if eeg is None:
        raise TrainingInputError(f"{recording.path}: holds no EEG, but the decoder reads EEG.")
    missing = [name for name in pre.picks if name not in eeg.ch_names]
    if missing:
        raise TrainingInputError(
            f"{recording.path}: EEG lacks the picked channels {missing}; its channels are "
            f"{list(eeg.eeg_names)}. Choose others with --picks."
        )
    high = pre.bandpass_hz[1]
    if high >= eeg.sfreq / 2:
        raise TrainingInputError(
            f"{recording.path}: EEG at {eeg.sfreq:g} Hz cannot carry the band-pass up to "
            f"{high:g} Hz; lower it (--set preprocessing.bandpass_hz=[8,{eeg.sfreq / 2 - 1:g}])."
        )
    pipeline = eeg_pipeline(pre, eeg.ch_names, eeg.sfreq, eeg.ch_types)
    return _run(pipeline, eeg, "EEG", f"filtering {recording.path.name}", progress)


def preprocess_nirs(recording: Recording, progress: bool = False) -> Signal:
    """The recording's raw fNIRS intensities through the engine's fNIRS pipeline: HbO/HbR."""
    nirs = recording.nirs
    if nirs is None:
        raise TrainingInputError(
            f"{recording.path}: holds no raw fNIRS intensities, but the decoder reads fNIRS."
        )
    try:
        pipeline = fnirs_pipeline(nirs.ch_names)
    except ValueError as error:
        raise TrainingInputError(f"{recording.path}: fNIRS channels: {error}") from error
    return _run(pipeline, nirs, "NIRS", f"haemoglobin {recording.path.name}", progress)


def matching_trials(recording: Recording, events: dict[str, str]) -> list[tuple[float, str]]:
    """(onset, label) of each event of the recording whose code is in ``events``.

    Raises
    ------
    TrainingInputError
        No event matches; the message lists the codes the file has.
    """
    trials = [(e.onset, events[e.code]) for e in recording.events if e.code in events]
    if not trials:
        counts = recording.code_counts()
        found = ", ".join(f"{code!r} ×{n}" for code, n in list(counts.items())[:30]) or "none"
        raise TrainingInputError(
            f"{recording.path}: no event matches the codes {sorted(events)}; the file has "
            f"{found}. Name those in --events, e.g. --events CODE=left,CODE=right."
        )
    return trials


def cut_trials(
    signals: dict[str, Signal],
    trials: list[tuple[float, str]],
    epoch: Epoching,
    first_group: int = 0,
) -> tuple[dict[str, list], list[str], list[int], int]:
    """Windows of each trial from preprocessed signals (see module doc).

    Returns
    -------
    windows : dict of str to list of array, shape (n_ends, n_samples, n_channels)
        Per input, one array per kept trial.
    labels, groups : list
        Class and trial number of each window.
    n_dropped : int
        Trials not kept whole.
    """
    names = list(epoch.window_s)
    n_samples = {name: round(epoch.window_s[name] * signals[name].sfreq) for name in names}
    windows: dict[str, list] = {name: [] for name in names}
    labels, groups, dropped = [], [], 0
    for trial, (onset, label) in enumerate(trials):
        signal = signals[names[0]]
        first = epoch_windows(signal.data, signal.times, signal.sfreq, onset + epoch.tmin_s,
                              onset + epoch.tmax_s, n_samples[names[0]], epoch.step_s)  # fmt: skip
        if first is None:
            dropped += 1
            continue
        primary, ends = first
        cut = {names[0]: primary}
        cut |= {
            name: windows_ending(signals[name].data, signals[name].times, signals[name].sfreq,
                                 ends, n_samples[name])
            for name in names[1:]
        }  # fmt: skip
        if any(value is None for value in cut.values()):
            dropped += 1
            continue
        for name, value in cut.items():
            windows[name].append(value)
        labels += [label] * len(ends)
        groups += [first_group + trial] * len(ends)
    return windows, labels, groups, dropped


def trial_windows(recordings: list[Recording], events: dict[str, str], epoch: Epoching,
                  pre: PreprocessingSection, progress: bool = False) -> TrialWindows:  # fmt: skip
    """Preprocess every recording and cut the windows of every matching event.

    Parameters
    ----------
    recordings : list of Recording
        Files read by :func:`~bci.train.files.read_recording`.
    events : dict of str to str
        Class label of each event code.
    epoch : Epoching
        Epoch and window of each input the decoder reads.
    pre : PreprocessingSection
        EEG preprocessing (picks, reference, filters).
    """
    windows: dict[str, list] = {name: [] for name in epoch.window_s}
    labels: list[str] = []
    groups: list[int] = []
    ch_names: dict[str, tuple[str, ...]] = {}
    sfreq: dict[str, float] = {}
    dropped = next_group = 0
    for recording in tqdm(
        recordings, desc="preprocessing", unit="file", disable=bar_disabled(progress)
    ):
        trials = matching_trials(recording, events)
        signals = {}
        if "eeg" in epoch.window_s:
            signals["eeg"] = preprocess_eeg(recording, pre, progress)
        if "nirs" in epoch.window_s:
            signals["nirs"] = preprocess_nirs(recording, progress)
        for name, signal in signals.items():
            _check_same(name, recording, signal, ch_names, sfreq)
        cut, file_labels, file_groups, file_dropped = cut_trials(signals, trials, epoch, next_group)
        for name, values in cut.items():
            windows[name] += values
        labels += file_labels
        groups += file_groups
        dropped += file_dropped
        next_group += len(trials)
    if not labels:
        raise TrainingInputError(
            f"no trial of {sum(1 for _ in recordings)} file(s) lies whole within its recording "
            f"({dropped} dropped: the epoch {epoch.tmin_s:g}–{epoch.tmax_s:g} s runs past the end "
            "of the data or across a gap); check --tmin/--tmax."
        )
    return TrialWindows(
        {name: np.concatenate(values) for name, values in windows.items()},
        np.array(labels), np.array(groups), ch_names, sfreq, dropped,
    )  # fmt: skip


def _check_same(name: str, recording: Recording, signal: Signal,
                ch_names: dict, sfreq: dict) -> None:  # fmt: skip
    """Every file must give an input the same channels at the same rate."""
    if name not in ch_names:
        ch_names[name], sfreq[name] = signal.ch_names, signal.sfreq
        return
    if abs(signal.sfreq - sfreq[name]) > 1e-6:
        raise TrainingInputError(
            f"{recording.path}: {name} at {signal.sfreq:g} Hz, but the first file's is at "
            f"{sfreq[name]:g} Hz; resample the files to one rate or train on them separately."
        )
    if signal.ch_names != ch_names[name]:
        raise TrainingInputError(
            f"{recording.path}: {name} channels {list(signal.ch_names)} differ from the first "
            f"file's {list(ch_names[name])}; train on files of one montage."
        )
