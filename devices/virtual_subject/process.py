"""The virtual subject as a process: LSL outlets paced like an amplifier, fed by cues and
stimulation commands from the session's LSL streams.

``bci simulate`` calls ``run_virtual_subject(SimulateOptions(...))``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import queue
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pylsl

from bci.streams import CUE_LEFT, CUE_REST, CUE_RIGHT, STIM_CHANNELS, stream_names

from .eeg import EegSettings
from .fnirs import FnirsSettings
from .lsl_info import eeg_stream_info, nirs_stream_info
from .montage import max_channels
from .params import SubjectParams
from .stimulation import MODALITIES
from .subject import VirtualSubject

logger = logging.getLogger(__name__)

_MAX_BLOCK_S = 0.5  # after a stall, catch up in blocks this long so no array grows unbounded
_RESOLVE_TIMEOUT_S = 1.0  # one resolve attempt per stream per ~second


@dataclass(frozen=True)
class SimulateOptions:
    """Options of ``bci simulate``: which subject, which streams, how long."""

    prefix: str = "NeuroLoop"
    """Session prefix; streams are named by ``bci.streams.stream_names(prefix)``."""
    seed: int = 0
    """Subject seed (``SubjectParams.from_seed``), >= 0."""
    eeg_channels: int = 32
    """Number of EEG channels, 3 to ~340 (32 and 64: standard caps)."""
    eeg_srate: float = 500.0
    """EEG sampling rate, Hz, 128–5000."""
    fnirs: bool = True
    """Also publish the fNIRS stream."""
    fnirs_srate: float = 10.0
    """fNIRS sampling rate, Hz, 1–50."""
    sample_index: bool = False
    """Append a ``SampleIndex`` channel to the EEG (proves no sample was dropped)."""
    bad_channel: str | None = None
    """EEG channel with a bad contact, or None."""
    bad_channel_kind: str = "noisy"
    """``"noisy"`` or ``"flat"``."""
    line_freq: float = 50.0
    """Mains frequency, Hz."""
    chunk_s: float = 0.01
    """Push interval, s, 0.001–1 (10 ms: what a USB amplifier delivers)."""
    duration_s: float | None = None
    """Stop after this much signal time, s; None runs until stopped."""
    listen: bool = True
    """Follow the session's cue Markers stream and stimulation stream."""

    def __post_init__(self) -> None:
        if not isinstance(self.prefix, str) or not self.prefix:
            raise ValueError(f"prefix must be a non-empty string, got {self.prefix!r}")
        if not 0.001 <= self.chunk_s <= 1.0:
            raise ValueError(f"chunk_s must be between 0.001 and 1 s, got {self.chunk_s}")
        if self.duration_s is not None and not self.duration_s > 0:
            raise ValueError(f"duration_s must be > 0 or None, got {self.duration_s}")
        SubjectParams(seed=self.seed)  # validates the seed
        # Checked here too so that errors name the option rather than the settings field.
        if isinstance(self.eeg_channels, bool) or not isinstance(self.eeg_channels, int):
            raise TypeError(f"eeg_channels must be an int, got {self.eeg_channels!r}")
        if not 3 <= self.eeg_channels <= max_channels():
            raise ValueError(
                f"eeg_channels must be between 3 and {max_channels()}, got {self.eeg_channels}"
            )
        if not 128.0 <= self.eeg_srate <= 5000.0:
            raise ValueError(f"eeg_srate must be between 128 and 5000 Hz, got {self.eeg_srate}")
        if not 1.0 <= self.fnirs_srate <= 50.0:
            raise ValueError(f"fnirs_srate must be between 1 and 50 Hz, got {self.fnirs_srate}")
        self.eeg_settings()  # bad_channel, bad_channel_kind, line_freq
        self.fnirs_settings()

    def eeg_settings(self) -> EegSettings:
        """The EEG settings these options describe."""
        return EegSettings(
            n_channels=self.eeg_channels, sfreq=self.eeg_srate, line_freq=self.line_freq,
            bad_channel=self.bad_channel, bad_channel_kind=self.bad_channel_kind,
            sample_index=self.sample_index,
        )  # fmt: skip

    def fnirs_settings(self) -> FnirsSettings | None:
        """The fNIRS settings these options describe, None without fNIRS."""
        return FnirsSettings(sfreq=self.fnirs_srate) if self.fnirs else None


