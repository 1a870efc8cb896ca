"""The engine record's logs: list behaviour (length, iteration, indexing, slices) across chunk
borders, the item types consumers compare and serialize, and the memory a long session keeps."""

from __future__ import annotations

import json
import threading
import tracemalloc

import numpy as np
import pytest

from bci.engine.record import (
    COMMAND_FIELDS,
    CommandLog,
    EngineRecord,
    FloatLog,
    RowLog,
    TimedRowLog,
    TimedValueLog,
)
from bci.streams import LATENCY_CHANNELS
from devices.stimulators import StimCommand

CHUNK = 4
"""Small chunks, so a few rows cross several chunk borders."""


def _rows(n: int, width: int = 3) -> np.ndarray:
    return np.arange(n * width, dtype=float).reshape(n, width) + 0.25


@pytest.mark.parametrize("n", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 3 * CHUNK + 2])
def test_rows_read_back_as_appended_across_chunk_borders(n):
    rows = _rows(n)
    log = RowLog(3, chunk_rows=CHUNK)
    log.extend(rows)
    assert len(log) == n and bool(log) == (n > 0)
    np.testing.assert_array_equal(log.array(), rows)
    np.testing.assert_array_equal(np.asarray(log), rows)
    assert log.array().shape == (n, 3)
    listed = list(log)
    assert len(listed) == n and all(np.array_equal(a, b) for a, b in zip(listed, rows, strict=True))
    for i in range(-n, n):
        np.testing.assert_array_equal(log[i], rows[i])
    for key in (slice(None), slice(1, None), slice(None, -1), slice(CHUNK - 1, CHUNK + 2),
                slice(None, None, 3), slice(None, None, -1), slice(n + 5, n + 9)):  # fmt: skip
        got = log[key]
        assert isinstance(got, list) and len(got) == len(rows[key])
        assert all(np.array_equal(a, b) for a, b in zip(got, rows[key], strict=True))
    with pytest.raises(IndexError, match="out of range"):
        log[n]
    with pytest.raises(IndexError, match="out of range"):
        log[-n - 1]


def test_an_empty_log_reads_as_empty():
    for log in (RowLog(6), FloatLog(), TimedRowLog(), TimedValueLog(), CommandLog()):
        assert len(log) == 0 and not log and list(log) == [] and log[:] == []
        with pytest.raises(IndexError):
            log[0]
    assert RowLog(6).array().shape == (0, 6) and RowLog().array().shape == (0, 0)
    assert FloatLog().array().shape == (0,) and CommandLog().column("pulses").shape == (0,)
    assert EngineRecord().latency_ms.array().shape == (0, len(LATENCY_CHANNELS))


def test_rows_are_read_only_and_the_array_is_a_copy():
    log = RowLog(3, chunk_rows=CHUNK)
    log.extend(_rows(6))
    with pytest.raises(ValueError, match="read-only"):
        log[0][0] = 1.0
    with pytest.raises(ValueError, match="read-only"):
        next(iter(log))[0] = 1.0
    copy = log.array()
    copy[:] = 0.0
    assert log[0][0] == 0.25
    with pytest.raises(ValueError, match="copy=False"):
        np.asarray(log, copy=False)
    assert np.asarray(log, dtype=np.float32).dtype == np.float32


