"""Generation cost: 64 channels at 1 kHz in 10 ms chunks must take well under 10 % of a core."""

from __future__ import annotations

import time

from devices.virtual_subject import EegSettings, SubjectParams, VirtualSubject


def test_eeg_generation_cost_64_channels_1khz(record_property, capsys):
    subject = VirtualSubject(SubjectParams.from_seed(0), EegSettings(n_channels=64, sfreq=1000.0))
    subject.cue("right", time=1.0)
    subject.stimulate(1.0, 10.0, modality="tacs", anode="Oz", cathode="Cz", time=2.0)
    seconds = 20
    subject.eeg(10)  # first call warms caches
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(seconds * 100):
        subject.eeg(10)
        subject.fnirs(0)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    fraction = cpu / seconds
    record_property("eeg_64ch_1khz_cpu_fraction", fraction)
    with capsys.disabled():
        print(f"\n64 ch @ 1 kHz, 10 ms chunks: {100 * fraction:.1f} % of one core "
              f"({1e3 * wall / (seconds * 100):.2f} ms wall per chunk)")  # fmt: skip
    assert fraction < 0.10
