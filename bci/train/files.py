"""EEG, fNIRS and event markers of recording files, in the shape training needs.

The files are read by :func:`bci.replay.recording.load_recording` (one reader for replay,
export and training); this module picks what training uses:

- files MNE-Python reads (EDF, BDF, GDF, FIF, BrainVision, EEGLAB, SNIRF): the EEG channels
  (MNE type ``eeg``, in µV, the unit of NeuroLoop's EEG streams); fNIRS raw intensities (MNE
  type ``fnirs_cw_amplitude``, names ``"S1_D1 760"``); events from the annotations (their
  descriptions are the codes, onsets on the nearest sample, ``BAD``/``EDGE`` annotations left
  out, as ``mne.events_from_annotations`` does), or from the stim channel when there are none
  (the trigger values are the codes);
- XDF, as LabRecorder writes it (with its part files): the EEG stream by type (``EEG``; the one
  with the most channels when there are several), the fNIRS stream by type (``NIRS``), and
  every ``Markers`` stream (string markers are the codes; numeric ones are written as integers
  when whole). XDF samples are kept as the stream delivered them, in the stream's own unit, and
  their timestamps as recorded (clock-offset corrected, not dejittered), because that is what
  the engine receives online.

Times of samples and events share one clock per file: seconds from the first sample (MNE) or
the synchronized LSL clock (XDF).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bci.replay.recording import (
    FORMATS,
    NoStreamsError,
    RecordedStream,
    RecordingError,
    load_recording,
    recording_format,
)
from bci.replay.recording import Recording as LoadedRecording

_NIRS_INTENSITY = "fnirs_cw_amplitude"
_SKIPPED_ANNOTATIONS = re.compile(r"(?i)(bad|edge)")
"""Annotation descriptions ``mne.events_from_annotations`` leaves out by default."""


class TrainingInputError(ValueError):
    """Input that ``bci train`` cannot use: the message names it and says what to do."""


@dataclass(frozen=True, eq=False)
class Signal:
    """One continuous multichannel signal of a recording."""

    data: np.ndarray
    """Samples, shape (n_samples, n_channels): EEG in µV (MNE files) or the stream's unit
    (XDF); fNIRS raw intensity."""
    times: np.ndarray
    """Time of each sample, shape (n_samples,), s."""
    sfreq: float
    """Nominal sampling rate, Hz."""
    ch_names: tuple[str, ...]
    """Channel names, in column order."""
    ch_types: tuple[str, ...]
    """Channel types (``"EEG"`` for EEG channels; others stay out of the common average)."""
    source: str
    """Where it came from in the file (an XDF stream name, or the MNE channel type)."""

    @property
    def eeg_names(self) -> tuple[str, ...]:
        """Names of the channels of type EEG."""
        return tuple(n for n, t in zip(self.ch_names, self.ch_types, strict=True) if t == "EEG")


@dataclass(frozen=True)
class Event:
    """One marker: when, and which code."""

    onset: float
    """Time, s, on the clock of the recording's signals."""
    code: str
    """Annotation description, marker string, or trigger value."""


@dataclass(frozen=True, eq=False)
class Recording:
    """What one file holds for training."""

    path: Path
    format: str
    """File type (a value of :data:`FORMATS`)."""
    sha256: str
    """SHA-256 of the file, hex."""
    eeg: Signal | None
    nirs: Signal | None
    """Raw fNIRS intensities, if the file has them."""
    events: tuple[Event, ...]
    warnings: tuple[str, ...] = ()
    """What the reader recovered from (e.g. a truncated XDF), for the user to see."""

    def code_counts(self) -> dict[str, int]:
        """How often each event code occurs, in order of first appearance."""
        counts: dict[str, int] = {}
        for event in self.events:
            counts[event.code] = counts.get(event.code, 0) + 1
        return counts


def file_format(path: Path) -> str:
    """The file type of ``path`` from its suffix (TrainingInputError if unknown)."""
    try:
        return recording_format(path)
    except RecordingError:
        raise TrainingInputError(
            f"{path}: unknown file type {''.join(path.suffixes) or '(no suffix)'!r}; "
            f"bci train reads {', '.join(sorted(set(FORMATS.values())))} "
            f"({', '.join(FORMATS)})."
        ) from None


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_recording(path: str | Path) -> Recording:
    """Read a recording file.

    Parameters
    ----------
    path : str | Path
        A file of a type in :data:`FORMATS`.

    Returns
    -------
    recording : Recording
        Its EEG and/or fNIRS and its events.

    Raises
    ------
    TrainingInputError
        The file is missing, of an unknown type, unreadable, or holds neither EEG nor fNIRS.
    """
    path = Path(path)
    kind = file_format(path)
    if not path.is_file():
        raise TrainingInputError(f"{path}: no such file.")
    eeg = nirs = None
    events: list[Event] = []
    warnings: list[str] = []
    try:
        loaded = load_recording(path)
    except NoStreamsError:
        pass  # said below: nothing to train on
    except RecordingError as error:
        raise TrainingInputError(str(error)) from error
    else:
        warnings = loaded.warnings
        try:
            eeg, nirs, events = (_from_xdf if kind == "XDF" else _from_mne)(loaded)
        except TrainingInputError:
            raise
        except Exception as error:  # a damaged file read without complaint: say which and why
            raise TrainingInputError(
                f"{path}: cannot read this {kind} file ({type(error).__name__}: {error}). Is "
                f"it complete, and really a {kind} file? Export it again from the recording "
                "software."
            ) from error
    if eeg is None and nirs is None:
        raise TrainingInputError(
            f"{path}: holds no EEG channels and no raw fNIRS intensities; nothing to train on."
        )
    return Recording(path, kind, sha256_of(path), eeg, nirs, tuple(events), tuple(warnings))


