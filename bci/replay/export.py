"""Export a recording through MNE-Python, as FIF or EDF, for analysis in MNE or EEGLAB.

One numeric stream (the EEG one by default) becomes an ``mne.io.RawArray``: channel types
from the stream (XDF ``<type>`` mapped onto MNE's types, else the stream's type, but ``misc``
for an untyped ``SampleIndex``; unknown → ``misc``), voltage channels
converted to volts from their declared unit (µV when they declare none: the LSL convention and
NeuroLoop's), the nominal rate as ``sfreq``. Every marker stream (any text stream, and numeric
streams of type ``Markers``) becomes annotations of duration 0: the marker text, or for a JSON
record of NeuroLoop's engine its ``kind`` and a short detail; streams other than ``Markers``
prefix their type (``Events/estop (reason=button)``). Markers are placed by timestamp: at the
exported stream's sample that was recorded at the marker's time, so they stay on their samples
across gaps and clock drift. A gap in the exported stream's timestamps (samples lost) cannot
exist in a continuous raw: the data run on without it, a warning says so, and a ``BAD_gap``
annotation spans the jump so that MNE's epoching drops the windows across it.

FIF keeps float64 samples (lossless); EDF stores 16 bits per sample over each channel's range.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np

from bci.replay.recording import (
    VOLTAGE_TYPES,
    RecordedStream,
    Recording,
    RecordingError,
    file_stem,
    load_recording,
)
from bci.streams import SAMPLE_INDEX_CHANNEL

EXPORT_SUFFIXES = {"fif": "_raw.fif", "edf": ".edf"}
"""Export formats and the suffix of their default output name."""

GAP_S = 0.05
"""Timestamps further apart than one sample period plus this (or plus two periods, whichever is
longer), s, are a gap: samples were lost there."""

DESCRIPTION_CHARS = 80
"""Longest annotation description; longer marker texts are cut, ending in ``...``."""

_VOLT_SCALES = {
    "microvolts": 1e-6, "microvolt": 1e-6, "uv": 1e-6, "µv": 1e-6, "μv": 1e-6,
    "millivolts": 1e-3, "millivolt": 1e-3, "mv": 1e-3,
    "volts": 1.0, "volt": 1.0, "v": 1.0,
    "nanovolts": 1e-9, "nanovolt": 1e-9, "nv": 1e-9,
}  # fmt: skip
_TYPE_ALIASES = {"nirs": "fnirs_cw_amplitude", "fnirs": "fnirs_cw_amplitude",
                 "trigger": "stim", "trig": "stim"}  # fmt: skip
_NIRS_NAME = re.compile(r"S\d+_D\d+ (\d+)")
_FIF_NAMES = ("_raw.fif", "_eeg.fif", "_raw.fif.gz", "_eeg.fif.gz")


class ExportWarning(UserWarning):
    """What an export could not carry over as recorded: gaps, markers outside the exported
    span, channels of unknown unit, warnings of the loader (truncation)."""


def _warn(message: str) -> None:
    warnings.warn(message, ExportWarning, stacklevel=3)


def signal_stream(recording: Recording, name: str | None = None) -> RecordedStream:
    """The stream to export: the one named ``name``, else the EEG stream, else the only regular
    numeric stream.

    Raises
    ------
    RecordingError
        No such stream, several candidates, or one that is text, irregular or empty.
    """
    if name is not None:
        chosen = recording.stream(name=name)
    else:
        eeg = [s for s in recording.streams if s.type.lower() == "eeg" and not s.is_string]
        regular = [s for s in recording.streams if not s.is_string and s.srate > 0]
        candidates = eeg or regular
        if len(candidates) != 1:
            listing = "; ".join(s.summary() for s in candidates or recording.streams)
            raise RecordingError(
                f"{recording.path}: {len(candidates) or 'no'} "
                f"{'EEG' if eeg else 'regular numeric'} streams to export ({listing}); name "
                "the one to export (stream=NAME)."
            )
        chosen = candidates[0]
    if chosen.is_string or chosen.srate <= 0 or chosen.n_samples == 0:
        why = (
            "holds text"
            if chosen.is_string
            else "is irregular (nominal rate 0)"
            if chosen.srate <= 0
            else "has no samples"
        )
        raise RecordingError(
            f"{recording.path}: stream {chosen.name!r} {why}; MNE needs a regularly sampled "
            "numeric stream. Export another (stream=NAME): "
            f"{'; '.join(s.summary() for s in recording.streams)}."
        )  # fmt: skip
    return chosen


def _channels(stream: RecordedStream, valid: set[str]) -> tuple[list[str], np.ndarray]:
    """MNE channel types and the factor to MNE's SI unit of each channel."""
    types, scales, unitless, unknown = [], np.ones(stream.n_channels), [], []
    for i, (name, kind, unit) in enumerate(
        zip(stream.ch_names, stream.ch_types, stream.units, strict=True)
    ):
        # an untyped channel has its stream's type, but a sample counter is no EEG
        default = "misc" if name == SAMPLE_INDEX_CHANNEL else stream.type
        key = (kind.strip() or default).strip().lower()
        key = _TYPE_ALIASES.get(key, key)
        if key not in valid or (key.startswith("fnirs") and not _NIRS_NAME.fullmatch(name)):
            key = "misc"
        if key in VOLTAGE_TYPES:
            unit_key = unit.strip().lower()
            if not unit_key:
                unitless.append(name)
            elif unit_key in _VOLT_SCALES:
                scales[i] = _VOLT_SCALES[unit_key]
                types.append(key)
                continue
            else:
                unknown.append(f"{name} ({unit})")
                types.append("misc")
                continue
            scales[i] = 1e-6
        types.append(key)
    if unitless:
        _warn(f"stream {stream.name!r}: channels {unitless} declare no unit; taken as "
              "microvolts (the LSL convention).")  # fmt: skip
    if unknown:
        _warn(f"stream {stream.name!r}: channels {unknown} are not in a voltage unit; exported "
              "unchanged, as misc channels.")  # fmt: skip
    return types, scales


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}-{seen[name]}")
    if out != names:
        _warn(f"repeated channel names were numbered: {[n for n in out if n not in names]}.")
    return out


