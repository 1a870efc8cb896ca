"""SessionDecoder: the engine's fit block (windows cut from the ring, fit on a worker thread)
and its decisions, without a session around them."""

from __future__ import annotations

import numpy as np
import pytest

from bci.acquire import RingBuffer
from bci.engine.decoding import SessionDecoder
from bci.engine.fitting import session_info
from bci.protocol import load_protocol
from tests.conftest import wait_for

SFREQ = 100.0


@pytest.fixture
def protocol():
    protocol, _ = load_protocol("demo", ["decoder.model=", "decoder.kind=csp"])
    return protocol


def _ring(protocol, seconds: float = 80.0) -> RingBuffer:
    n_picks = len(protocol.preprocessing.picks)
    times = np.arange(0, seconds, 1 / SFREQ)
    ring = RingBuffer(len(times), n_picks)
    ring.write(np.random.default_rng(3).standard_normal((len(times), n_picks)), times)
    return ring


def test_the_fit_runs_beside_the_caller_and_the_decoder_then_decides(protocol):
    slot = SessionDecoder(protocol, session_info(protocol, SFREQ))
    ring = _ring(protocol)
    cues = [(5.0 + 5 * i, ("left", "right")[i % 2]) for i in range(12)]
    assert slot.decoder is None and not slot.fitting
    with pytest.raises(RuntimeError, match="start_fit"):
        slot.finished_fit()
    slot.start_fit(ring, None, cues, SFREQ, keep_model=lambda decoder: {"kind": decoder.kind})
    assert slot.fitting
    with pytest.raises(RuntimeError, match="finished_fit"):
        slot.start_fit(ring, None, cues, SFREQ)
    jobs = []
    assert wait_for(lambda: jobs.append(slot.finished_fit()) or jobs[-1] is not None, 60)
    decoder, report = jobs[-1].result()
    assert slot.decoder is decoder and not slot.fitting
    assert jobs[-1].kept == {"kind": "csp"}  # kept on the worker, after the fit
    assert report.kind == "csp" and report.n_trials == 12
    window, _ = ring.latest(round(protocol.preprocessing.window_s * SFREQ))
    proba = slot.predict(window, None)
    assert proba.shape == (2,) and np.isclose(proba.sum(), 1.0)


def test_calibration_without_both_classes_is_refused_before_a_fit_starts(protocol):
    slot = SessionDecoder(protocol, session_info(protocol, SFREQ))
    with pytest.raises(RuntimeError, match="both classes"):  # cut on the caller's thread
        slot.start_fit(_ring(protocol), None, [(5.0, "left"), (10.0, "left")], SFREQ)
    assert not slot.fitting