@dataclass(frozen=True)
class SimulationSummary:
    """What one run published and received."""

    eeg_samples: int
    """EEG samples pushed."""
    nirs_samples: int
    """fNIRS samples pushed."""
    cues: int
    """Cue markers applied."""
    stim_commands: int
    """Stimulation commands applied."""
    start_time: float
    """``pylsl.local_clock()`` time stamp of sample 0 of both streams, s."""


def run_virtual_subject(
    options: SimulateOptions, stop_event: threading.Event | None = None
) -> SimulationSummary:
    """Publish the virtual subject's EEG (and fNIRS) until stopped or ``duration_s`` is out.

    Samples are pushed every ``chunk_s`` as they fall due on ``pylsl.local_clock()``; each chunk
    carries the nominal time stamp of its newest sample (``start + index / srate``), so time
    stamps are regular and never drift. Cues and stimulation commands are applied at their
    (clock-corrected) time stamps, or at the next sample if they arrive late.

    Parameters
    ----------
    options : SimulateOptions
    stop_event : threading.Event, optional
        Set it to stop; SIGINT/SIGTERM also stop when running in the main thread.

    Returns
    -------
    summary : SimulationSummary
    """
    stop = threading.Event() if stop_event is None else stop_event
    subject = VirtualSubject(
        SubjectParams.from_seed(options.seed), options.eeg_settings(), options.fnirs_settings()
    )
    eeg_fs = float(options.eeg_srate)
    eeg_outlet = pylsl.StreamOutlet(eeg_stream_info(
        options.prefix, options.seed, subject.eeg_channel_names, eeg_fs, options.line_freq
    ))  # fmt: skip
    nirs_fs = float(options.fnirs_srate)
    nirs_outlet = (
        pylsl.StreamOutlet(nirs_stream_info(options.prefix, options.seed, nirs_fs))
        if options.fnirs
        else None
    )
    names = stream_names(options.prefix)
    listener = _CommandListener(names["cues"], names["stim"], stop) if options.listen else None
    logger.info("virtual subject %d publishing %s", options.seed, names["eeg"])
    start = pylsl.local_clock()
    sent = {"eeg": 0, "nirs": 0}
    try:
        with _stop_on_signals(stop):
            while not stop.is_set():
                if listener is not None:
                    listener.apply(subject, start)
                elapsed = pylsl.local_clock() - start
                if options.duration_s is not None:
                    elapsed = min(elapsed, options.duration_s - 1e-9)
                _push_due(eeg_outlet, subject.eeg, eeg_fs, start, elapsed, sent, "eeg")
                if nirs_outlet is not None:
                    _push_due(nirs_outlet, subject.fnirs, nirs_fs, start, elapsed, sent, "nirs")
                if options.duration_s is not None and elapsed >= options.duration_s - 2e-9:
                    break
                # Wake on the chunk grid of the start time, not "chunk_s after now": no drift.
                wake = start + (math.floor(elapsed / options.chunk_s) + 1) * options.chunk_s
                stop.wait(max(0.0, wake - pylsl.local_clock()))
    finally:
        if listener is not None:
            listener.close()
    return SimulationSummary(
        eeg_samples=sent["eeg"], nirs_samples=sent["nirs"],
        cues=0 if listener is None else listener.n_cues,
        stim_commands=0 if listener is None else listener.n_stim, start_time=start,
    )  # fmt: skip


def _push_due(
    outlet: pylsl.StreamOutlet,
    generate: Callable[[int], np.ndarray],
    sfreq: float,
    start: float,
    elapsed: float,
    sent: dict[str, int],
    key: str,
) -> None:
    """Push every sample of stream ``key`` whose nominal time (start + k/sfreq) has come by
    ``elapsed`` s, counting pushed samples in ``sent[key]``."""
    due = math.floor(elapsed * sfreq + 1e-9) + 1
    max_block = max(1, round(_MAX_BLOCK_S * sfreq))
    while sent[key] < due:
        n = min(due - sent[key], max_block)
        data = generate(n).astype(np.float32)
        newest = sent[key] + n - 1
        outlet.push_chunk(data, timestamp=start + newest / sfreq)
        sent[key] += n


