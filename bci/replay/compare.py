"""How an offline replay's decoder outputs and stimulation commands differ from a recording's."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from bci.engine.record import EngineRecord
from bci.engine.summary import closed_loop_accuracy
from bci.replay.recording import Recording
from bci.replay.session import STIM_COLUMN, json_rows, stim_rows_in_order
from bci.streams import stream_names

if TYPE_CHECKING:
    from bci.replay.offline import OfflineRun


def compare(recording: Recording, run: OfflineRun) -> dict:
    """How the replay's decoder outputs and stimulation commands differ from the recording's."""
    names = stream_names(run.protocol.session.prefix)
    result = {"n_decisions": len(run.decision_times), "n_commands": len(run.commands)}
    recorded_rows = None
    decoder_stream = recording.find(name=names["decoder"])
    if decoder_stream is not None and run.protocol.uses_decoder and decoder_stream.n_samples:
        recorded_rows = decoder_stream.data[:, : run.outputs.shape[1]]
    if recorded_rows is not None and recorded_rows.shape == run.outputs.shape:
        result["decoder_max_abs_diff"] = float(np.max(np.abs(recorded_rows - run.outputs),
                                                      initial=0.0))  # fmt: skip
    else:
        result["decoder_max_abs_diff"] = None
    stim_rows = stim_rows_in_order(recording, run.protocol)
    result["recorded_commands"] = len(stim_rows)
    if len(stim_rows):
        mine = np.array([[a, f, p] for a, f, p, _, _ in run.commands]).reshape(-1, 3)
        columns = [STIM_COLUMN[name] for name in ("amplitude", "frequency_hz", "pulses")]
        theirs = stim_rows[:, columns]
        if mine.shape == theirs.shape:
            result["stim_max_abs_diff"] = float(np.max(np.abs(mine - theirs), initial=0.0))
            # float rounding (a batch of windows through the decoder) is not a change
            result["commands_changed"] = int(np.any(np.abs(mine - theirs) > 1e-9, axis=1).sum())
        else:  # a what-if that wrote a different number of commands: compare the outputs held
            result["stim_max_abs_diff"] = _held_difference(stim_rows, run)
            result["commands_changed"] = abs(len(mine) - len(theirs))
    else:
        result["stim_max_abs_diff"] = None
    amplitudes = np.array([c[0] for c in run.commands])
    result["max_amplitude"] = float(np.max(np.abs(amplitudes), initial=0.0))
    result["pulses"] = int(sum(c[2] for c in run.commands))
    result["accuracy"] = _accuracy(recording, run)
    return result


def _held_difference(stim_rows: np.ndarray, run: OfflineRun) -> float:
    """Largest difference between the amplitudes the two command sequences hold, compared at
    every decision either made (by newest-sample time)."""
    theirs = (stim_rows[:, STIM_COLUMN["sample_time"]], stim_rows[:, STIM_COLUMN["amplitude"]])
    mine = (np.array([c[3] for c in run.commands]), np.array([c[0] for c in run.commands]))
    at = np.union1d(theirs[0], mine[0])

    def held(when: np.ndarray, values: np.ndarray) -> np.ndarray:
        order = np.argsort(when, kind="stable")
        index = np.searchsorted(when[order], at, side="right") - 1
        return np.where(index >= 0, values[order][np.clip(index, 0, None)], 0.0)

    return float(np.max(np.abs(held(*theirs) - held(*mine)), initial=0.0))


def _accuracy(recording: Recording, run: OfflineRun) -> float | None:
    """Closed-loop trial accuracy of the replayed decoder, scored as a session's summary does."""
    protocol = run.protocol
    cues = recording.find(name=stream_names(protocol.session.prefix)["cues"])
    events = json_rows(recording.find(name=stream_names(protocol.session.prefix)["events"]))
    if cues is None or not protocol.uses_decoder or not len(run.decision_times):
        return None
    record = EngineRecord()
    starts = [(t, row["index"]) for t, row in events if row.get("kind") == "block"]
    for t, label in zip(cues.timestamps, cues.data[:, 0], strict=True):
        index = max((i for s, i in starts if s <= t), default=None)
        if index is not None and label in protocol.decoder.classes:
            record.cues.append((float(t), str(label), index))
    record.decisions.extend(zip(run.decision_times, run.outputs, strict=True))
    accuracy, scored = closed_loop_accuracy(record, protocol)
    return None if not scored or math.isnan(accuracy) else accuracy