def test_width_is_checked_and_taken_from_the_first_row():
    log = RowLog(chunk_rows=CHUNK)
    assert log.width is None
    log.append([1.0, 2.0])
    assert log.width == 2
    with pytest.raises(ValueError, match="row must have 2 values, got 3"):
        log.append([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="row must have 2 values, got 1"):
        log.append([1.0])  # would broadcast into the whole row otherwise
    assert len(log) == 1
    with pytest.raises(ValueError, match="width must be a positive int"):
        RowLog(0)
    with pytest.raises(ValueError, match="chunk_rows must be a positive int"):
        RowLog(2, chunk_rows=0)


def test_chunks_are_allocated_a_chunk_at_a_time():
    log = RowLog(6, chunk_rows=CHUNK)
    assert log.nbytes == 0
    log.append(np.zeros(6))
    assert log.nbytes == CHUNK * 6 * 8
    log.extend(np.zeros((CHUNK - 1, 6)))
    assert log.nbytes == CHUNK * 6 * 8
    log.append(np.zeros(6))
    assert log.nbytes == 2 * CHUNK * 6 * 8
    assert repr(log) == f"RowLog({CHUNK + 1} rows of 6)"


def test_float_log_gives_python_floats():
    log = FloatLog(chunk_rows=CHUNK)
    values = [0.1 * i for i in range(11)]
    log.extend(values)
    assert list(log) == values and log[-1] == values[-1] and log[2:5] == values[2:5]
    assert all(type(v) is float for v in [*log, log[3], *log[::2]])
    np.testing.assert_array_equal(log.array(), values)
    assert np.median(log) == np.median(values)
    assert np.asarray(log, dtype=float).shape == (11,)
    json.dumps(list(log))


def test_timed_rows_give_a_float_time_and_the_row():
    log = TimedRowLog(chunk_rows=CHUNK)
    pairs = [(100.0 + i / 10, np.array([i / 10, 1 - i / 10])) for i in range(9)]
    log.extend(pairs)
    assert log.width == 3
    for (t, row), (t_in, row_in) in zip(log, pairs, strict=True):
        assert type(t) is float and t == t_in
        np.testing.assert_array_equal(row, row_in)
    t, row = log[-1]
    assert t == pairs[-1][0] and row.shape == (2,)
    assert [t for t, _ in log[3:6]] == [t for t, _ in pairs[3:6]]
    table = log.array()
    np.testing.assert_array_equal(table[:, 0], [t for t, _ in pairs])
    np.testing.assert_array_equal(table[:, 1:], np.stack([r for _, r in pairs]))
    with pytest.raises(ValueError, match="row must have 2 values, got 3"):
        log.append((1.0, np.zeros(3)))


def test_timed_values_give_float_pairs():
    log = TimedValueLog(chunk_rows=CHUNK)
    pairs = [(10.0 + i, 0.5 * i) for i in range(7)]
    log.extend(pairs)
    assert list(log) == pairs and log[4] == pairs[4] and log[-2:] == pairs[-2:]
    assert all(type(t) is float and type(v) is float for t, v in log)
    times, values = np.array(log).T
    np.testing.assert_array_equal(times, [t for t, _ in pairs])
    np.testing.assert_array_equal(values, [v for _, v in pairs])


def test_commands_come_back_equal_with_their_types():
    log = CommandLog(chunk_rows=CHUNK)
    commands = [StimCommand(0.1 * i, 10.0 if i % 2 else 0.0, int(i % 3 == 0), 50.0 + i,
                            49.99 + i) for i in range(10)]  # fmt: skip
    log.extend(commands)
    assert list(log) == commands and log[-1] == commands[-1] and log[3:7] == commands[3:7]
    for c in [*log, log[0], *log[1::4]]:
        assert type(c.pulses) is int and type(c.amplitude) is float
        assert type(c.write_time) is float
    assert sum(c.pulses for c in log) == sum(c.pulses for c in commands)
    for name in COMMAND_FIELDS:
        np.testing.assert_array_equal(log.column(name), [getattr(c, name) for c in commands])
    with pytest.raises(ValueError, match="name must be one of"):
        log.column("origin")


def test_a_reader_sees_only_whole_rows_while_the_writer_appends():
    log = RowLog(4, chunk_rows=CHUNK)
    done = threading.Event()

    def write() -> None:
        for i in range(20_000):
            log.append(np.full(4, float(i)))
        done.set()

    writer = threading.Thread(target=write)
    writer.start()
    seen = 0
    while not done.is_set() or seen < len(log):
        rows = log.array()
        assert len(rows) >= seen
        np.testing.assert_array_equal(rows, np.repeat(np.arange(len(rows), dtype=float), 4)
                                      .reshape(-1, 4))  # fmt: skip
        seen = len(rows)
    writer.join()
    assert seen == 20_000


def test_half_an_hour_at_100_decisions_per_second_keeps_under_50_mb():
    """180,000 decisions, each with its latency row, write time, command and probabilities:
    as Python objects they took ~124 MB; as rows they take ~22 MB."""
    n = 180_000
    rng = np.random.default_rng(0)
    proba = rng.random((n, 2))
    stages = rng.random((n, len(LATENCY_CHANNELS)))
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        record = EngineRecord()
        for i in range(n):
            t = 1000.0 + i / 100
            record.decisions.append((t, proba[i]))
            command = StimCommand(float(proba[i, 0]), 10.0, 0, t + 0.003, t)
            record.commands.append(command)
            record.latency_ms.append(stages[i])
            record.latency_times.append(command.write_time)
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(record.commands) == len(record.decisions) == len(record.latency_ms) == n
    assert kept < 50e6, f"{kept / 1e6:.1f} MB"
