import numpy as np
import pytest

from bci.acquire import RingBuffer


def test_ring_keeps_newest_samples_in_order_across_wraps():
    ring = RingBuffer(capacity=10, n_channels=2)
    values = np.arange(37, dtype=float)
    for start in range(0, 37, 7):  # chunks of 7 wrap the 10-sample ring repeatedly
        chunk = values[start : start + 7]
        ring.write(np.column_stack([chunk, -chunk]), chunk)
    data, times = ring.latest(10)
    np.testing.assert_array_equal(times, values[-10:])
    np.testing.assert_array_equal(data[:, 1], -values[-10:])
    assert ring.n_written == 37 and len(ring) == 10


def test_ring_chunk_larger_than_capacity_and_between():
    ring = RingBuffer(capacity=5, n_channels=1)
    t = np.arange(12.0)
    ring.write(t[:, None], t)
    assert list(ring.latest(5)[1]) == [7, 8, 9, 10, 11]
    data, times = ring.between(8.0, 10.0)
    assert list(times) == [8, 9] and data.shape == (2, 1)


def test_ring_rejects_bad_shapes_and_requests():
    ring = RingBuffer(capacity=5, n_channels=2)
    with pytest.raises(ValueError, match="shape"):
        ring.write(np.zeros((3, 3)), np.zeros(3))
    with pytest.raises(ValueError, match="between 0 and"):
        ring.latest(1)
    with pytest.raises(ValueError, match="capacity"):
        RingBuffer(0, 1)
    ring.write(np.zeros((0, 2)), np.zeros(0))
    assert ring.n_written == 0
    ring.write(np.ones((2, 2)), np.ones(2))
    ring.clear()
    assert len(ring) == 0
