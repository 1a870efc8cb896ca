"""Replay a recording in real time (or faster) as LSL outlets, exactly as its devices sent it.

Every stream of a :class:`~bci.replay.recording.Recording` gets an outlet with its original
name, type, channel count, format, nominal rate, source id and channel metadata. All streams
share one time base: sample ``i`` is due at ``t0 + (ts_i - ts_first) / speed``, where ``t0`` is
``pylsl.local_clock()`` at :meth:`Player.start` and ``ts_first`` the first time stamp of the
recording, and it is pushed with that due time as its LSL time stamp. Pacing is by the clock:
each pass of the loop pushes whatever has fallen due, so a late pass catches up on the next with
no drift, and waiting is the only thing the loop sleeps for.

``bci replay`` calls :func:`replay_realtime`.
"""

from __future__ import annotations

import math
import numbers
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pylsl
from tqdm import tqdm

if TYPE_CHECKING:
    from bci.replay.recording import RecordedStream, Recording

CHANNEL_FORMATS = ("float32", "double64", "int32", "int16", "int8", "int64", "string")
"""LSL channel formats an outlet can have."""


class ReplaySchedule:
    """Which samples of each stream are due by a given position in the recording.

    Pure bookkeeping (no clock, no LSL): the player asks it, pass after pass, for everything due
    by the current position, however far that position jumped since the last pass.

    Parameters
    ----------
    times : list of array, shape (n_samples,)
        Per stream, the time of each sample from the first sample of the recording, s,
        non-decreasing. Empty streams are allowed.
    period_s : float
        Length of one pass of the recording, s (> every time); the n-th repetition of a sample
        is due ``n * period_s`` after its time.
    loop : bool
        Repeat the recording forever instead of ending after one pass.
    """

    def __init__(self, times: list[np.ndarray], period_s: float, loop: bool) -> None:
        self.times = [np.asarray(t, dtype=float) for t in times]
        if not period_s > max((t[-1] for t in self.times if len(t)), default=0.0):
            raise ValueError(f"period_s must exceed the last sample time, got {period_s}")
        self.period_s = float(period_s)
        self.loop = bool(loop)
        self._next = [0] * len(self.times)  # index of the next sample to take, per stream
        self._passes = [0] * len(self.times)

    def take(self, position_s: float) -> list[list[tuple[int, int, float]]]:
        """Take every sample due by ``position_s`` that was not taken yet.

        Parameters
        ----------
        position_s : float
            Position in the recording, s from its first sample (repetitions included).

        Returns
        -------
        due : list of list of (start, stop, offset_s)
            Per stream, the slices ``start:stop`` of its samples now due, in order, each due
            ``offset_s`` s after its time in the recording (the pass number × ``period_s``).
        """
        due: list[list[tuple[int, int, float]]] = []
        for k, times in enumerate(self.times):
            slices = []
            while self._next[k] < len(times):
                offset = self._passes[k] * self.period_s
                stop = int(np.searchsorted(times, position_s - offset, side="right"))
                if stop > self._next[k]:
                    slices.append((self._next[k], stop, offset))
                    self._next[k] = stop
                if stop < len(times) or not self.loop:
                    break
                self._next[k], self._passes[k] = 0, self._passes[k] + 1
            due.append(slices)
        return due

    def next_time(self, k: int) -> float:
        """Position at which the next sample of stream ``k`` falls due, s (inf when none)."""
        times = self.times[k]
        if not len(times) or self._next[k] == len(times):
            return math.inf
        return float(times[self._next[k]] + self._passes[k] * self.period_s)

    @property
    def done(self) -> bool:
        """Whether every sample was taken (never, when looping a non-empty recording)."""
        return all(math.isinf(self.next_time(k)) for k in range(len(self.times)))


