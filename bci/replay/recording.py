"""Read every stream of a recording file into one shape.

Two families of files:

- XDF, as LabRecorder writes it (read with pyxdf): every stream, numeric or string, with its
  LSL header, channel labels, types and units from ``<desc><channels>``, and its timestamps as
  recorded, corrected by the recorder's clock offsets only (no dejittering: offline replay
  matches them against timestamps the engine recorded in other streams). A NeuroLoop session
  recorder writes streams that appear late into part files ``<stem>.part2.xdf``,
  ``<stem>.part3.xdf``, … next to ``<stem>.xdf``; loading the main file appends their streams.
  A truncated file (recorder killed) loads up to its last complete chunk, with a warning;
- anything MNE-Python reads (EDF, BDF, GDF, FIF, BrainVision, EEGLAB, SNIRF): one numeric
  stream named after the file, timestamps from its first sample (s), voltage channels in µV
  (the unit of NeuroLoop's EEG streams), and its annotations as a ``Markers`` stream.
"""

from __future__ import annotations

import datetime as dt
import glob
import re
from dataclasses import dataclass, field
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

VOLTAGE_TYPES = frozenset({"eeg", "eog", "ecg", "emg", "seeg", "ecog", "dbs"})
"""MNE channel types measured in volts; NeuroLoop holds them in µV."""

MICROVOLTS = "microvolts"
"""Unit name of voltage channels, as NeuroLoop's EEG streams declare it."""

_V_TO_UV = 1e6
_FIFF_UNITS = {107: "V", 112: "T", 201: "T/m", 6: "M", 114: "C", 110: "S", 3: "s", 210: "px",
               1: "m", 101: "Hz", 7: "rad"}  # fmt: skip
"""MNE (FIFF) unit codes → names; a code not listed (e.g. none, -1) has no unit ("")."""


class RecordingError(ValueError):
    """A recording that cannot be read as asked; the message says what and what to do."""


class NoStreamsError(RecordingError):
    """A readable recording that holds no stream at all (e.g. cut before its first header)."""


@dataclass(frozen=True, eq=False)
class RecordedStream:
    """One stream of a recording: its header, channels, samples and timestamps."""

    name: str
    """Stream name (LSL ``name``; the file stem for MNE files)."""
    type: str
    """LSL content type: ``"EEG"``, ``"NIRS"``, ``"Markers"``, …"""
    source_id: str
    """LSL ``source_id`` (the file name for MNE files)."""
    srate: float
    """Nominal sampling rate, Hz; 0.0 for an irregular stream."""
    channel_format: str
    """LSL value format: ``float32``, ``double64``, ``int8/16/32/64`` or ``string``."""
    ch_names: list[str]
    """Channel labels, in column order (``"ch1"``, … where the file names none)."""
    ch_types: list[str]
    """Per channel: the XDF ``<type>`` (``""`` when absent), or the MNE channel type."""
    units: list[str]
    """Per channel: the XDF ``<unit>`` (``""`` when absent); ``"microvolts"`` for voltage
    channels of MNE files, MNE's SI unit name (``"V"``, ``"M"``, …) for the others."""
    data: np.ndarray
    """Samples, shape (n_samples, n_channels): float64 for numeric streams, dtype object
    (str) for string streams."""
    timestamps: np.ndarray
    """Time of each sample, shape (n_samples,), s: the LSL clock (XDF) or from the first
    sample (MNE)."""
    desc: dict = field(default_factory=dict)
    """The XDF ``<desc>`` as pyxdf gives it (nested dicts of lists); ``{}`` for MNE files."""

    @property
    def n_samples(self) -> int:
        """Number of samples."""
        return int(self.data.shape[0])

    @property
    def n_channels(self) -> int:
        """Number of channels."""
        return int(self.data.shape[1])

    @property
    def is_string(self) -> bool:
        """Whether the samples are text (markers, JSON events)."""
        return self.channel_format == "string"

    @property
    def duration_s(self) -> float:
        """Last minus first timestamp, s (0 with fewer than two samples)."""
        if self.n_samples < 2:
            return 0.0
        return float(self.timestamps[-1] - self.timestamps[0])

    def summary(self) -> str:
        """One line: name, type, channels, rate and samples, e.g. for error messages."""
        rate = f"{self.srate:g} Hz" if self.srate > 0 else "irregular"
        return (f"{self.name!r} ({self.type or 'no type'}, {self.n_channels} ch, {rate}, "
                f"{self.n_samples} samples)")  # fmt: skip


