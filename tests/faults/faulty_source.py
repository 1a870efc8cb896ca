"""A virtual subject's EEG outlet, as a process, that corrupts its own stream on request.

``python -m tests.faults.faulty_source --prefix P`` publishes the same stream as ``bci simulate
--prefix P --no-fnirs --no-listen`` (name, source id, channel metadata, the subject's signal,
paced by target time). Lines on its standard input inject a fault from the next chunk on:

``jump SECONDS``
    every later timestamp is shifted by SECONDS (negative: backward), as when the source host's
    clock is stepped;
``nan SECONDS`` / ``inf SECONDS``
    the next SECONDS of samples carry NaN (or +inf) on every channel, as a broken amplifier
    driver does.

Each fault is acknowledged on standard output (``ok jump 3.0``) once it is in the stream, with
the timestamp of its first affected sample; the end of standard input stops the source.
"""

from __future__ import annotations

import argparse
import math
import sys
import threading

import numpy as np
import pylsl

from devices.virtual_subject import EegSettings, SubjectParams, VirtualSubject
from devices.virtual_subject.lsl_info import eeg_stream_info

_CHUNK_S = 0.01


class FaultSchedule:
    """Faults asked for on stdin, taken by the pushing loop at its next chunk."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: list[tuple[str, float]] = []
        self.ended = threading.Event()

    def read(self, lines) -> None:
        for line in lines:
            kind, value = line.split()
            with self._lock:
                self._pending.append((kind, float(value)))
        self.ended.set()

    def take(self) -> list[tuple[str, float]]:
        with self._lock:
            taken, self._pending = self._pending, []
        return taken


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--srate", type=float, default=1000.0)
    args = parser.parse_args(argv)
    eeg = EegSettings(n_channels=args.channels, sfreq=args.srate)
    subject = VirtualSubject(SubjectParams.from_seed(args.seed), eeg, None)
    outlet = pylsl.StreamOutlet(eeg_stream_info(
        args.prefix, args.seed, subject.eeg_channel_names, args.srate, 50.0
    ))  # fmt: skip
    schedule = FaultSchedule()
    threading.Thread(target=schedule.read, args=(sys.stdin,), daemon=True).start()
    start = pylsl.local_clock()
    sent, shift_s, corrupt_until, corrupt_value = 0, 0.0, -1, 0.0
    while not schedule.ended.is_set():
        acknowledge = []
        for kind, value in schedule.take():
            if kind == "jump":
                shift_s += value
            else:  # nan, inf: from the next sample for ``value`` seconds
                corrupt_until = sent + round(value * args.srate)
                corrupt_value = math.nan if kind == "nan" else math.inf
            acknowledge.append(f"ok {kind} {value:g} {start + shift_s + sent / args.srate:.6f}")
        due = math.floor((pylsl.local_clock() - start) * args.srate) + 1
        if due > sent:
            data = subject.eeg(due - sent).astype(np.float32)
            bad = min(max(corrupt_until - sent, 0), len(data))
            data[:bad] = corrupt_value
            newest = start + shift_s + (due - 1) / args.srate
            outlet.push_chunk(data, timestamp=newest)
            sent = due
        for line in acknowledge:
            print(line, flush=True)
        wake = start + (math.floor((pylsl.local_clock() - start) / _CHUNK_S) + 1) * _CHUNK_S
        schedule.ended.wait(max(0.0, wake - pylsl.local_clock()))


if __name__ == "__main__":
    main()
