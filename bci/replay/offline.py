"""Offline replay: a recording's inputs through the session's own stages, as fast as they go.

The runtime wraps the same stage objects as the engine (the preprocessing pipeline, the decoder,
the stimulation path with its policy and governor), so a NeuroLoop recording replayed with its
own protocol and model gives back its decoder outputs and stimulation commands. What a live
session took from the wall clock is taken from the recording instead:

- a decision is made where the session made one (the decoder stream's ``sample_time``), on the
  window ending at that sample; the governor decides at the clock the session recorded
  (``decided_at`` on the stimulation stream);
- blocks, watchdog trips, gaps, operator commands and the session's end are the recorded input
  events, fed to the stimulation path in the order they happened (the shared ``seq``).

With another model or ``--set`` the same inputs give what would have changed. A recording that
is not a NeuroLoop session (an EDF from another lab) is decided on every hop, as one
closed-loop block.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from bci.acquire.inlet import InletSettings
from bci.decode import Decoder, select_inputs
from bci.engine.controllers import governor_step_s
from bci.engine.fitting import input_indices, session_info
from bci.engine.preprocess import eeg_pipeline
from bci.engine.stimulation import StimulationPath
from bci.protocol import Protocol, ProtocolError
from bci.replay.compare import compare
from bci.replay.recording import RecordedStream, Recording, RecordingError, load_recording
from bci.replay.session import (
    STIM_COLUMN,
    input_stream,
    json_rows,
    replay_model,
    replay_protocol,
    stim_rows_in_order,
)
from bci.streams import (
    DECODER_TIME_CHANNEL,
    STIM_ORIGINS,
    stream_names,
)
from devices.stimulators import SimulatedStimulator, StimulatorError

_CHUNK_S = 10.0
"""Seconds of EEG preprocessed per step (bounds memory on long recordings)."""
_BATCH = 256
"""Decoder windows per call."""


@dataclass
class OfflineRun:
    """What one offline replay computed, next to what the recording holds."""

    protocol: Protocol
    decision_times: np.ndarray
    """Newest-sample time of every decision, s."""
    outputs: np.ndarray
    """What the controller read at each decision: probabilities (n, n_classes) or the
    biomarker (n, 1)."""
    commands: list[tuple[float, float, int, float, str]] = field(default_factory=list)
    """(amplitude, frequency_hz, pulses, sample_time, origin) of every command written."""
    events: list[dict] = field(default_factory=list)
    """Every event the stimulation path raised."""
    seconds: dict = field(default_factory=dict)
    """Wall time per step (load, preprocess, decode, stimulate), s."""
    warnings: list[str] = field(default_factory=list)
    """What the replay could not reproduce, and why."""


class _Published:
    """Stands in for the session outlets: keeps what the stimulation path publishes."""

    def __init__(self, run: OfflineRun) -> None:
        self.run = run

    def stimulation(self, command, decided_at: float, origin: str) -> None:
        self.run.commands.append(
            (command.amplitude, command.frequency_hz, command.pulses, command.sample_time, origin)
        )


class _Clock:
    """The recorded session clock, set before each step."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


# the recording ------------------------------------------------------------------------------
# preprocessing and decisions ---------------------------------------------------------------
def _restarts(eeg: RecordedStream, events: list[tuple[float, dict]],
              warnings: list[str]) -> list[int]:  # fmt: skip
    """Where the session's filters started: its first sample, and the first sample after each
    gap it saw (its ``gap`` events). A recording from elsewhere: its first sample and every gap
    by the engine inlet's rule."""
    session = [row for _, row in events if "seq" in row]
    if not session:
        jumps = np.diff(eeg.timestamps) - 1.0 / eeg.srate > InletSettings().gap_min_s
        return [0, *(np.flatnonzero(jumps) + 1).tolist()]
    first = next((row["first_sample"] for row in session if row["kind"] == "input"), None)
    if first is None:  # the session ended before its first sample
        return [eeg.n_samples]
    restarts = [int(_decision_indices(eeg.timestamps, np.array([first]), eeg.srate)[0])]
    for row in session:
        if row["kind"] != "gap":
            continue
        # a source that restarts can reach the engine before the recorder reconnects to it
        index = int(np.searchsorted(eeg.timestamps, row["stop"] - 0.25 / eeg.srate))
        late = eeg.timestamps[min(index, eeg.n_samples - 1)] - row["stop"]
        if late > 0.25 / eeg.srate:
            warnings.append(
                f"the recording lacks the first {late:.3f} s of {eeg.name} that the session "
                f"read after its gap at {row['start']:.3f} s (the recorder reconnected later): "
                "decisions on windows reaching into them are not reproduced exactly"
            )
        restarts.append(index)
    return sorted(set(restarts))