@dataclass(frozen=True, eq=False)
class Recording:
    """Every stream of one recording file (and of its part files)."""

    path: Path
    format: str
    """File type (a value of :data:`FORMATS`)."""
    streams: list[RecordedStream]
    warnings: list[str]
    """What the reader recovered from (truncation, missing footers, mislabelled channels); the
    data are usable, but a user should know. Not emitted; callers show them."""
    meas_date: dt.datetime | None = None
    """When it was recorded (UTC): the first sample (MNE files), or when the recorder opened
    the file (XDF header ``<datetime>``, to the second); None if the file does not say."""
    parts: list[Path] = field(default_factory=list)
    """XDF part files read after ``path`` (``<stem>.part2.xdf``, …), in order."""

    @property
    def duration_s(self) -> float:
        """From the earliest to the latest timestamp over all streams, s (0 if no samples)."""
        firsts = [s.timestamps[0] for s in self.streams if s.n_samples]
        lasts = [s.timestamps[-1] for s in self.streams if s.n_samples]
        return float(max(lasts) - min(firsts)) if firsts else 0.0

    def _matches(self, name: str | None, type: str | None) -> list[RecordedStream]:
        wanted = None if type is None else type.strip().lower()
        return [s for s in self.streams
                if (name is None or s.name == name)
                and (wanted is None or s.type.strip().lower() == wanted)]  # fmt: skip

    def _asked(self, name: str | None, type: str | None) -> str:
        parts = ([f"named {name!r}"] if name is not None else []) + (
            [f"of type {type!r}"] if type is not None else [])  # fmt: skip
        return " ".join(["a stream", *parts])

    def _listing(self) -> str:
        return "; ".join(s.summary() for s in self.streams) or "no streams"

    def find(self, name: str | None = None, type: str | None = None) -> RecordedStream | None:
        """The one stream with this name and/or type (type case-insensitive), or None.

        Raises
        ------
        RecordingError
            If several streams match; the message lists them.
        """
        found = self._matches(name, type)
        if len(found) > 1 and name is None and type is None:
            raise RecordingError(
                f"{self.path} holds {len(found)} streams ({self._listing()}); ask for one by "
                "name or type."
            )
        if len(found) > 1:
            raise RecordingError(
                f"{self.path}: {len(found)} streams match {self._asked(name, type)}: "
                f"{'; '.join(s.summary() for s in found)}. Ask for one by name."
            )
        return found[0] if found else None

    def stream(self, name: str | None = None, type: str | None = None) -> RecordedStream:
        """The one stream with this name and/or type (type case-insensitive).

        Raises
        ------
        RecordingError
            If none or several match; the message lists the streams the file holds.
        """
        found = self.find(name, type)
        if found is None:
            raise RecordingError(
                f"{self.path}: no {self._asked(name, type).removeprefix('a ')}; the file "
                f"holds: {self._listing()}."
            )
        return found


def recording_format(path: str | Path) -> str:
    """The file type of ``path`` from its suffix (a value of :data:`FORMATS`).

    Raises
    ------
    RecordingError
        If the suffix is not one of :data:`FORMATS`; the message lists the readable ones.
    """
    path = Path(path)
    name = path.name.lower()
    for suffix, kind in FORMATS.items():
        if name.endswith(suffix):
            return kind
    raise RecordingError(
        f"{path}: unknown file type {''.join(path.suffixes) or '(no suffix)'!r}; readable "
        f"recordings are {', '.join(sorted(set(FORMATS.values())))} ({', '.join(FORMATS)})."
    )


def file_stem(path: Path) -> str:
    """The file name without its recording suffix (``run.fif.gz`` → ``run``)."""
    name = path.name
    suffix = next(s for s in FORMATS if name.lower().endswith(s))
    return name[: -len(suffix)]


def part_files(path: Path) -> list[Path]:
    """The part files of an XDF recording, ``<stem>.part<N>.<suffix>``, by increasing N."""
    stem, suffix = file_stem(path), path.name[len(file_stem(path)) :]
    pattern = re.compile(re.escape(stem) + r"\.part(\d+)" + re.escape(suffix))
    found = [(int(m.group(1)), p) for p in path.parent.glob(f"{glob.escape(stem)}.part*{suffix}")
             if (m := pattern.fullmatch(p.name))]  # fmt: skip
    return [p for _, p in sorted(found)]


