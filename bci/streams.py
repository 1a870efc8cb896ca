"""The LSL stream contracts shared by every NeuroLoop process.

Each process (virtual subject, engine, recorder, GUI) finds its peers by these names and reads
their samples by these channel layouts, so they live in one place.
"""

from __future__ import annotations

# Stream types (the LSL ``type`` field).
EEG_TYPE = "EEG"
NIRS_TYPE = "NIRS"
MARKERS_TYPE = "Markers"
DECODER_TYPE = "Decoder"
STIM_TYPE = "Stimulation"
EVENTS_TYPE = "Events"
LATENCY_TYPE = "Latency"
INFO_TYPE = "SessionInfo"

# Cue markers published by the session timeline and read by the virtual subject.
CUE_LEFT = "left"
CUE_RIGHT = "right"
CUE_REST = "rest"
CUE_CLASSES = (CUE_LEFT, CUE_RIGHT)

# Stimulation-state stream: one irregular float64 sample per stimulator command.
#   amplitude     mA for tDCS/tACS/pulse trains (signed for tDCS: > 0 anodal under the anode
#                 electrode), % of maximum stimulator output for TMS
#   frequency_hz  tACS / pulse-train frequency, 0 for tDCS and single TMS pulses
#   pulses        TMS pulses fired by this command (0 or 1)
#   write_time    pylsl.local_clock() when the command reached the stimulator, s
#   sample_time   timestamp of the newest input sample the command was computed from, s
#   decided_at    pylsl.local_clock() the governor computed the command at, s
#   origin        why it was written: an index into STIM_ORIGINS
#   seq           the session's publication counter, shared with the events stream's "seq", so
#                 that offline replay puts commands and events back in the order they happened
# The stream's <desc> carries <modality> (tdcs|tacs|tms|pulse_train), <anode>, <cathode>
# (10-20 electrode names) so that subscribers know where current flows.
STIM_CHANNELS = ("amplitude", "frequency_hz", "pulses", "write_time", "sample_time",
                 "decided_at", "origin", "seq")  # fmt: skip
STIM_ORIGINS = ("start", "decision", "hold", "pulse", "estop", "end")
"""start: the zero written as the loop starts; decision: an amplitude policy's decision; hold:
a step of the governor's ramp while it holds; pulse: the phase trigger; estop: the emergency
stop; end: the zero written as the session ends."""

# Session-info stream: irregular JSON strings. The first sample (``"kind": "session"``) carries
# the protocol text, software version, host and operator; ``"kind": "model"`` the fitted model's
# file name and SHA-256 when the decoder is ready; ``"kind": "note"`` an operator note.

# Decoder-output stream: class probabilities followed by the newest-sample timestamp.
DECODER_TIME_CHANNEL = "sample_time"

# Latency stream: per-stage durations and the end-to-end latency of each decision, ms.
# transport: newest sample's age when the pull returned (source chunking + LSL); the others are
# the engine's own stages; end_to_end: stimulator write time − newest sample time.
LATENCY_CHANNELS = ("transport", "preprocess", "decode", "control", "write", "end_to_end")

# The sample-index channel that test sources append to prove nothing was dropped.
SAMPLE_INDEX_CHANNEL = "SampleIndex"


def stream_names(prefix: str) -> dict[str, str]:
    """Names of every stream in a session whose names start with ``prefix``.

    Parameters
    ----------
    prefix : str
        Session prefix, e.g. ``"NeuroLoop"`` or a unique test name.

    Returns
    -------
    names : dict of str to str
        Keys ``eeg``, ``nirs`` (virtual subject) and ``cues``, ``decoder``, ``stim``, ``events``,
        ``latency``, ``info`` (engine).
    """
    return {
        "eeg": f"{prefix}-EEG",
        "nirs": f"{prefix}-NIRS",
        "cues": f"{prefix}-Cues",
        "decoder": f"{prefix}-Decoder",
        "stim": f"{prefix}-Stim",
        "events": f"{prefix}-Events",
        "latency": f"{prefix}-Latency",
        "info": f"{prefix}-Info",
    }