def _preprocess(stream: RecordedStream, protocol: Protocol, restarts: list[int], bar: tqdm):
    """The engine's preprocessing over the stream, started afresh at each of ``restarts``
    (sample indices). Returns the pipeline, the processed picks (zeros before the first
    restart) and each sample's segment start."""
    pipeline = eeg_pipeline(protocol.preprocessing, stream.ch_names, stream.srate,
                            stream.ch_types)  # fmt: skip
    out = np.zeros((stream.n_samples, len(protocol.preprocessing.picks)))
    segment_start = np.zeros(stream.n_samples, dtype=np.int64)
    step = max(1, int(_CHUNK_S * stream.srate))
    for start, stop in itertools.pairwise([*restarts, stream.n_samples]):
        pipeline.reset()
        segment_start[start:stop] = start
        for chunk_start in range(start, stop, step):
            chunk_stop = min(chunk_start + step, stop)
            span = slice(chunk_start, chunk_stop)
            out[span], _ = pipeline(stream.data[span], stream.timestamps[span])
            bar.update((chunk_stop - chunk_start) / stream.srate)
    return pipeline, out, segment_start


def _decision_indices(times: np.ndarray, wanted: np.ndarray, sfreq: float) -> np.ndarray:
    """Index of the sample each recorded time names (within a quarter sample: the session's
    and the recorder's clock corrections differ by microseconds)."""
    index = np.clip(np.searchsorted(times, wanted), 1, max(len(times) - 1, 1))
    nearer = np.abs(times[index - 1] - wanted) < np.abs(times[index] - wanted)
    index = index - nearer
    off = np.abs(times[index] - wanted) > 0.25 / sfreq
    if off.any():
        raise RecordingError(
            f"{int(off.sum())} recorded time(s) name samples the input stream does not "
            f"hold (first at {wanted[off][0]:.3f} s): the input stream is incomplete or from "
            "another session."
        )
    return index


def _every_hop(times: np.ndarray, segment_start: np.ndarray, n_window: int,
               hop: int) -> np.ndarray:  # fmt: skip
    """A decision every hop once a whole window follows a gap (recordings with no decisions)."""
    index = np.arange(n_window - 1, len(times), hop)
    return index[index - segment_start[index] >= n_window - 1]


def _windows(processed: np.ndarray, ends: np.ndarray, n_window: int) -> np.ndarray:
    offsets = np.arange(-n_window + 1, 1)
    return processed[ends[:, None] + offsets[None, :]]