def _describe(stream: RecordedStream, value) -> str:
    if not isinstance(value, str):
        number = float(value)
        text = str(int(number)) if number.is_integer() else f"{number:g}"
    else:
        text = value.strip()
        try:
            record = json.loads(text) if text.startswith("{") else None
        except json.JSONDecodeError:
            record = None
        if isinstance(record, dict) and "kind" in record:
            detail = ", ".join(f"{k}={v}" for k, v in record.items() if k not in ("kind", "seq"))
            text = f"{record['kind']} ({detail})" if detail else str(record["kind"])
    if stream.type.lower() != "markers":
        text = f"{stream.type or stream.name}/{text}"
    text = " ".join(text.split())  # one line
    cut = DESCRIPTION_CHARS - 3
    return text if len(text) <= DESCRIPTION_CHARS else text[:cut] + "..."


def _annotations(recording: Recording, signal: RecordedStream):
    """Onsets (s from the first sample), durations and descriptions of markers and gaps."""
    sfreq = signal.srate
    stamps = np.maximum.accumulate(signal.timestamps)  # np.interp needs them non-decreasing
    index = np.arange(signal.n_samples, dtype=np.float64)
    onsets, durations, descriptions, outside = [], [], [], 0
    for stream in recording.streams:
        if stream is signal or stream.n_channels == 0:
            continue
        if not (stream.is_string or stream.type.lower() == "markers"):
            continue
        inside = ((stream.timestamps >= stamps[0] - 0.5 / sfreq)
                  & (stream.timestamps <= stamps[-1] + 0.5 / sfreq))  # fmt: skip
        outside += int(np.count_nonzero(~inside))
        at = np.clip(np.interp(stream.timestamps[inside], stamps, index), 0, index[-1])
        onsets += list(at / sfreq)
        durations += [0.0] * len(at)
        descriptions += [_describe(stream, row[0]) for row in stream.data[inside]]
    if outside:
        _warn(f"{outside} marker(s) outside the time span of stream {signal.name!r} were left "
              "out (recorded before its first or after its last sample).")  # fmt: skip
    steps = np.diff(signal.timestamps)
    gaps = np.flatnonzero(steps > 1 / sfreq + max(GAP_S, 2 / sfreq))
    if len(gaps):
        lost = steps[gaps] - 1 / sfreq
        _warn(
            f"stream {signal.name!r} has {len(gaps)} gap(s) in its timestamps (samples lost; "
            f"longest {lost.max():.3f} s, {lost.sum():.3f} s in all): the exported data run on "
            "without them, each is marked by a BAD_gap annotation, and markers are placed by "
            "timestamp."
        )
        onsets += list(gaps / sfreq)
        durations += [1 / sfreq] * len(gaps)
        descriptions += ["BAD_gap"] * len(gaps)
    order = np.argsort(onsets, kind="stable")
    return (np.asarray(onsets)[order], np.asarray(durations)[order],
            [descriptions[i] for i in order])  # fmt: skip


