"""64 channels at 1 kHz for over a minute from the virtual-subject process: nothing dropped or
duplicated, proven by its sample-index channel."""

import subprocess
import sys

import numpy as np
import pylsl
import pytest

from bci.acquire import Inlet, StreamQuery, resolve_streams
from bci.streams import SAMPLE_INDEX_CHANNEL, stream_names

SECONDS = 61.0


@pytest.mark.slow
def test_64ch_1khz_for_a_minute_without_drops_or_duplicates(unique_name):
    command = [sys.executable, "-m", "bci", "simulate", "--prefix", unique_name, "--channels",
               "64", "--srate", "1000", "--no-fnirs", "--no-listen", "--sample-index"]  # fmt: skip
    source = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        info = resolve_streams([StreamQuery(name=stream_names(unique_name)["eeg"])], 30)[0]
        with Inlet(info) as inlet:
            assert inlet.n_channels == 65 and inlet.sfreq == 1000.0
            index_col = inlet.ch_names.index(SAMPLE_INDEX_CHANNEL)
            first = last = None
            n_received = 0
            start = pylsl.local_clock()
            while pylsl.local_clock() - start < SECONDS:
                data, _ = inlet.pull(timeout_s=0.05)
                if not len(data):
                    continue
                index = data[:, index_col].astype(np.int64)
                expected_start = index[0] if last is None else last + 1
                # every sample exactly once, in order, across and within chunks
                assert index[0] == expected_start, f"jump from {last} to {index[0]}"
                assert np.all(np.diff(index) == 1)
                first = index[0] if first is None else first
                last = index[-1]
                n_received += len(index)
            assert n_received == last - first + 1
            assert n_received >= 0.98 * SECONDS * 1000
            assert inlet.gaps == []
    finally:
        source.terminate()
        source.wait(timeout=10)
    assert source.returncode in (0, -15), source.stderr.read().decode()[-2000:]