def load_recording(path: str | Path) -> Recording:
    """Read every stream of a recording file.

    Parameters
    ----------
    path : str | Path
        A file of a type in :data:`FORMATS`. For ``<stem>.xdf``, the part files
        ``<stem>.part2.xdf``, ``<stem>.part3.xdf``, … beside it are read too and their streams
        appended (they share the recorder's clock); naming a part file reads just it.

    Returns
    -------
    recording : Recording
        Its streams, and warnings about what was recovered (see :mod:`bci.replay.xdf` for
        truncated and mislabelled XDF files).

    Raises
    ------
    RecordingError
        The file is missing, of an unknown type, not what its suffix says, corrupt, or (for
        XDF, as :class:`NoStreamsError`) holds no stream.
    """
    path = Path(path)
    kind = recording_format(path)
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "no such file"
        raise RecordingError(f"{path}: {what}. Check the path.")
    if kind != "XDF":
        return _read_mne(path, kind)

    from bci.replay.xdf import read_xdf_file

    streams, warnings, meas_date = read_xdf_file(path)
    parts = part_files(path)
    for part in parts:
        try:
            more, part_warnings, _ = read_xdf_file(part)
        except NoStreamsError as error:
            warnings.append(f"{part.name}: skipped, {error}")
            continue
        streams += more
        warnings += [f"{part.name}: {w}" for w in part_warnings]
    return Recording(path, kind, streams, warnings, meas_date, parts)


# MNE -----------------------------------------------------------------------------------------
def stream_kind(ch_types: list[str]) -> str:
    """The LSL type of a stream of MNE channels: ``"NIRS"`` when fNIRS channels outnumber EEG
    ones, ``"EEG"`` when there are EEG channels, else the commonest type in capitals."""
    n_nirs = sum(t.startswith("fnirs") or t in ("hbo", "hbr") for t in ch_types)
    n_eeg = ch_types.count("eeg")
    if n_nirs and n_nirs >= n_eeg:
        return "NIRS"
    if n_eeg:
        return "EEG"
    return max(set(ch_types), key=ch_types.count).upper() if ch_types else "MISC"


def _read_mne(path: Path, kind: str) -> Recording:
    import mne

    try:
        if kind == "SNIRF":
            raw = mne.io.read_raw_snirf(path, preload=True, verbose="error")
        else:
            raw = mne.io.read_raw(path, preload=True, verbose="error")
    except Exception as error:  # any reader failure on a damaged file: say which file and why
        raise RecordingError(
            f"{path}: cannot read this {kind} file ({type(error).__name__}: {error}). Is it "
            f"complete, and really a {kind} file? Export it again from the recording software."
        ) from error
    types = raw.get_channel_types()
    data = np.ascontiguousarray(raw.get_data().T)
    voltage = [i for i, t in enumerate(types) if t in VOLTAGE_TYPES]
    data[:, voltage] *= _V_TO_UV
    units = [MICROVOLTS if t in VOLTAGE_TYPES else _FIFF_UNITS.get(int(ch["unit"]), "")
             for t, ch in zip(types, raw.info["chs"], strict=True)]  # fmt: skip
    stem = file_stem(path)
    streams = [RecordedStream(
        stem, stream_kind(types), path.name, float(raw.info["sfreq"]), "double64",
        list(raw.ch_names), types, units, data, raw.times.copy(),
    )]  # fmt: skip
    annotations = raw.annotations
    if len(annotations):
        # annotation onsets count from the time of sample 0 (meas_date, or 0 without one);
        # the data's first sample is at raw.first_time on that axis
        onsets = np.asarray(annotations.onset, dtype=np.float64) - raw.first_time
        labels = np.empty((len(onsets), 1), dtype=object)
        labels[:, 0] = [str(d) for d in annotations.description]
        streams.append(RecordedStream(f"{stem}-Markers", "Markers", f"{path.name}-Markers", 0.0,
                                      "string", ["marker"], [""], [""], labels,
                                      onsets))  # fmt: skip
    meas_date = raw.info["meas_date"]
    if meas_date is not None:
        meas_date = meas_date + dt.timedelta(seconds=raw.first_time)
    return Recording(path, kind, streams, [], meas_date)
