"""Read EEG, fNIRS and event markers from recording files into one shape.

Two families of files:

- anything MNE-Python reads (EDF, BDF, GDF, FIF, BrainVision, EEGLAB, SNIRF): EEG channels (MNE
  type ``eeg``) converted from V to µV, the unit of NeuroLoop's EEG streams; fNIRS raw
  intensities (MNE type ``fnirs_cw_amplitude``, names ``"S1_D1 760"``); events from the
  annotations (their descriptions are the codes), or from the stim channel when there are none
  (the trigger values are the codes);
- XDF, as LabRecorder writes it: the EEG stream by type (``EEG``; the one with the most channels
  when there are several), the fNIRS stream by type (``NIRS``), and every ``Markers`` stream
  (string markers are the codes; numeric ones are written as integers when whole). XDF samples
  are kept as the stream delivered them, in the stream's own unit, because that is what the
  engine receives online.

Times of samples and events share one clock per file: seconds from the first sample (MNE) or
the synchronized LSL clock (XDF).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FORMATS: dict[str, str] = {
    ".edf": "EDF",
    ".bdf": "BDF",
    ".gdf": "GDF",
    ".fif": "FIF",
    ".fif.gz": "FIF",
    ".vhdr": "BrainVision",
    ".set": "EEGLAB",
    ".snirf": "SNIRF",
    ".xdf": "XDF",
    ".xdfz": "XDF",
}
"""Readable file types by suffix (MNE-Python reads all but XDF, which pyxdf reads)."""

_V_TO_UV = 1e6
_NIRS_INTENSITY = "fnirs_cw_amplitude"


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

    def code_counts(self) -> dict[str, int]:
        """How often each event code occurs, in order of first appearance."""
        counts: dict[str, int] = {}
        for event in self.events:
            counts[event.code] = counts.get(event.code, 0) + 1
        return counts


def file_format(path: Path) -> str:
    """The file type of ``path`` from its suffix (TrainingInputError if unknown)."""
    name = path.name.lower()
    for suffix, kind in FORMATS.items():
        if name.endswith(suffix):
            return kind
    raise TrainingInputError(
        f"{path}: unknown file type {''.join(path.suffixes) or '(no suffix)'!r}; "
        f"bci train reads {', '.join(sorted(set(FORMATS.values())))} "
        f"({', '.join(FORMATS)})."
    )


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
    try:
        if kind == "XDF":
            eeg, nirs, events = _read_xdf(path)
        else:
            eeg, nirs, events = _read_mne(path)
    except TrainingInputError:
        raise
    except Exception as error:  # any reader failure on a damaged file: say which file and why
        raise TrainingInputError(
            f"{path}: cannot read this {kind} file ({type(error).__name__}: {error}). Is it "
            f"complete, and really a {kind} file? Export it again from the recording software."
        ) from error
    if eeg is None and nirs is None:
        raise TrainingInputError(
            f"{path}: holds no EEG channels and no raw fNIRS intensities; nothing to train on."
        )
    return Recording(path, kind, sha256_of(path), eeg, nirs, tuple(events))


# MNE -----------------------------------------------------------------------------------------
def _read_mne(path: Path) -> tuple[Signal | None, Signal | None, list[Event]]:
    import mne

    raw = mne.io.read_raw(path, preload=True, verbose="error")
    types = raw.get_channel_types()
    sfreq = float(raw.info["sfreq"])
    times = raw.times

    def signal(kind: str, scale: float) -> Signal | None:
        picks = [i for i, t in enumerate(types) if t == kind]
        if not picks:
            return None
        data = raw.get_data(picks=picks).T * scale
        names = tuple(raw.ch_names[i] for i in picks)
        label = "EEG" if kind == "eeg" else "NIRS"
        return Signal(data, times, sfreq, names, (label,) * len(names), f"{kind} channels")

    if "fnirs_od" in types or "hbo" in types:
        what = "optical density" if "fnirs_od" in types else "HbO/HbR"
        raise TrainingInputError(
            f"{path}: holds processed fNIRS ({what}); bci train needs raw intensities, which "
            "is what the engine receives online."
        )
    eeg, nirs = signal("eeg", _V_TO_UV), signal(_NIRS_INTENSITY, 1.0)
    return eeg, nirs, _mne_events(raw)


def _mne_events(raw) -> list[Event]:
    import mne

    sfreq = raw.info["sfreq"]
    if len(raw.annotations):
        events, event_id = mne.events_from_annotations(raw, verbose="error")
        names = {value: key for key, value in event_id.items()}
        codes = [names[value] for value in events[:, 2]]
    elif "stim" in raw.get_channel_types():
        events = mne.find_events(raw, shortest_event=1, initial_event=True, verbose="error")
        codes = [str(int(value)) for value in events[:, 2]]
    else:
        return []
    onsets = (events[:, 0] - raw.first_samp) / sfreq
    return [Event(float(t), code) for t, code in zip(onsets, codes, strict=True)]


# XDF -----------------------------------------------------------------------------------------
def _first(node, key: str, default=None):
    """``node[key][0]`` of pyxdf's nested lists, or ``default`` where absent."""
    if not isinstance(node, dict):
        return default
    value = node.get(key)
    if not value:
        return default
    return value[0]


