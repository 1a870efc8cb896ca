"""Inlets over the real LSL loopback transport."""

import numpy as np
import pylsl
import pytest

from bci.acquire import (
    Inlet,
    InletSettings,
    MarkerInlet,
    StreamNotFoundError,
    StreamQuery,
    resolve_streams,
)
from tests.conftest import wait_for


def test_resolve_names_what_was_missing_and_what_was_found(index_source, unique_name):
    source = index_source()
    with pytest.raises(StreamNotFoundError) as err:
        resolve_streams([StreamQuery(name=f"{unique_name}-absent")], timeout_s=0.5)
    message = str(err.value)
    assert (
        f"{unique_name}-absent" in message and source.name in message and "bci simulate" in message
    )
    info = resolve_streams([StreamQuery(name=source.name, type="EEG")], timeout_s=5)[0]
    assert info.source_id() == source.name


def test_query_needs_a_field():
    with pytest.raises(ValueError, match="at least one"):
        StreamQuery()


def test_inlet_pulls_every_sample_into_its_ring(index_source):
    source = index_source(n_channels=3, sfreq=500.0)
    info = resolve_streams([StreamQuery(name=source.name)], timeout_s=5)[0]
    with Inlet(info, InletSettings(buffer_s=2.0)) as inlet:
        assert inlet.ch_names[-1] == "SampleIndex" and inlet.sfreq == 500.0
        indices: list[np.ndarray] = []

        def got_enough() -> bool:
            data, _ = inlet.pull(timeout_s=0.01)
            indices.append(data[:, -1].copy())
            return inlet.n_samples >= 500

        assert wait_for(got_enough, timeout_s=10)
        index = np.concatenate(indices)
        np.testing.assert_array_equal(np.diff(index), 1)
        held, times = inlet.buffer.latest(len(inlet.buffer))
        np.testing.assert_array_equal(held[-len(index) :, -1], index[-len(held) :])
        assert abs(times[-1] - pylsl.local_clock()) < 0.5  # on our clock
        assert inlet.gaps == [] and abs(inlet.clock_offset()) < 0.01
        assert wait_for(lambda: inlet.discard_pending() > 0, timeout_s=5)
        assert inlet.n_samples == 0 and len(inlet.buffer) == 0


def test_inlet_wrong_state_and_string_stream(index_source, unique_name):
    source = index_source()
    info = resolve_streams([StreamQuery(name=source.name)], timeout_s=5)[0]
    inlet = Inlet(info)
    with pytest.raises(RuntimeError, match="call connect"):
        inlet.pull()
    inlet.connect()
    with pytest.raises(RuntimeError, match="already connected"):
        inlet.connect()
    inlet.disconnect()
    inlet.disconnect()
    with pytest.raises(TypeError, match="use Inlet"):
        MarkerInlet(info)


def test_marker_inlet_receives_strings_on_the_local_clock(unique_name):
    info = pylsl.StreamInfo(unique_name, "Markers", 1, 0, "string", unique_name)
    outlet = pylsl.StreamOutlet(info)
    resolved = resolve_streams([StreamQuery(name=unique_name, type="Markers")], timeout_s=5)[0]
    with pytest.raises(TypeError, match="use MarkerInlet"):
        Inlet(resolved)
    with MarkerInlet(resolved) as inlet:
        assert wait_for(outlet.have_consumers, 5)
        stamp = pylsl.local_clock()
        outlet.push_sample(["left"], stamp)
        received: list = []
        assert wait_for(lambda: received.extend(inlet.pull()) or received, timeout_s=5)
        assert received[0][1] == "left" and abs(received[0][0] - stamp) < 1e-3


def test_two_inlets_share_one_clock(index_source):
    fast, slow = index_source(sfreq=1000.0), index_source(sfreq=100.0)
    infos = resolve_streams([StreamQuery(name=fast.name), StreamQuery(name=slow.name)], 5)
    inlets = [Inlet(info).connect() for info in infos]

    def caught_up() -> bool:
        for inlet in inlets:
            while inlet.pull(0.0)[1].size:
                pass
        now = pylsl.local_clock()
        return all(inlet.n_samples > 50 and now - inlet.newest_time < 0.05 for inlet in inlets)

    try:
        # both sources stamp samples with their nominal time on the sender's clock; corrected onto
        # ours, the newest samples of a 1 kHz and a 100 Hz stream agree within a few periods
        assert wait_for(caught_up, 10, poll_s=0.001)
        assert abs(inlets[0].newest_time - inlets[1].newest_time) < 0.05
    finally:
        for inlet in inlets:
            inlet.disconnect()


def test_outlet_that_disappears_and_returns_is_recovered_with_a_gap(index_source, unique_name):
    source = index_source(sfreq=250.0, name=f"{unique_name}-recover")
    info = resolve_streams([StreamQuery(name=source.name)], timeout_s=5)[0]
    with Inlet(info) as inlet:
        assert wait_for(lambda: inlet.pull(0.01)[1].size >= 0 and inlet.n_samples > 50, 10)
        source.stop()
        assert wait_for(
            lambda: inlet.pull(0.01)[1].size == 0 and inlet.seconds_since_data() > 0.3, 5
        )
        source.start()  # same name and source id: liblsl reconnects the inlet
        assert wait_for(lambda: inlet.pull(0.01)[1].size >= 0 and len(inlet.gaps) == 1, 20)
        gap = inlet.new_gaps()[0]
        assert gap.duration_s > 0.3 and gap.missing > 50
        assert inlet.new_gaps() == []


def test_two_streams_with_one_name_are_refused_until_a_source_id_picks_one(unique_name):
    outlets = [
        pylsl.StreamOutlet(pylsl.StreamInfo(unique_name, "EEG", 1, 100, "float32", f"rig{i}"))
        for i in (1, 2)
    ]
    with pytest.raises(StreamNotFoundError, match="2 LSL streams match") as err:
        resolve_streams([StreamQuery(name=unique_name)], timeout_s=3)
    assert "rig1" in str(err.value) and "rig2" in str(err.value)
    info = resolve_streams([StreamQuery(name=unique_name, source_id="rig2")], timeout_s=3)[0]
    assert info.source_id() == "rig2"
    del outlets