# MNE-readable files: one stream of every channel, and the annotations as markers --------------
def _from_mne(loaded: LoadedRecording) -> tuple[Signal | None, Signal | None, list[Event]]:
    stream = next(s for s in loaded.streams if not s.is_string)
    types = stream.ch_types
    if "fnirs_od" in types or "hbo" in types:
        what = "optical density" if "fnirs_od" in types else "HbO/HbR"
        raise TrainingInputError(
            f"{loaded.path}: holds processed fNIRS ({what}); bci train needs raw intensities, "
            "which is what the engine receives online."
        )

    def signal(kind: str) -> Signal | None:
        picks = [i for i, t in enumerate(types) if t == kind]
        if not picks:
            return None
        names = tuple(stream.ch_names[i] for i in picks)
        label = "EEG" if kind == "eeg" else "NIRS"
        return Signal(stream.data[:, picks], stream.timestamps, stream.srate, names,
                      (label,) * len(names), f"{kind} channels")  # fmt: skip

    markers = loaded.find(name=f"{stream.name}-Markers")
    return signal("eeg"), signal(_NIRS_INTENSITY), _mne_events(stream, markers)


def _mne_events(stream: RecordedStream, markers: RecordedStream | None) -> list[Event]:
    sfreq = stream.srate
    if markers is not None:
        return [Event(float(np.round(t * sfreq) / sfreq), code)
                for t, code in zip(markers.timestamps, markers.data[:, 0], strict=True)
                if not _SKIPPED_ANNOTATIONS.match(code)]  # fmt: skip
    stim = [i for i, t in enumerate(stream.ch_types) if t == "stim"]
    if not stim:
        return []
    import mne

    info = mne.create_info([stream.ch_names[i] for i in stim], sfreq, "stim")
    raw = mne.io.RawArray(stream.data[:, stim].T, info, verbose="error")
    events = mne.find_events(raw, shortest_event=1, initial_event=True, verbose="error")
    return [Event(float(sample / sfreq), str(int(value)))
            for sample, value in zip(events[:, 0], events[:, 2], strict=True)]  # fmt: skip


# XDF -----------------------------------------------------------------------------------------
def _xdf_signal(stream: RecordedStream, default_type: str) -> Signal:
    if stream.srate <= 0:
        raise TrainingInputError(
            f"XDF stream {stream.name!r} is irregular (nominal rate 0); a signal stream needs a "
            "fixed rate."
        )
    types = tuple(t.upper() or default_type for t in stream.ch_types)
    return Signal(stream.data, stream.timestamps, stream.srate, tuple(stream.ch_names), types,
                  f"stream {stream.name!r}")  # fmt: skip


def _marker_code(value) -> str:
    if isinstance(value, str):
        return value.strip()
    number = float(value)
    return str(int(number)) if number.is_integer() else f"{number:g}"


def _from_xdf(loaded: LoadedRecording) -> tuple[Signal | None, Signal | None, list[Event]]:
    by_type: dict[str, list[RecordedStream]] = {}
    for stream in loaded.streams:
        by_type.setdefault(stream.type.strip().lower(), []).append(stream)

    def pick(kind: str, default_type: str) -> Signal | None:
        signals = [_xdf_signal(s, default_type) for s in by_type.get(kind, [])
                   if s.n_samples and s.n_channels and not s.is_string]  # fmt: skip
        if not signals:
            return None
        # several streams of one type (two amplifiers): the largest montage (the first of
        # equals) is the EEG cap
        widest = max(len(sig.ch_names) for sig in signals)
        return next(sig for sig in signals if len(sig.ch_names) == widest)

    events = [Event(float(stamp), _marker_code(sample[0]))
              for stream in by_type.get("markers", []) if stream.n_channels
              for stamp, sample in zip(stream.timestamps, stream.data, strict=True)]  # fmt: skip
    events.sort(key=lambda event: event.onset)
    return pick("eeg", "EEG"), pick("nirs", "NIRS"), events