class Player:
    """Publishes a recording's streams as LSL outlets with their original relative timing.

    Lifecycle: :meth:`open` creates the outlets (streams visible, nothing sent), :meth:`start`
    starts playing from the first sample, :meth:`stop` ends early, :meth:`join` waits for the
    end, :meth:`close` stops and removes the outlets. As a context manager it starts on entry
    and closes on exit. A player plays once.

    Parameters
    ----------
    recording : Recording
        What to play (``bci.replay.recording.load_recording``).
    speed : float
        Playback speed, finite > 0: 1 is real time, 4 plays four times as fast (time stamps
        and waits both shrink by 4).
    loop : bool
        Play again from the beginning after the end, forever; time stamps keep increasing,
        one pass lasting the recording plus one sample period of its fastest regular stream.
    streams : list of str, optional
        Names of the streams to play; default all.
    name_suffix : str
        Appended to every outlet's name and source id (tests use it to keep names unique);
        default keeps the original names.
    chunk_s : float
        Regular streams are pushed in chunks of about this length, s, 0.001–1; markers are
        pushed one by one at their due time.
    """

    def __init__(self, recording: Recording, speed: float = 1.0, loop: bool = False,
                 streams: list[str] | None = None, name_suffix: str = "",
                 chunk_s: float = 0.01) -> None:  # fmt: skip
        if (isinstance(speed, bool) or not isinstance(speed, numbers.Real)
                or not math.isfinite(speed) or speed <= 0):  # fmt: skip
            raise ValueError(
                f"speed must be a finite number > 0 (1 = real time, 2 = twice as fast), "
                f"got {speed!r}"
            )
        if not (isinstance(chunk_s, numbers.Real) and 0.001 <= chunk_s <= 1.0):
            raise ValueError(f"chunk_s must be between 0.001 and 1 s, got {chunk_s!r}")
        self.recording = recording
        self.speed = float(speed)
        self.loop = bool(loop)
        self.name_suffix = str(name_suffix)
        self.chunk_s = float(chunk_s)
        self.streams: list[RecordedStream] = _select(recording, streams)
        for stream in self.streams:
            _check_stream(stream)
        non_empty = [s for s in self.streams if len(s.timestamps)]
        if not non_empty:
            raise ValueError(f"{recording.path}: the streams to play hold no samples.")
        first = min(float(s.timestamps[0]) for s in non_empty)
        # Out-of-order stamps (a clock reset mid-file) are held back to their predecessor's
        # time: samples stay in file order and no stamp goes backwards.
        times = [np.maximum.accumulate(np.asarray(s.timestamps, dtype=float) - first)
                 if len(s.timestamps) else np.zeros(0) for s in self.streams]  # fmt: skip
        self.duration_s = max(float(t[-1]) for t in times if len(t))
        """Time from the first to the last sample of the recording, s."""
        self.period_s = self.duration_s + _sample_period(self.streams, times)
        """Length of one pass when looping, s of recording."""
        self.names = [f"{s.name}{self.name_suffix}" for s in self.streams]
        """Outlet names, one per played stream."""
        self._schedule = ReplaySchedule(times, self.period_s, self.loop)
        self._outlets: list[pylsl.StreamOutlet] = []
        self._pushed = [0] * len(self.streams)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._finished = False
        self._closed = False
        self._position = 0.0
        self._t0: float | None = None
        self._t_end: float | None = None

    # lifecycle -------------------------------------------------------------------------------
    def open(self) -> Player:
        """Create the outlets (idempotent); consumers can subscribe before :meth:`start`."""
        if self._closed:
            raise RuntimeError("This player is closed; build a new Player to play again.")
        if not self._outlets:
            self._outlets = [
                pylsl.StreamOutlet(self._stream_info(stream, name), chunk_size=0)
                for stream, name in zip(self.streams, self.names, strict=True)
            ]
        return self

    def wait_for_consumers(self, timeout_s: float) -> bool:
        """Open the outlets and wait until each has a consumer, at most ``timeout_s`` s.

        Returns
        -------
        ready : bool
            Whether every outlet has at least one consumer.
        """
        self.open()
        deadline = pylsl.local_clock() + timeout_s
        return all(outlet.wait_for_consumers(max(0.0, deadline - pylsl.local_clock()))
                   for outlet in self._outlets)  # fmt: skip

    def start(self) -> Player:
        """Open the outlets if needed and start playing from the first sample now."""
        if self._thread is not None:
            raise RuntimeError("This player has already played; build a new Player to replay.")
        self.open()
        self._t0 = pylsl.local_clock()
        self._thread = threading.Thread(target=self._run, name="replay-player", daemon=True)
        self._thread.start()
        return self

    def join(self, timeout_s: float | None = None) -> bool:
        """Wait until playing ends (the last sample, or :meth:`stop`), at most ``timeout_s``.

        Returns
        -------
        ended : bool
            False if still playing when the timeout ran out.

        Raises
        ------
        RuntimeError
            If playing failed; the cause is chained.
        """
        if self._thread is None:
            raise RuntimeError("This player has not started; call start() first.")
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            return False
        if self._error is not None:
            raise RuntimeError(f"Replaying {self.recording.path} failed.") from self._error
        return True

    def stop(self) -> None:
        """Stop playing and wait for the publishing thread (idempotent)."""
        self._stop.set()
        if self._thread is not None:
            self.join()

    def close(self) -> None:
        """Stop and remove the outlets (idempotent)."""
        try:
            self.stop()
        finally:
            self._outlets = []
            self._closed = True

    def __enter__(self) -> Player:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # state -----------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        """Whether the publishing thread is playing."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def finished(self) -> bool:
        """Whether every sample was pushed (never while looping)."""
        return self._finished

    @property
    def start_time(self) -> float | None:
        """``pylsl.local_clock()`` when playing started (the first sample's due time), s."""
        return self._t0

    @property
    def position_s(self) -> float:
        """Recording time up to which every sample has been pushed, s, repetitions included."""
        return self._position

    @property
    def progress(self) -> float:
        """Fraction of the recording pushed, 0–1 (of the current pass, when looping)."""
        if self._finished:
            return 1.0
        if self.loop:
            return (self._position % self.period_s) / self.period_s
        return min(1.0, self._position / self.duration_s) if self.duration_s > 0 else 0.0

    @property
    def samples_pushed(self) -> dict[str, int]:
        """Samples pushed so far per outlet name (streams sharing a name are summed)."""
        counts: dict[str, int] = {}
        for name, n in zip(self.names, self._pushed, strict=True):
            counts[name] = counts.get(name, 0) + n
        return counts

    def summary(self) -> dict:
        """Samples pushed per outlet, wall time, recording time played and effective speed."""
        wall = 0.0 if self._t0 is None else (self._t_end or pylsl.local_clock()) - self._t0
        return {
            "samples": self.samples_pushed,
            "wall_s": wall,
            "recording_s": self._position,
            "speed": self._position / wall if wall > 0 else 0.0,
            "finished": self._finished,
        }

    def describe(self) -> list[str]:
        """One line per outlet: name, type, channels, rate."""
        return [
            f"{name}: {s.type or 'untyped'}, {s.n_channels} ch, "
            f"{f'{s.srate:g} Hz' if s.srate > 0 else 'irregular'}, {s.channel_format}, "
            f"{len(s.timestamps)} samples"
            for s, name in zip(self.streams, self.names, strict=True)
        ]

    # publishing ------------------------------------------------------------------------------
    def _stream_info(self, stream: RecordedStream, name: str) -> pylsl.StreamInfo:
        source_id = f"{stream.source_id}{self.name_suffix}" if stream.source_id else ""
        info = pylsl.StreamInfo(name, stream.type, stream.n_channels, float(stream.srate),
                                stream.channel_format, source_id)  # fmt: skip
        desc = info.desc()
        original = stream.desc if isinstance(stream.desc, dict) else {}
        extra = _channel_entries(original, stream.n_channels)
        channels = desc.append_child("channels")
        for i, label in enumerate(stream.ch_names):
            channel = channels.append_child("channel")
            channel.append_child_value("label", str(label))
            channel.append_child_value("unit", str(stream.units[i]))
            channel.append_child_value("type", str(stream.ch_types[i]))
            for key, values in extra[i].items():
                if key not in ("label", "unit", "type"):
                    _append(channel, key, values)
        for key, values in original.items():
            if key not in ("channels", "replay"):
                _append(desc, key, values)
        replay = desc.append_child("replay")
        replay.append_child_value("file", str(self.recording.path))
        replay.append_child_value("format", str(self.recording.format))
        replay.append_child_value("speed", f"{self.speed:g}")
        replay.append_child_value("original_name", stream.name)
        return info

    def _run(self) -> None:
        try:
            self._play()
        except BaseException as exc:  # raised by join() in the caller's thread
            self._error = exc
        finally:
            self._t_end = pylsl.local_clock()

    def _play(self) -> None:
        t0 = self._t0
        schedule = self._schedule
        strings = [s.channel_format == "string" for s in self.streams]
        while not self._stop.is_set():
            position = (pylsl.local_clock() - t0) * self.speed
            for k, slices in enumerate(schedule.take(position)):
                for start, stop, offset in slices:
                    stamps = t0 + (schedule.times[k][start:stop] + offset) / self.speed
                    self._push(k, start, stop, stamps, strings[k])
            if schedule.done:
                self._position = self.duration_s
                self._finished = True
                return
            self._position = position
            # Regular streams wake on the chunk grid, markers at their exact due time.
            wake = math.inf
            for k, is_string in enumerate(strings):
                due = t0 + schedule.next_time(k) / self.speed
                if not is_string and math.isfinite(due):
                    due = t0 + math.ceil((due - t0) / self.chunk_s - 1e-9) * self.chunk_s
                wake = min(wake, due)
            self._stop.wait(max(0.0, wake - pylsl.local_clock()))

    def _push(self, k: int, start: int, stop: int, stamps: np.ndarray, is_string: bool) -> None:
        outlet, data = self._outlets[k], self.streams[k].data
        if is_string:
            for i, stamp in zip(range(start, stop), stamps.tolist(), strict=True):
                outlet.push_sample([str(v) for v in data[i]], stamp)
                self._pushed[k] += 1
        else:
            outlet.push_chunk(data[start:stop], stamps.tolist())
            self._pushed[k] += stop - start