@contextlib.contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """Turn SIGINT/SIGTERM into ``stop.set()`` (main thread only; signals cannot be caught
    elsewhere) and restore the previous handlers afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, lambda signum, frame: stop.set())
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class _CommandListener:
    """Connects to the cue and stimulation streams in the background and applies what they
    send. Resolving and the first clock-offset query block, so they run in a helper thread; the
    generating loop only ever pulls with a zero timeout. A failure in the helper is re-raised in
    the loop, never swallowed."""

    def __init__(self, cue_name: str, stim_name: str, stop: threading.Event) -> None:
        self._pending = {"cues": cue_name, "stim": stim_name}
        self._stop = stop
        self._closed = threading.Event()
        self._ready: queue.Queue = queue.Queue()
        self._error: BaseException | None = None
        self._inlets: list[tuple[str, pylsl.StreamInlet, dict[str, str]]] = []
        self.n_cues = 0
        self.n_stim = 0
        self._thread = threading.Thread(target=self._connect, name="subject-listener", daemon=True)
        self._thread.start()

    def _connect(self) -> None:
        try:
            while self._pending and not self._finished():
                for kind, name in list(self._pending.items()):
                    found = pylsl.resolve_byprop("name", name, 1, _RESOLVE_TIMEOUT_S / 2)
                    if not found or self._finished():
                        continue
                    inlet = pylsl.StreamInlet(found[0], processing_flags=pylsl.proc_clocksync)
                    meta = _stim_metadata(inlet.info(timeout=5.0)) if kind == "stim" else {}
                    inlet.time_correction(timeout=5.0)  # first offset now, not in the loop
                    self._ready.put((kind, inlet, meta))
                    del self._pending[kind]
                    logger.info("virtual subject follows %s", name)
        except BaseException as exc:  # handed to the loop thread, which raises it
            self._error = exc

    def _finished(self) -> bool:
        return self._stop.is_set() or self._closed.is_set()

    def apply(self, subject: VirtualSubject, start: float) -> None:
        """Feed every cue and command received since the last call into ``subject``."""
        if self._error is not None:
            raise RuntimeError("connecting to the cue/stimulation streams failed") from self._error
        while not self._ready.empty():
            self._inlets.append(self._ready.get_nowait())
        for kind, inlet, meta in self._inlets:
            samples, stamps = inlet.pull_chunk(timeout=0.0)
            for sample, stamp in zip(samples, stamps, strict=True):
                if kind == "cues":
                    if sample[0] in (CUE_LEFT, CUE_RIGHT, CUE_REST):
                        subject.cue(sample[0], time=stamp - start)
                        self.n_cues += 1
                    continue  # other session markers (block starts...) are not for the subject
                values = dict(zip(STIM_CHANNELS, sample, strict=True))
                subject.stimulate(
                    values["amplitude"], values["frequency_hz"], round(values["pulses"]),
                    meta["modality"], meta["anode"] or None, meta["cathode"] or None,
                    time=stamp - start,
                )  # fmt: skip
                self.n_stim += 1

    def close(self) -> None:
        """Stop connecting and drop the inlets."""
        self._closed.set()
        self._thread.join(timeout=2 * _RESOLVE_TIMEOUT_S)
        self._inlets.clear()


def _stim_metadata(info: pylsl.StreamInfo) -> dict[str, str]:
    """Modality and electrodes of a stimulation stream, checked against the contract."""
    if info.channel_count() != len(STIM_CHANNELS):
        raise ValueError(
            f"stimulation stream {info.name()!r} must have {len(STIM_CHANNELS)} channels "
            f"{STIM_CHANNELS}, got {info.channel_count()}"
        )
    desc = info.desc()
    meta = {key: desc.child_value(key) for key in ("modality", "anode", "cathode")}
    if meta["modality"] not in MODALITIES:
        raise ValueError(
            f"stimulation stream {info.name()!r} desc/modality must be one of {MODALITIES}, "
            f"got {meta['modality']!r}"
        )
    return meta
