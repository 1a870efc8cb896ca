"""FiniteInput: the filters read only finite samples; a NaN/inf burst is followed across chunks
and reported once it starts and once it ends, as a gap is."""

from __future__ import annotations

import numpy as np
import pytest

from bci.acquire import Gap
from bci.engine.finite import FiniteInput


def _chunk(start: int, n: int, n_channels: int = 3) -> tuple[np.ndarray, np.ndarray]:
    data = np.arange(start, start + n, dtype=float)[:, None] * np.ones(n_channels)
    return data, np.arange(start, start + n) / 100.0


def _indices(parts) -> list[int]:
    return [int(v) for data, _ in parts for v in data[:, 0]]


def test_a_finite_chunk_passes_whole():
    finite = FiniteInput(slice(None), "eeg")
    data, times = _chunk(0, 10)
    split = finite(data, times, -np.inf)
    assert len(split.parts) == 1 and split.parts[0][0] is data and split.parts[0][1] is times
    assert not split.started and split.ended is None and not finite.in_burst
    split = finite(data[:0], times[:0], -np.inf)  # an empty chunk changes nothing
    assert not split.started and split.ended is None and not finite.in_burst


def test_a_burst_inside_one_chunk_splits_it_and_ends_there():
    finite = FiniteInput(slice(None), "eeg")
    data, times = _chunk(100, 10)
    data[3:6, 1] = np.nan
    data[4, 0] = np.inf
    split = finite(data, times, newest_read=0.99)
    assert _indices(split.parts) == [100, 101, 102, 106, 107, 108, 109]
    assert split.started and not finite.in_burst
    assert split.ended == Gap("eeg", start=times[2], stop=times[6], missing=3)
    assert split.ended.duration_s == pytest.approx(0.04)


def test_a_burst_across_chunks_is_one_burst():
    finite = FiniteInput(slice(None), "eeg")
    first, first_times = _chunk(0, 5)
    first[2:] = np.nan
    split = finite(first, first_times, newest_read=-0.01)
    assert _indices(split.parts) == [0, 1] and split.started and split.ended is None
    assert finite.in_burst
    middle, middle_times = _chunk(5, 5)
    middle[:] = np.inf
    split = finite(middle, middle_times, newest_read=first_times[1])
    assert split.parts == [] and not split.started and split.ended is None
    last, last_times = _chunk(10, 5)
    last[:2] = np.nan
    split = finite(last, last_times, newest_read=first_times[1])
    assert _indices(split.parts) == [12, 13, 14] and not split.started
    assert split.ended == Gap("eeg", start=first_times[1], stop=last_times[2], missing=10)
    assert not finite.in_burst


def test_a_burst_at_a_chunk_start_begins_at_the_newest_sample_read():
    finite = FiniteInput(slice(None), "eeg")
    data, times = _chunk(20, 4)
    data[0] = np.nan
    split = finite(data, times, newest_read=0.19)
    assert split.ended == Gap("eeg", start=0.19, stop=times[1], missing=1)
    split = finite(data, times, newest_read=-np.inf)  # nothing read yet: its own first sample
    assert split.ended == Gap("eeg", start=times[0], stop=times[1], missing=1)


def test_a_burst_ending_exactly_at_a_chunk_end_ends_with_the_next_chunk():
    finite = FiniteInput(slice(None), "eeg")
    data, times = _chunk(0, 4)
    data[2:] = np.nan
    assert finite(data, times, -np.inf).ended is None
    following, following_times = _chunk(4, 3)
    split = finite(following, following_times, newest_read=times[1])
    assert _indices(split.parts) == [4, 5, 6]
    assert split.ended == Gap("eeg", start=times[1], stop=following_times[0], missing=2)


def test_only_the_columns_read_are_checked():
    finite = FiniteInput([0, 2], "eeg")
    data, times = _chunk(0, 6)
    data[:, 1] = np.nan  # a column the filters never read
    split = finite(data, times, -np.inf)
    assert _indices(split.parts) == list(range(6)) and not split.started
    data[3, 2] = np.nan
    assert _indices(finite(data, times, -np.inf).parts) == [0, 1, 2, 4, 5]
