"""What the engine did, kept as fixed-width float64 rows in preallocated chunks.

At 100 decisions/s a session keeps a latency row, a command and a decoder output per decision.
Kept as Python objects (an ndarray, a tuple, a dataclass each) they cost ~0.7 kB a decision,
~250 MB an hour; as float64 rows they cost ~0.1 kB. Each log behaves like the list it replaces
(``len``, iteration, indexing, slices, truth value, ``append``/``extend``) and gives its rows
as one array with :meth:`RowLog.array` (or ``np.asarray(log)``).
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from bci.streams import LATENCY_CHANNELS
from devices.stimulators import StimCommand

if TYPE_CHECKING:
    from bci.engine.fitting import FitReport

CHUNK_ROWS = 4096
"""Rows a log allocates at a time (40 s of decisions at 100/s)."""

COMMAND_FIELDS = ("amplitude", "frequency_hz", "pulses", "write_time", "sample_time")
"""The :class:`~devices.stimulators.StimCommand` fields a :class:`CommandLog` keeps, in column
order."""


class RowLog:
    """Rows of ``width`` float64 values, appended one at a time into chunks of ``chunk_rows``.

    Appending writes into the current chunk; a new chunk is allocated every ``chunk_rows`` rows,
    never per row. One thread appends while others read: a reader sees the rows appended
    before it looked (a row counts only once it is written).

    Parameters
    ----------
    width : int | None
        Values per row; None takes it from the first row appended.
    chunk_rows : int
        Rows allocated at a time.

    Notes
    -----
    Items are what the replaced list held; here, read-only views of the rows, shape (width,).
    Subclasses keep other items (floats, (time, row) pairs, commands) in the same rows. A slice
    is a list of items, as a list's slice is; :meth:`array` is the table of every row.
    """

    def __init__(self, width: int | None = None, chunk_rows: int = CHUNK_ROWS) -> None:
        if width is not None and (not isinstance(width, int) or width < 1):
            raise ValueError(f"width must be a positive int or None, got {width!r}")
        if not isinstance(chunk_rows, int) or chunk_rows < 1:
            raise ValueError(f"chunk_rows must be a positive int, got {chunk_rows!r}")
        self._width = width
        self._chunk_rows = chunk_rows
        self._chunks: list[np.ndarray] = []
        self._chunk: np.ndarray | None = None
        self._n = 0

    @property
    def width(self) -> int | None:
        """Values per row (None until the first row, if it was not given)."""
        return self._width

    @property
    def nbytes(self) -> int:
        """Bytes the chunks hold, rows not yet written included."""
        return sum(chunk.nbytes for chunk in self._chunks)

    # appending -----------------------------------------------------------------------------
    def append(self, item: Any) -> None:
        """Append one item (for this class a row of ``width`` values)."""
        n = self._n
        index = n % self._chunk_rows
        if index == 0:
            self._grow(item)
        self._write(self._chunk, index, item)
        self._n = n + 1  # after the write: a reader never sees a row half written

    def extend(self, items: Iterable) -> None:
        """Append every item of ``items`` in order."""
        for item in items:
            self.append(item)

    def _grow(self, item: Any) -> None:
        if self._width is None:
            self._width = self._width_of(item)
        chunk = np.empty((self._chunk_rows, self._width))
        self._chunks.append(chunk)  # listed before any of its rows counts
        self._chunk = chunk

    def _width_of(self, item: Any) -> int:
        """Row width for a log whose first item is ``item``."""
        return len(item)

    def _write(self, chunk: np.ndarray, index: int, item: Any) -> None:
        if len(item) != self._width:  # a shorter row would broadcast into the whole row
            raise ValueError(f"row must have {self._width} values, got {len(item)}")
        chunk[index] = item

    # reading -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self._n

    def __iter__(self) -> Iterator:
        n, size = self._n, self._chunk_rows
        for start in range(0, n, size):
            yield from self._items(self._rows(start // size, min(size, n - start)))

    def __getitem__(self, key: int | slice) -> Any:
        n = self._n
        if isinstance(key, slice):
            return [self._item(self._row(i)) for i in range(*key.indices(n))]
        i = operator.index(key)
        if not -n <= i < n:
            raise IndexError(f"{type(self).__name__} index {i} out of range ({n} rows)")
        return self._item(self._row(i % n))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._n} rows of {self._width})"

    def array(self) -> np.ndarray:
        """A copy of every row, shape (n_rows, width) (width 0 while empty and unknown)."""
        n, size = self._n, self._chunk_rows
        out = np.empty((n, self._width or 0))
        for start in range(0, n, size):
            stop = min(start + size, n)
            out[start:stop] = self._chunks[start // size][: stop - start]
        return out

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        if copy is False:
            raise ValueError(f"{type(self).__name__} rows are copied into one array: copy=False "
                             "cannot be honoured")  # fmt: skip
        out = self.array()
        return out if dtype is None else out.astype(dtype, copy=False)

    def _rows(self, chunk: int, n: int) -> np.ndarray:
        """The first ``n`` rows of chunk ``chunk``, read-only, shape (n, width)."""
        rows = self._chunks[chunk][:n]
        rows.flags.writeable = False
        return rows

    def _row(self, i: int) -> np.ndarray:
        """Row ``i`` (0 ≤ i < len), read-only, shape (width,)."""
        return self._rows(i // self._chunk_rows, i % self._chunk_rows + 1)[-1]

    def _item(self, row: np.ndarray) -> Any:
        """The item a row holds."""
        return row

    def _items(self, rows: np.ndarray) -> Iterator:
        """The items of consecutive rows, shape (n, width)."""
        return iter(rows)


class FloatLog(RowLog):
    """Floats (items: ``float``); :meth:`array` has shape (n,)."""

    def __init__(self, chunk_rows: int = CHUNK_ROWS) -> None:
        super().__init__(1, chunk_rows)

    def _write(self, chunk: np.ndarray, index: int, item: float) -> None:
        chunk[index, 0] = item

    def array(self) -> np.ndarray:
        """A copy of every value, shape (n,)."""
        return super().array()[:, 0]

    def _item(self, row: np.ndarray) -> float:
        return float(row[0])

    def _items(self, rows: np.ndarray) -> Iterator[float]:
        return iter(rows[:, 0].tolist())


class TimedRowLog(RowLog):
    """``(time, row)`` pairs (items: ``(float, read-only array of shape (width - 1,))``);
    :meth:`array` has the times in column 0. The row length is taken from the first pair."""

    def __init__(self, chunk_rows: int = CHUNK_ROWS) -> None:
        super().__init__(None, chunk_rows)

    def _width_of(self, item: tuple[float, np.ndarray]) -> int:
        return 1 + len(item[1])

    def _write(self, chunk: np.ndarray, index: int, item: tuple[float, np.ndarray]) -> None:
        time, row = item
        if len(row) != self._width - 1:
            raise ValueError(f"row must have {self._width - 1} values, got {len(row)}")
        chunk[index, 0] = time
        chunk[index, 1:] = row

    def _item(self, row: np.ndarray) -> tuple[float, np.ndarray]:
        return float(row[0]), row[1:]

    def _items(self, rows: np.ndarray) -> Iterator[tuple[float, np.ndarray]]:
        return zip(rows[:, 0].tolist(), rows[:, 1:], strict=True)


class TimedValueLog(RowLog):
    """``(time, value)`` pairs of floats (items: ``(float, float)``); :meth:`array` has shape
    (n, 2)."""

    def __init__(self, chunk_rows: int = CHUNK_ROWS) -> None:
        super().__init__(2, chunk_rows)

    def _write(self, chunk: np.ndarray, index: int, item: tuple[float, float]) -> None:
        chunk[index, 0], chunk[index, 1] = item

    def _item(self, row: np.ndarray) -> tuple[float, float]:
        return float(row[0]), float(row[1])

    def _items(self, rows: np.ndarray) -> Iterator[tuple[float, float]]:
        return map(tuple, rows.tolist())


class CommandLog(RowLog):
    """Stimulator commands, one row of ``COMMAND_FIELDS`` each (items: a
    :class:`~devices.stimulators.StimCommand` rebuilt on reading, equal to the one appended)."""

    def __init__(self, chunk_rows: int = CHUNK_ROWS) -> None:
        super().__init__(len(COMMAND_FIELDS), chunk_rows)

    def _write(self, chunk: np.ndarray, index: int, item: StimCommand) -> None:
        row = chunk[index]
        row[0], row[1], row[2] = item.amplitude, item.frequency_hz, item.pulses
        row[3], row[4] = item.write_time, item.sample_time

    def column(self, name: str) -> np.ndarray:
        """A copy of one field of every command, shape (n,) (``pulses`` as float)."""
        if name not in COMMAND_FIELDS:
            raise ValueError(f"name must be one of {COMMAND_FIELDS}, got {name!r}")
        return self.array()[:, COMMAND_FIELDS.index(name)]

    def _item(self, row: np.ndarray) -> StimCommand:
        return _command(*row.tolist())

    def _items(self, rows: np.ndarray) -> Iterator[StimCommand]:
        return (_command(*values) for values in rows.tolist())


def _command(amplitude: float, frequency_hz: float, pulses: float, write_time: float,
             sample_time: float) -> StimCommand:  # fmt: skip
    return StimCommand(amplitude, frequency_hz, int(pulses), write_time, sample_time)


@dataclass
class EngineRecord:
    """What the engine did, for the summary and the tests. Grows at the decision rate."""

    cues: list[tuple[float, str, int]] = field(default_factory=list)
    """(time, label, block index) of every cue."""
    decisions: TimedRowLog = field(default_factory=TimedRowLog)
    """(newest-sample time, probabilities) of every closed-loop decision."""
    commands: CommandLog = field(default_factory=CommandLog)
    """Every :class:`~devices.stimulators.StimCommand` written."""
    latency_ms: RowLog = field(default_factory=lambda: RowLog(len(LATENCY_CHANNELS)))
    """Per-decision stage durations and end-to-end latency, ms (``LATENCY_CHANNELS`` order)."""
    latency_times: FloatLog = field(default_factory=FloatLog)
    """When each ``latency_ms`` row's command was written (``pylsl.local_clock()``), s."""
    events: list[dict] = field(default_factory=list)
    """Every event published."""
    blocks: list[tuple[int, str, float, float]] = field(default_factory=list)
    """(index, kind, start, stop) of every block run."""
    fit: FitReport | None = None
    """How the decoder was fitted on the calibration block."""
    biomarker: TimedValueLog = field(default_factory=TimedValueLog)
    """(newest-sample time, value) of every closed-loop biomarker reading (biomarker input)."""
    pulse_latency_ms: FloatLog = field(default_factory=FloatLog)
    """Newest sample → write of every pulse the phase trigger fired, ms."""
    start_time: float = float("nan")
    stop_time: float = float("nan")