def to_mne_raw(recording: Recording, stream: str | None = None):
    """One numeric stream of a recording, with every marker stream as annotations, as MNE raw.

    Parameters
    ----------
    recording : Recording
        From :func:`~bci.replay.recording.load_recording`.
    stream : str | None
        Name of the stream to convert; None: the EEG stream, or the only regular numeric one.

    Returns
    -------
    raw : mne.io.RawArray
        Data in MNE's SI units (V for voltage channels), ``sfreq`` the nominal rate, the
        recording's measurement date.

    Raises
    ------
    RecordingError
        If the stream is absent, ambiguous, text, irregular or empty.

    Warns
    -----
    ExportWarning
        Gaps in the stream's timestamps, markers outside its span, channels of unknown unit.
    """
    import mne

    signal = signal_stream(recording, stream)
    types, scales = _channels(signal, set(mne.io.get_channel_type_constants()))
    info = mne.create_info(_unique(list(signal.ch_names)), signal.srate, types)
    for channel, kind in zip(info["chs"], types, strict=True):
        if kind.startswith("fnirs") and (match := _NIRS_NAME.fullmatch(channel["ch_name"])):
            channel["loc"][9] = float(match.group(1))  # the wavelength, nm
    raw = mne.io.RawArray((signal.data * scales).T, info, verbose="error")
    if recording.meas_date is not None:
        raw.set_meas_date(recording.meas_date)
    onsets, durations, descriptions = _annotations(recording, signal)
    raw.set_annotations(mne.Annotations(onsets, durations, descriptions))
    return raw


def _output(path: Path, fmt: str, out: str | Path | None) -> Path:
    out = Path(out) if out is not None else path.with_name(file_stem(path) + EXPORT_SUFFIXES[fmt])
    name = out.name.lower()
    if fmt == "fif" and not name.endswith(_FIF_NAMES):
        raise ValueError(
            f"out={str(out)!r}: a FIF export is named *_raw.fif or *_eeg.fif (MNE's "
            f"convention), e.g. {out.name.split('.')[0]}_raw.fif."
        )
    if fmt == "edf" and not name.endswith(".edf"):
        raise ValueError(f"out={str(out)!r}: an EDF export is named *.edf.")
    if out.exists():
        raise FileExistsError(
            f"{out} exists; export never overwrites: choose another output path or delete it."
        )
    return out


def export_recording(path: str | Path, to: str, out: str | Path | None = None,
                     stream: str | None = None) -> Path:  # fmt: skip
    """Convert a recording to FIF or EDF through MNE-Python.

    Parameters
    ----------
    path : str | Path
        Any file :func:`~bci.replay.recording.load_recording` reads.
    to : str
        ``"fif"`` (MNE-Python; float64, lossless) or ``"edf"`` (EEGLAB, most viewers; 16 bits
        per sample).
    out : str | Path | None
        The file to write; must not exist. Default: beside ``path``, same stem
        (``<stem>_raw.fif`` or ``<stem>.edf``).
    stream : str | None
        Name of the numeric stream to export (see :func:`to_mne_raw`).

    Returns
    -------
    out : Path
        The file written.

    Raises
    ------
    ValueError
        Unknown ``to``, or an ``out`` name that does not fit the format.
    FileExistsError
        If ``out`` exists.
    RecordingError
        The recording cannot be read, has no stream to export, or MNE cannot write it.

    Warns
    -----
    ExportWarning
        The loader's warnings (truncation) and :func:`to_mne_raw`'s.
    """
    fmt = str(to).strip().lower().lstrip(".")
    if fmt not in EXPORT_SUFFIXES:
        raise ValueError(f"to={to!r}: export writes {' or '.join(map(repr, EXPORT_SUFFIXES))} "
                         "(FIF for MNE-Python, EDF for EEGLAB and most viewers).")  # fmt: skip
    path = Path(path)
    out = _output(path, fmt, out)
    recording = load_recording(path)
    for message in recording.warnings:
        _warn(message)
    raw = to_mne_raw(recording, stream)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        if fmt == "fif":
            raw.save(out, fmt="double", overwrite=False, verbose="error")
        else:
            import mne

            mne.export.export_raw(out, raw, fmt="edf", physical_range="channelwise",
                                  overwrite=False, verbose="error")  # fmt: skip
    except Exception as error:  # say which file and format failed; leave no half file behind
        out.unlink(missing_ok=True)
        raise RecordingError(
            f"{out}: MNE could not write this {fmt.upper()} file ({type(error).__name__}: "
            f"{error}).{' FIF holds any stream: try to=fif.' if fmt == 'edf' else ''}"
        ) from error
    return out
