"""The LSL outlets through which the engine publishes what it decided."""

from __future__ import annotations

import json

import numpy as np
import pylsl

from bci import __version__
from bci.streams import (
    DECODER_TIME_CHANNEL,
    DECODER_TYPE,
    EVENTS_TYPE,
    INFO_TYPE,
    LATENCY_CHANNELS,
    LATENCY_TYPE,
    MARKERS_TYPE,
    STIM_CHANNELS,
    STIM_ORIGINS,
    STIM_TYPE,
    stream_names,
)

ENGINE_STREAMS = ("cues", "decoder", "stim", "events", "latency", "info")
"""Keys (in ``stream_names``) of the streams the engine publishes."""


def _info(name: str, kind: str, labels: list[str], fmt: str, unit: str, prefix: str):
    info = pylsl.StreamInfo(name, kind, len(labels), pylsl.IRREGULAR_RATE, fmt, f"{name}-{kind}")
    channels = info.desc().append_child("channels")
    for label in labels:
        channel = channels.append_child("channel")
        channel.append_child_value("label", label)
        channel.append_child_value("unit", unit)
        channel.append_child_value("type", kind)
    acquisition = info.desc().append_child("acquisition")
    acquisition.append_child_value("manufacturer", "NeuroLoop")
    acquisition.append_child_value("version", __version__)
    acquisition.append_child_value("session_prefix", prefix)
    return info


class SessionOutlets:
    """Cue, decoder, stimulation, event, latency and session-info outlets of one session.

    Stimulation commands and events share one counter (``seq``), so a reader of the recording
    knows the order they happened in even when their timestamps tie.

    Parameters
    ----------
    prefix : str
        Session stream-name prefix.
    classes : tuple of str
        Decoder classes, in probability-column order.
    modality, anode, cathode : str
        Written into the stimulation stream's ``<desc>`` for its subscribers.
    """

    def __init__(self, prefix: str, classes, modality: str, anode: str, cathode: str) -> None:
        self.names = stream_names(prefix)
        n = self.names
        self.cues = pylsl.StreamOutlet(
            _info(n["cues"], MARKERS_TYPE, ["cue"], "string", "", prefix)
        )
        decoder_labels = [*classes, DECODER_TIME_CHANNEL]
        self.decoder = pylsl.StreamOutlet(
            _info(n["decoder"], DECODER_TYPE, decoder_labels, "double64", "probability", prefix)
        )
        stim_info = _info(n["stim"], STIM_TYPE, list(STIM_CHANNELS), "double64", "", prefix)
        for key, value in (("modality", modality), ("anode", anode), ("cathode", cathode)):
            stim_info.desc().append_child_value(key, value)
        self.stim = pylsl.StreamOutlet(stim_info)
        self.events = pylsl.StreamOutlet(
            _info(n["events"], EVENTS_TYPE, ["event"], "string", "", prefix)
        )
        self.latency = pylsl.StreamOutlet(
            _info(n["latency"], LATENCY_TYPE, list(LATENCY_CHANNELS), "double64", "ms", prefix)
        )
        self.info = pylsl.StreamOutlet(_info(n["info"], INFO_TYPE, ["info"], "string", "", prefix))
        self.counts = dict.fromkeys(ENGINE_STREAMS, 0)
        self.seq = 0
        """Commands and events published so far."""
        self._decoder_row = np.zeros(len(decoder_labels))
        self._stim_row = np.zeros(len(STIM_CHANNELS))

    @property
    def stream_list(self) -> list[str]:
        """Names of the engine's own streams."""
        return [self.names[key] for key in ENGINE_STREAMS]

    def wait_for_consumers(self, timeout_s: float = 10.0) -> None:
        """Block until every outlet has a subscriber (the recorder), so no first sample is lost.

        Raises
        ------
        RuntimeError
            Naming the outlets nobody subscribed to in time.
        """
        deadline = pylsl.local_clock() + timeout_s
        for key in ENGINE_STREAMS:
            remaining = max(deadline - pylsl.local_clock(), 0.0)
            if not getattr(self, key).wait_for_consumers(remaining):
                raise RuntimeError(
                    f"No recorder subscribed to {self.names[key]!r} within {timeout_s:g} s; "
                    "check that LabRecorder is running."
                )

    def cue(self, label: str, time: float) -> None:
        """Publish a cue marker at ``time`` (s, local clock)."""
        self.cues.push_sample([label], time)
        self.counts["cues"] += 1

    def decision(self, proba: np.ndarray, sample_time: float) -> None:
        """Publish class probabilities with the newest-sample timestamp they were made from."""
        self._decoder_row[:-1] = proba
        self._decoder_row[-1] = sample_time
        self.decoder.push_sample(self._decoder_row, sample_time)
        self.counts["decoder"] += 1

    def stimulation(self, command, decided_at: float, origin: str) -> None:
        """Publish a :class:`~devices.stimulators.StimCommand` at its write time, with the
        clock the governor decided it at and why it was written (one of ``STIM_ORIGINS``)."""
        row = self._stim_row
        row[0], row[1], row[2] = command.amplitude, command.frequency_hz, command.pulses
        row[3], row[4] = command.write_time, command.sample_time
        row[5], row[6], row[7] = decided_at, STIM_ORIGINS.index(origin), self.seq
        self.seq += 1
        self.stim.push_sample(row, command.write_time)
        self.counts["stim"] += 1

    def event(self, kind: str, time: float, **detail) -> None:
        """Publish an event (JSON text: ``{"kind": ..., "seq": ..., "time": ..., ...}``) at
        ``time``. The text carries the time exactly: a recorder's clock correction moves the
        sample's timestamp by microseconds."""
        text = json.dumps({"kind": kind, "seq": self.seq, "time": time, **detail})
        self.seq += 1
        self.events.push_sample([text], time)
        self.counts["events"] += 1

    def session_info(self, kind: str, **content) -> None:
        """Publish a session-info record (JSON text: ``{"kind": ..., ...}``)."""
        self.info.push_sample([json.dumps({"kind": kind, **content})], pylsl.local_clock())
        self.counts["info"] += 1

    def latency_sample(self, stages_ms: np.ndarray, time: float) -> None:
        """Publish per-stage durations and the end-to-end latency of one decision, ms."""
        self.latency.push_sample(stages_ms, time)
        self.counts["latency"] += 1

    def close(self) -> None:
        """Drop the outlets so their streams disappear from the network."""
        for name in ENGINE_STREAMS:
            if hasattr(self, name):
                delattr(self, name)
