"""The session's recording: which streams LabRecorder records, and what the file holds after."""

from __future__ import annotations

import sys
from pathlib import Path

from bci.protocol import Protocol
from bci.record import Recorder, name_predicate


def late_streams(protocol: Protocol) -> str:
    """The predicate of streams added to the recording when they appear: the session's own
    prefix, and the protocol's ``[recording] also``."""
    own = f"starts-with(name,'{protocol.session.prefix}-')"
    return " or ".join([own, *(f"({p})" for p in protocol.recording.also)])


def recorded_streams(protocol: Protocol, session_streams: list[str]) -> list[str]:
    """The session's streams and those on the network matching ``[recording] also``."""
    import pylsl

    names = list(session_streams)
    for predicate in protocol.recording.also:
        for info in pylsl.resolve_bypred(predicate, 0, 1.0):
            if info.name() not in names:
                name_predicate(info.name())  # a name LabRecorder cannot select is refused now
                names.append(info.name())
    return names


def announce_late_streams(names: list[str], path: Path) -> None:
    print(f"\nrecording new stream(s) {', '.join(names)} to {path}", flush=True)


def stop_recorder(recorder: Recorder, errors: list[str]) -> None:
    """Stop the recorder; a file it could not close properly is reported and recorded in the
    summary, never raised over the session's own outcome."""
    try:
        recorder.stop()
    except RuntimeError as err:
        print(f"WARNING: {err}", file=sys.stderr)
        errors.append(str(err))


def recording_info(recorder: Recorder, errors: list[str]) -> dict:
    """Path and size of the XDF (and its part files), and the streams it holds as read back."""
    from bci.replay import RecordingError, load_recording

    info = {"path": str(recorder.path), "size_bytes": recorder.size_bytes,
            "parts": [str(part.path) for part in recorder.parts], "streams": {}}  # fmt: skip
    if errors:
        info["stop_error"] = " ".join(errors)
    try:
        recording = load_recording(recorder.path)
    except RecordingError as err:
        info["error"] = f"the recording cannot be read back: {err}"
        return info
    if recording.warnings:
        info["warnings"] = list(recording.warnings)
    for stream in recording.streams:
        info["streams"][stream.name] = {"samples": stream.n_samples}
    return info