def replay_realtime(path: str | Path, speed: float = 1.0, loop: bool = False,
                    streams: list[str] | None = None, progress: bool = True,
                    stop: threading.Event | None = None) -> dict:  # fmt: skip
    """Load a recording and publish it as LSL outlets in real time (``bci replay``).

    Prints the recording's warnings (e.g. a truncated file) to stderr and one line per outlet,
    shows a progress bar over recording seconds, and ends at the last sample, on Ctrl-C, or
    when ``stop`` is set.

    Parameters
    ----------
    path : str or Path
        XDF, EDF, BDF, FIF, BrainVision or SNIRF file.
    speed, loop, streams
        As for :class:`Player`.
    progress : bool
        Show the progress bar.
    stop : threading.Event, optional
        Set it to stop playing.

    Returns
    -------
    summary : dict
        ``samples`` (pushed per outlet name), ``wall_s``, ``recording_s`` (recording time
        played), ``speed`` (effective: recording_s / wall_s), ``finished``, ``interrupted``.
    """
    # loading pulls in MNE and pyxdf; the player itself needs neither
    from bci.replay.recording import load_recording

    stop = threading.Event() if stop is None else stop
    recording = load_recording(path)
    for warning in recording.warnings:
        print(f"warning: {recording.path.name}: {warning}", file=sys.stderr)
    player = Player(recording, speed=speed, loop=loop, streams=streams).open()
    for line in player.describe():
        print(line)
    interrupted = False
    total = None if loop else round(player.duration_s, 1)
    with tqdm(total=total, desc="replay", unit="s", disable=not progress, leave=True) as bar:
        try:
            player.start()
            while not player.join(timeout_s=0.1) and not stop.is_set():
                bar.n = round(min(player.position_s, total or math.inf), 1)
                bar.refresh()
            interrupted = not player.finished
        except KeyboardInterrupt:
            interrupted = True
        finally:
            player.close()
            bar.n = round(min(player.position_s, total or math.inf), 1)
    return {**player.summary(), "interrupted": interrupted}