def _xdf_channels(stream: dict) -> list[dict]:
    """The ``<desc><channels><channel>`` entries of a stream header (empty if absent)."""
    channels = _first(_first(stream["info"], "desc"), "channels")
    return list(channels.get("channel") or []) if isinstance(channels, dict) else []


def _xdf_signal(stream: dict, default_type: str) -> Signal | None:
    info = stream["info"]
    data = np.asarray(stream["time_series"], dtype=np.float64)
    if data.ndim != 2 or len(data) == 0:
        return None
    n_channels = data.shape[1]
    described = _xdf_channels(stream)
    if len(described) == n_channels:
        names = tuple(_first(ch, "label", f"ch{i + 1}") for i, ch in enumerate(described))
        types = tuple(
            str(_first(ch, "type", default_type)).upper() for ch in described
        )  # fmt: skip
    else:
        names = tuple(f"ch{i + 1}" for i in range(n_channels))
        types = (default_type,) * n_channels
    sfreq = float(_first(info, "nominal_srate", 0) or 0)
    if sfreq <= 0:
        raise TrainingInputError(
            f"XDF stream {_first(info, 'name')!r} is irregular (nominal rate 0); a signal "
            "stream needs a fixed rate."
        )
    times = np.asarray(stream["time_stamps"], dtype=np.float64)
    return Signal(data, times, sfreq, names, types, f"stream {_first(info, 'name')!r}")


def _stream_type(stream: dict) -> str:
    return str(_first(stream["info"], "type", "")).strip().lower()


def _marker_code(value) -> str:
    if isinstance(value, str):
        return value.strip()
    number = float(value)
    return str(int(number)) if number.is_integer() else f"{number:g}"


def _read_xdf(path: Path) -> tuple[Signal | None, Signal | None, list[Event]]:
    import pyxdf

    streams, _ = pyxdf.load_xdf(str(path))
    by_type: dict[str, list[dict]] = {}
    for stream in streams:
        by_type.setdefault(_stream_type(stream), []).append(stream)

    def pick(kind: str, default_type: str) -> Signal | None:
        candidates = [s for s in by_type.get(kind, []) if len(s["time_stamps"])]
        signals = [sig for s in candidates if (sig := _xdf_signal(s, default_type)) is not None]
        if not signals:
            return None
        # several streams of one type (two amplifiers): the largest montage (the first of
        # equals) is the EEG cap
        widest = max(len(sig.ch_names) for sig in signals)
        return next(sig for sig in signals if len(sig.ch_names) == widest)

    events = []
    for stream in by_type.get("markers", []):
        series = stream["time_series"]
        for stamp, sample in zip(stream["time_stamps"], series, strict=True):
            if len(sample):
                events.append(Event(float(stamp), _marker_code(sample[0])))
    events.sort(key=lambda event: event.onset)
    return pick("eeg", "EEG"), pick("nirs", "NIRS"), events
