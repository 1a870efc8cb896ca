"""Shared fixtures: unique LSL names and a paced test source on the real loopback transport."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator

import numpy as np
import pylsl
import pytest


@pytest.fixture(autouse=True, scope="session")
def _no_site_file_and_a_test_ledger(tmp_path_factory) -> Iterator[None]:
    """No test reads /etc/neuroloop or writes the home folder's dose ledger: the site layer is
    the hard ceilings only, and the ledger is a temporary folder. Set in ``os.environ`` so the
    sessions and commands tests start as subprocesses inherit it."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NEUROLOOP_SITE_LIMITS", "none")
        patch.setenv("NEUROLOOP_LEDGER_DIR", str(tmp_path_factory.mktemp("ledger")))
        yield


@pytest.fixture
def unique_name() -> str:
    """A stream-name prefix no other test (or test run) uses."""
    return f"test-{uuid.uuid4().hex[:10]}"


def wait_for(condition: Callable[[], bool], timeout_s: float, poll_s: float = 0.005) -> bool:
    """Poll ``condition`` until it is true or the deadline passes; returns its last value."""
    deadline = pylsl.local_clock() + timeout_s
    while pylsl.local_clock() < deadline:
        if condition():
            return True
        threading.Event().wait(poll_s)
    return condition()


class IndexSource:
    """A regular LSL outlet whose last channel is the sample index, paced by target time."""

    def __init__(self, name: str, n_channels: int, sfreq: float, source_id: str | None = None):
        self.name, self.sfreq, self.n_channels = name, sfreq, n_channels
        info = pylsl.StreamInfo(name, "EEG", n_channels + 1, sfreq, "float32", source_id or name)
        info.set_channel_labels([f"EEG{i:03d}" for i in range(n_channels)] + ["SampleIndex"])
        self._info = info
        self.sent = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> IndexSource:
        self.outlet = pylsl.StreamOutlet(self._info, chunk_size=0, max_buffered=60)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        start = pylsl.local_clock()
        sent_at_start = self.sent
        rng = np.random.default_rng(0)
        while not self._stop.is_set():
            due = int((pylsl.local_clock() - start) * self.sfreq) - (self.sent - sent_at_start)
            if due > 0:
                chunk = rng.standard_normal((due, self.n_channels + 1)).astype(np.float32)
                chunk[:, -1] = np.arange(self.sent, self.sent + due)
                stamp = start + (self.sent - sent_at_start + due - 1) / self.sfreq
                self.outlet.push_chunk(chunk, stamp)
                self.sent += due
            self._stop.wait(0.002)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        del self.outlet


@pytest.fixture
def index_source(unique_name) -> Iterator[Callable[..., IndexSource]]:
    """Factory of running :class:`IndexSource` outlets, stopped after the test."""
    made: list[IndexSource] = []

    def make(n_channels: int = 4, sfreq: float = 250.0, name: str | None = None) -> IndexSource:
        source = IndexSource(name or f"{unique_name}-{len(made)}", n_channels, sfreq).start()
        made.append(source)
        return source

    yield make
    for source in made:
        if source._thread is not None and source._thread.is_alive():
            source.stop()