def _select(recording: Recording, names: list[str] | None) -> list[RecordedStream]:
    if names is None:
        return list(recording.streams)
    if isinstance(names, str):
        raise TypeError(f"streams must be a list of stream names, got the string {names!r}")
    available = [s.name for s in recording.streams]
    unknown = [n for n in names if n not in available]
    if unknown or not names:
        raise ValueError(f"streams {list(names)!r}: no {unknown!r} in {recording.path}; "
                         f"choose among {available!r}.")  # fmt: skip
    return [s for s in recording.streams if s.name in set(names)]


def _check_stream(stream: RecordedStream) -> None:
    where = f"stream {stream.name!r}"
    if stream.channel_format not in CHANNEL_FORMATS:
        raise ValueError(
            f"{where}: channel_format must be one of {CHANNEL_FORMATS}, "
            f"got {stream.channel_format!r}"
        )
    n = len(stream.timestamps)
    if stream.data.shape != (n, len(stream.ch_names)):
        raise ValueError(f"{where}: data must have shape (n_samples, n_channels) = "
                         f"({n}, {len(stream.ch_names)}), got {stream.data.shape}")  # fmt: skip
    if not np.all(np.isfinite(stream.timestamps)):
        raise ValueError(f"{where}: time stamps must be finite; the file is damaged.")
    if not (math.isfinite(stream.srate) and stream.srate >= 0):
        raise ValueError(f"{where}: srate must be >= 0 (0 = irregular), got {stream.srate}")


def _sample_period(streams: list[RecordedStream], times: list[np.ndarray]) -> float:
    """One sample period of the fastest regular stream; else the median marker interval."""
    rates = [s.srate for s in streams if s.srate > 0]
    if rates:
        return 1.0 / max(rates)
    steps = np.concatenate([np.diff(t) for t in times])
    steps = steps[steps > 0]
    return float(np.median(steps)) if steps.size else 1.0


def _channel_entries(desc: dict, n_channels: int) -> list[dict]:
    """Per channel, the original ``<channel>`` entries (locations...) when they match."""
    try:
        channels = desc["channels"][0]["channel"]
    except (KeyError, IndexError, TypeError):
        channels = None
    if isinstance(channels, list) and len(channels) == n_channels:
        return [c if isinstance(c, dict) else {} for c in channels]
    return [{} for _ in range(n_channels)]


def _append(parent: pylsl.XMLElement, key: str, values) -> None:
    """Append pyxdf-style ``values`` (a list of str, dict or None) under ``parent`` as ``key``."""
    for value in values if isinstance(values, list) else [values]:
        if isinstance(value, dict):
            child = parent.append_child(key)
            for sub_key, sub_values in value.items():
                _append(child, sub_key, sub_values)
        elif value is None:
            parent.append_child(key)
        else:
            parent.append_child_value(key, str(value))
