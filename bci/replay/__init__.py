"""Recorded sessions: read every stream of a recording (XDF and the files MNE-Python reads) into
one shape, and export it through MNE-Python (FIF, EDF) for analysis.

Submodules: ``recording`` holds the loader and its data classes, ``xdf`` reads XDF files safely
(truncated, corrupt, split into part files), ``export`` converts a recording to an MNE raw and
writes it.
"""

from bci.replay.export import ExportWarning, export_recording, to_mne_raw
from bci.replay.recording import (
    FORMATS,
    NoStreamsError,
    RecordedStream,
    Recording,
    RecordingError,
    load_recording,
    recording_format,
)

__all__ = [
    "FORMATS",
    "ExportWarning",
    "NoStreamsError",
    "RecordedStream",
    "Recording",
    "RecordingError",
    "export_recording",
    "load_recording",
    "recording_format",
    "to_mne_raw",
]