# the runtime -------------------------------------------------------------------------------
def run_offline(recording: Recording, protocol: Protocol, decoder: Decoder | None,
                progress: bool = True, reproducing: bool = False) -> OfflineRun:  # fmt: skip
    """Feed ``recording``'s inputs through ``protocol``'s stages with ``decoder``
    (``reproducing``: they are the session's own, so its recorded dose limits apply)."""
    eeg = input_stream(recording, protocol)
    if eeg.srate <= 0:
        raise RecordingError(f"{eeg.name} has no nominal rate; the engine reads regular streams.")
    names = stream_names(protocol.session.prefix)
    pre = protocol.preprocessing
    n_window = round(pre.window_s * eeg.srate)
    seconds = {}
    events = json_rows(recording.find(name=names["events"]))
    run_warnings: list[str] = []
    restarts = _restarts(eeg, events, run_warnings)
    fmt = "{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s"
    with tqdm(total=eeg.n_samples / eeg.srate, desc="preprocess", disable=not progress,
              bar_format=fmt) as bar:  # fmt: skip
        t0 = time.perf_counter()
        pipeline, processed, segment_start = _preprocess(eeg, protocol, restarts, bar)
        seconds["preprocess"] = time.perf_counter() - t0
    stim_rows = stim_rows_in_order(recording, protocol)
    decoder_stream = recording.find(name=names["decoder"])
    # a decision is known by the newest-sample time the session recorded for it
    if decoder is not None and decoder_stream is not None and decoder_stream.n_samples:
        column = decoder_stream.ch_names.index(DECODER_TIME_CHANNEL)
        keys = decoder_stream.data[:, column]
    elif len(stim_rows):
        origin = stim_rows[:, STIM_COLUMN["origin"]] == STIM_ORIGINS.index("decision")
        keys = stim_rows[origin, STIM_COLUMN["sample_time"]]
    else:
        keys = None
    if keys is not None:
        ends = _decision_indices(eeg.timestamps, keys, eeg.srate)
    else:
        hop = max(1, round(pre.hop_s * eeg.srate))
        ends = _every_hop(eeg.timestamps, segment_start, n_window, hop)
        keys = eeg.timestamps[ends]
    straddles = (ends - segment_start[ends] < n_window - 1) | (ends < restarts[0])
    if straddles.any() and not run_warnings:  # (warned: samples the session read are missing)
        raise RecordingError(
            "a recorded decision reads a window that straddles a gap in the input: the "
            "protocol's window_s is longer than the session's; replay with its own."
        )
    run = OfflineRun(protocol, np.asarray(keys, float), np.zeros((len(ends), 0)),
                     seconds=seconds, warnings=run_warnings)  # fmt: skip
    clock, published = _Clock(), _Published(run)
    stimulator = SimulatedStimulator(protocol.stimulator.modality)
    stimulator.connect()
    stimulator.start()
    path = StimulationPath(
        protocol, stimulator, published, [], lambda kind, t, **d: run.events.append(
            {"kind": kind, "time": t, **d}), max_step_s=governor_step_s(pre.hop_s),
        sfreq=eeg.srate, pipeline=pipeline, clock=clock,
    )  # fmt: skip
    t0 = time.perf_counter()
    if decoder is not None:
        run.outputs = _decode(decoder, protocol, eeg, processed, ends, n_window, progress)
    seconds["decode"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    script = _script(recording, names, stim_rows, run.decision_times)
    _stimulate(
        run, path, clock, script, processed, eeg, ends, n_window, decoder is not None, reproducing
    )
    seconds["stimulate"] = time.perf_counter() - t0
    return run


def _decode(decoder: Decoder, protocol: Protocol, eeg: RecordedStream, processed: np.ndarray,
            ends: np.ndarray, n_window: int, progress: bool) -> np.ndarray:  # fmt: skip
    info = session_info(protocol, eeg.srate, (), 0.0)
    input_indices(decoder, info)  # a model that cannot read this stream is refused here
    if "nirs" in decoder.info.inputs:
        raise RecordingError(
            "offline replay of hybrid EEG+fNIRS decoders is not supported: the fNIRS windows a "
            "session read depend on when it pulled them, which is not recorded."
        )
    rows = np.empty((len(ends), len(decoder.info.classes)))
    for start in tqdm(range(0, len(ends), _BATCH), desc="decode", disable=not progress,
                      unit="batch"):  # fmt: skip
        batch = ends[start : start + _BATCH]
        windows = {"eeg": _windows(processed, batch, n_window)}
        rows[start : start + len(batch)] = decoder.predict_proba(
            select_inputs(decoder.info, windows)
        )
    return rows


def _script(recording: Recording, names: dict, stim_rows: np.ndarray,
            decision_times: np.ndarray) -> list[tuple[float, str, dict]]:  # fmt: skip
    """The stimulation path's inputs in the order they happened: (seq, what, detail)."""
    events = json_rows(recording.find(name=names["events"]))
    # the time in the text is the engine's own; the sample's timestamp went through the
    # recorder's clock correction
    script = [(float(row["seq"]), "event", {"time": t, **row})
              for t, row in events if "seq" in row]  # fmt: skip
    # the governor's events are published after the command their iteration wrote: a dose
    # limit goes back before the first command decided at or after it
    decided, seqs = stim_rows[:, STIM_COLUMN["decided_at"]], stim_rows[:, STIM_COLUMN["seq"]]
    for i, (_, what, item) in enumerate(script):
        later = seqs[decided >= item["time"]] if item["kind"] == "safety.limit" else ()
        if len(later):
            script[i] = (float(later.min()) - 0.5, what, item)
    for row in stim_rows:
        detail = {name: float(row[i]) for name, i in STIM_COLUMN.items()}
        detail["origin"] = STIM_ORIGINS[int(row[STIM_COLUMN["origin"]])]
        script.append((int(row[STIM_COLUMN["seq"]]), "command", detail))
    if not script:  # not a NeuroLoop session: one closed-loop block, decided every hop
        start = float(decision_times[0]) if len(decision_times) else 0.0
        script.append((0, "event", {"kind": "block", "time": start, "block": "closed_loop",
                                    "stimulate": True, "stalled": False}))  # fmt: skip
        script += [(1 + i, "command", {"origin": "decision", "sample_time": float(t),
                                       "decided_at": float(t)})
                   for i, t in enumerate(decision_times)]  # fmt: skip
    return sorted(script, key=lambda item: item[0])


def _stimulate(run: OfflineRun, path: StimulationPath, clock: _Clock, script: list,
               processed: np.ndarray, eeg: RecordedStream, ends: np.ndarray, n_window: int,
               decoded: bool, reproducing: bool) -> None:  # fmt: skip
    """Feed the script to the stimulation path, as the engine's loop did."""
    protocol = run.protocol
    by_time = {float(t): i for i, t in enumerate(run.decision_times)}
    biomarker = []
    stimulate, newest = False, float("nan")
    for _, what, item in script:
        if what == "event":
            t, kind = item["time"], item["kind"]
            clock.now = t
            if kind == "block":
                stimulate = item["block"] == "closed_loop" and item.get("stimulate", True)
                path.start_block(item["block"], item.get("stimulate", True), t,
                                 item.get("stalled", False))  # fmt: skip
            elif kind == "baseline" and not protocol.uses_decoder:
                end = _decision_indices(eeg.timestamps, np.array([item["sample_time"]]),
                                        eeg.srate)[0]  # fmt: skip
                window = processed[max(0, end + 1 - int(item["samples"])) : end + 1]
                hop = max(1, round(protocol.preprocessing.hop_s * eeg.srate))
                path.calibrate(window, n_window, hop, t, item["sample_time"])
            elif kind == "watchdog" and item["action"] == "trip":
                path.watchdog_trip(item["reason"], t)
            elif kind == "watchdog":
                path.watchdog_recover(t)
            elif kind == "gap":
                path.gap(t)
            elif kind == "operator" and item["cmd"] == "estop":
                path.estop(item["who"], t, newest, write=False)  # the zero is a command below
            elif kind == "operator" and item["cmd"] == "rearm":
                path.rearm(item["who"], t)
            elif kind == "operator" and item["cmd"] == "pause":
                path.pause(item["who"], t)
            elif kind == "operator" and item["cmd"] == "resume":
                path.resume(item["who"], t, item["block"], item["stimulate"], item["stalled"])
            elif kind == "stimulator_failed":
                path.fail(StimulatorError(item["error"]))
            elif kind == "ending":
                path.governor.trip("session end", t, kind="hold")
            elif kind == "safety.limit" and reproducing:
                # the live loop's governor latched it between commands (it integrates every
                # iteration); another setting would reach its own limit
                path.governor.limit(item["detail"], t)
            continue
        origin, newest, clock.now = item["origin"], item["sample_time"], item["decided_at"]
        if origin == "decision":
            i = by_time.get(newest)
            if decoded:
                row = run.outputs[i] if i is not None else np.full(1, np.nan)
            else:
                window = _windows(processed, ends[i : i + 1], n_window)[0]
                row = np.array([path.biomarker(window)])
                biomarker.append(row)
            path.decide(row, newest, stimulate)
        elif origin == "hold":
            path.hold_safe(clock.now, newest)
        elif origin == "pulse":  # the crossing the live trigger fired at, governed again
            path.governor.request(protocol.controller.amplitude, clock.now)
            fire = path.governor.request_pulse(clock.now)
            # the device's reply is an input too: a Magstim skips a fire while it recharges
            delivered = bool(item["pulses"]) if reproducing else True
            path.write(newest, origin="pulse", decided_at=clock.now, pulse=fire and delivered)
        elif origin in ("start", "end", "estop"):  # estop: the governor stopped at the event
            path.write(newest, origin=origin, decided_at=clock.now,
                       command=path.governor.zero_now(clock.now))  # fmt: skip
    if not decoded:
        run.outputs = np.array(biomarker).reshape(-1, 1)


# the command -------------------------------------------------------------------------------
def replay_offline(path: str | Path, protocol: str | Path | None = None,
                   model: str | Path | None = None, overrides: list[str] = (),
                   progress: bool = True) -> dict:  # fmt: skip
    """Replay a recording offline and report how the result compares with what it holds (the
    ``result`` of :func:`replay_with_run`)."""
    return replay_with_run(path, protocol, model, overrides, progress)[0]


def replay_with_run(path: str | Path, protocol: str | Path | None = None,
                    model: str | Path | None = None, overrides: list[str] = (),
                    progress: bool = True) -> tuple[dict, OfflineRun]:  # fmt: skip
    """Replay a recording offline; returns the comparison and what the replay computed.

    Returns
    -------
    result : dict
        ``realtime_factor`` (recording seconds per second of replay), ``decoder_max_abs_diff``
        and ``stim_max_abs_diff`` (None where the recording holds nothing to compare),
        ``n_decisions``, whether this ``reproduces`` the session (its own protocol and model),
        the closed-loop ``accuracy`` and the seconds each step took.

    Raises
    ------
    RecordingError, ProtocolError
        With one clear message.
    """
    t0 = time.perf_counter()
    recording = load_recording(path)
    loaded = time.perf_counter() - t0
    own_protocol_run, own = replay_protocol(recording, protocol, list(overrides))
    decoder, own_model = replay_model(recording, own_protocol_run, model)
    t1 = time.perf_counter()
    run = run_offline(recording, own_protocol_run, decoder, progress, own and own_model)
    elapsed = time.perf_counter() - t1
    eeg = input_stream(recording, own_protocol_run)
    result = {
        "recording": str(recording.path), "format": recording.format,
        "duration_s": eeg.duration_s, "channels": eeg.n_channels, "srate": eeg.srate,
        "realtime_factor": eeg.duration_s / elapsed if elapsed > 0 else math.inf,
        "reproduces": own and own_model, "overrides": list(overrides),
        "model": str(model) if model else None, "warnings": [*recording.warnings, *run.warnings],
        "seconds": {"load": loaded, **run.seconds, "total": time.perf_counter() - t0},
        **compare(recording, run),
    }  # fmt: skip
    return result, run


__all__ = [
    "OfflineRun",
    "ProtocolError",
    "compare",
    "replay_offline",
    "replay_with_run",
    "run_offline",
]
