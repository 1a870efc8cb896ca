"""What a NeuroLoop recording says about its session: the protocol it ran, the model it used,
its input stream, its stimulation commands and its events, for offline replay."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from bci.decode import Decoder, load_decoder
from bci.protocol import Protocol, load_protocol, protocol_from_data
from bci.replay.recording import RecordedStream, Recording, RecordingError
from bci.streams import EEG_TYPE, INFO_TYPE, STIM_CHANNELS, stream_names

STIM_COLUMN = {name: i for i, name in enumerate(STIM_CHANNELS)}
"""Column of each stimulation-stream channel."""


def json_rows(stream: RecordedStream | None) -> list[tuple[float, dict]]:
    """(timestamp, record) of every JSON sample of a string stream (events, session info);
    samples that are not JSON objects are skipped."""
    if stream is None:
        return []
    rows = []
    for t, value in zip(stream.timestamps, stream.data[:, 0], strict=True):
        try:
            row = json.loads(value)
        except (TypeError, ValueError):
            continue  # not a NeuroLoop record
        if isinstance(row, dict):
            rows.append((float(t), row))
    return rows


def session_record(recording: Recording) -> tuple[dict | None, list[dict]]:
    """The session-info stream's session record and its model records."""
    info = recording.find(type=INFO_TYPE)
    records = [row for _, row in json_rows(info)]
    session = next((r for r in records if r.get("kind") == "session"), None)
    return session, [r for r in records if r.get("kind") == "model"]


def replay_protocol(recording: Recording, protocol: str | Path | None,
                    overrides: list[str]) -> tuple[Protocol, bool]:  # fmt: skip
    """The protocol to replay with, and whether it is the recorded session's own.

    Raises
    ------
    RecordingError
        If the recording carries no protocol and none is given.
    ProtocolError
        If the protocol (with the overrides) is not valid.
    """
    session, _ = session_record(recording)
    if protocol is not None:
        return load_protocol(protocol, overrides)[0], False
    if session is None or "resolved" not in session:
        raise RecordingError(
            f"{recording.path} is not a NeuroLoop session recording (no session-info stream "
            "with its protocol): give the protocol to replay it with, --protocol FILE."
        )
    loaded = protocol_from_data(session["resolved"], f"{recording.path} (recorded protocol)",
                                recording.path.parent, overrides)  # fmt: skip
    return loaded, not overrides


def replay_model(recording: Recording, protocol: Protocol,
                 model: str | Path | None) -> tuple[Decoder | None, bool]:  # fmt: skip
    """The decoder to replay with (None when the controller reads no decoder), and whether it is
    the one the session used: ``model``, else the session's fitted ``model.npz`` beside the
    recording (its SHA-256 checked against the session-info stream), else the protocol's."""
    from bci.train.files import sha256_of

    if not protocol.uses_decoder:
        return None, True
    if model is not None:
        return load_decoder(Path(model)), False
    session, models = session_record(recording)
    recorded = models[-1] if models else (session or {}).get("model")
    events = json_rows(recording.find(name=stream_names(protocol.session.prefix)["events"]))
    if recorded is None and any(row.get("kind") == "fit" for _, row in events):
        raise RecordingError(
            f"the session fitted its decoder but {recording.path} names no saved model (saving "
            "it failed): give the model to replay with, --model FILE."
        )
    if recorded is None:
        if protocol.decoder.model is not None:
            return load_decoder(protocol.decoder.model), False
        raise RecordingError(
            f"{recording.path} names no model its decoder used (the session ended before the "
            "fit, or the file is not a NeuroLoop session): give one, --model FILE."
        )
    path = Path(recorded["file"])
    path = path if path.is_absolute() else recording.path.parent / path
    if not path.exists():
        raise RecordingError(
            f"the session's model {path} is missing: put it beside the recording, or give "
            "another with --model FILE."
        )
    if sha256_of(path) != recorded["sha256"]:
        raise RecordingError(
            f"{path} is not the model the session used (SHA-256 differs from the recording's "
            f"{recorded['sha256'][:12]}…): restore it, or replay it as another model with "
            "--model FILE."
        )
    return load_decoder(path), True


def input_stream(recording: Recording, protocol: Protocol) -> RecordedStream:
    """The EEG stream the protocol reads: by its name, else the recording's one EEG stream."""
    names = stream_names(protocol.session.prefix)
    name = protocol.source.eeg_stream if protocol.source.kind != "virtual" else None
    for candidate in (name, names["eeg"]):
        found = recording.find(name=candidate) if candidate else None
        if found is not None:
            return found
    return recording.stream(type=EEG_TYPE)


def stim_rows_in_order(recording: Recording, protocol: Protocol) -> np.ndarray:
    """The session's stimulation commands (rows of ``STIM_CHANNELS``) in the order written."""
    stim = recording.find(name=stream_names(protocol.session.prefix)["stim"])
    if stim is None or stim.n_samples == 0:
        return np.zeros((0, len(STIM_CHANNELS)))
    if stim.n_channels != len(STIM_CHANNELS):
        raise RecordingError(
            f"{stim.name} has {stim.n_channels} channels, not NeuroLoop's {len(STIM_CHANNELS)} "
            f"{STIM_CHANNELS}: it was recorded by another NeuroLoop version, which offline "
            "replay cannot compare; replay the file in real time (bci replay FILE) instead."
        )
    return stim.data[np.argsort(stim.data[:, STIM_COLUMN["seq"]], kind="stable")]
