"""The recording outlives the engine: ``bci run`` killed with SIGKILL at a random moment of its
closed loop leaves an XDF that pyxdf loads, holding everything up to ≤ 1 s before the kill, and
no process of the session keeps running."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys

import numpy as np
import psutil
import pylsl
import pytest
import pyxdf

from bci.replay.offline import replay_offline
from bci.streams import SAMPLE_INDEX_CHANNEL, stream_names
from tests.conftest import wait_for

MAX_LOST_S = 1.0


def _session_processes(prefix: str) -> list[psutil.Process]:
    """The virtual subject, the recorder guards and LabRecorderCLI of a session."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if prefix in cmdline and process.pid != os.getpid():
            found.append(process)
    return found


@pytest.mark.slow
def test_a_session_killed_at_a_random_moment_leaves_a_loadable_xdf(unique_name, tmp_path):
    seed = random.randrange(1_000_000)
    delay = random.Random(seed).uniform(0.5, 5.0)
    print(f"kill {delay:.2f} s into the closed loop (seed {seed})")
    names = stream_names(unique_name)
    command = [
        sys.executable, "-m", "bci", "run", "beta_adaptive", "--out", str(tmp_path),
        "--set", f"session.prefix={unique_name}", "--set", "control.address=tcp://127.0.0.1:0",
        "--set", "source.sample_index=true", "--set", "blocks.0.duration_s=3",
        "--set", "blocks.1.duration_s=60",
    ]  # fmt: skip
    engine = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    try:
        events = pylsl.resolve_byprop("name", names["events"], 1, 60)
        assert events, "the session never published its events stream"
        inlet = pylsl.StreamInlet(events[0])
        seen: list[tuple[float, dict]] = []

        def pull() -> None:
            sample, stamp = inlet.pull_sample(timeout=0.05)
            if sample:
                seen.append((stamp, json.loads(sample[0])))

        def closed_loop_started() -> bool:
            pull()
            return any(e.get("block") == "closed_loop" for _, e in seen)

        assert wait_for(closed_loop_started, 60), f"no closed-loop block: {seen[-3:]}"
        deadline = pylsl.local_clock() + delay
        while pylsl.local_clock() < deadline:
            pull()
        killed_at = pylsl.local_clock()
        os.killpg(engine.pid, signal.SIGKILL)
        engine.wait()
        # the recorder closes the file on its own, and the virtual subject stops
        assert wait_for(lambda: not _session_processes(unique_name), 30), [
            p.info["cmdline"] for p in _session_processes(unique_name)
        ]
    finally:
        if engine.poll() is None:
            os.killpg(engine.pid, signal.SIGKILL)
            engine.wait()
        for process in _session_processes(unique_name):
            process.kill()
    streams, _ = pyxdf.load_xdf(str(tmp_path / "beta_adaptive.xdf"))
    by_name = {s["info"]["name"][0]: s for s in streams}
    eeg, stim = by_name[names["eeg"]], by_name[names["stim"]]
    print(f"newest recorded before the kill: EEG {killed_at - eeg['time_stamps'][-1]:.3f} s, "
          f"stimulation {killed_at - stim['time_stamps'][-1]:.3f} s")  # fmt: skip
    assert killed_at - eeg["time_stamps"][-1] <= MAX_LOST_S
    labels = [c["label"][0] for c in eeg["info"]["desc"][0]["channels"][0]["channel"]]
    index = np.asarray(eeg["time_series"])[:, labels.index(SAMPLE_INDEX_CHANNEL)]
    assert np.all(np.diff(index) == 1), "samples are missing inside the recording"
    # a decision (and its command) every 0.1 s: the newest is at most a second old
    assert killed_at - stim["time_stamps"][-1] <= MAX_LOST_S
    # events are sparse: every one published more than a second before the kill is there
    recorded = {json.loads(e[0])["seq"] for e in by_name[names["events"]]["time_series"]}
    published = {e["seq"] for stamp, e in seen if stamp < killed_at - MAX_LOST_S}
    assert published and published <= recorded
    # LabRecorder closed the file properly: every stream has its footer
    assert all(s["footer"] for s in streams)
    # and what the killed session did replays offline to the same commands
    replayed = replay_offline(tmp_path / "beta_adaptive.xdf", progress=False)
    assert replayed["reproduces"] and replayed["n_decisions"] > 0
    assert replayed["n_commands"] == replayed["recorded_commands"]
    assert replayed["stim_max_abs_diff"] <= 1e-6
