"""XDF files read with pyxdf, made safe against truncation and corruption.

An XDF 1.0 file (https://github.com/sccn/xdf/wiki/Specifications) is the magic ``XDF:`` and
then length-prefixed chunks: ``[NumLengthBytes: 1, 4 or 8][Length][Tag: uint16][Content]``.
pyxdf reads a file that ends inside a chunk in ways that differ by where the cut falls: it
raises (cut in a header or clock offset), drops the chunk with a logged error, or, cut in the
last sample of a chunk, fills that sample with stale bytes. So the chunk framing is walked
first (cheap: a few bytes per chunk are read, the rest is skipped), and pyxdf then reads only
the bytes up to the last complete chunk. A chunk whose framing is wrong (a length field of a
size XDF does not have, an unknown tag, samples for a stream never declared, a Samples chunk
too small or too large for its sample count at the header's channel count and format), or a
Samples chunk that pyxdf's reading does not end exactly at, is corruption, refused with the
byte offset where the chunk starts.

Channel labels that disagree with the header (a ``<desc><channels>`` list longer or shorter
than ``channel_count``) are a warning and the channels get generic names ``ch1``, …: the samples
are intact and only the labels are in doubt, so a user loses nothing by reading on. Sample
rows that disagree with ``channel_count`` are corruption: pyxdf cannot read past them in step.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import re
import tempfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO
from xml.etree.ElementTree import ParseError, fromstring

import numpy as np

from bci.replay.recording import NoStreamsError, RecordedStream, RecordingError

_CLOCK_SEGMENTS = re.compile(r"Stream (\d+): Segments and clock-segments differ")

TAGS = {1: "FileHeader", 2: "StreamHeader", 3: "Samples", 4: "ClockOffset", 5: "Boundary",
        6: "StreamFooter"}  # fmt: skip
"""XDF chunk tags."""

VALUE_BYTES = {"float32": 4, "double64": 8, "int8": 1, "int16": 2, "int32": 4, "int64": 8,
               "string": 0}  # fmt: skip
"""Bytes per value of each LSL channel format (strings are length-prefixed)."""


@dataclass
class StreamLayout:
    """What the chunks of one stream declare."""

    name: str
    channel_format: str
    n_channels: int
    n_samples: int = 0
    """Samples declared by its complete sample chunks."""
    n_offsets: int = 0
    """Clock offsets measured by the recorder."""
    footer: bool = False


@dataclass
class Layout:
    """The chunk framing of an XDF file."""

    end: int
    """Byte offset after the last complete chunk."""
    size: int
    """Readable bytes in the file (decompressed, for ``.xdfz``)."""
    streams: dict[int, StreamLayout] = field(default_factory=dict)
    sample_chunks: list[tuple[int, int]] = field(default_factory=list)
    """(first byte, byte after the last) of each Samples chunk, in file order."""

    @property
    def truncated(self) -> bool:
        """Whether the file ends inside a chunk."""
        return self.end < self.size


class _Corrupt(Exception):
    def __init__(self, offset: int, what: str) -> None:
        super().__init__(what)
        self.offset, self.what = offset, what


def _scan_chunks(file, size: int) -> Layout:
    """Walk the chunks of an XDF file from its start, after the magic has been checked.

    Parameters
    ----------
    file : binary file object, positioned after ``XDF:``
    size : int
        Readable bytes in the file.

    Raises
    ------
    _Corrupt
        At the first chunk whose framing is wrong (callers turn it into a RecordingError).
    """
    layout = Layout(4, size)
    streams = layout.streams
    pos = 4
    while pos < size:
        head = file.read(1)
        n_len = head[0] if head else 0
        if n_len not in (1, 4, 8):
            raise _Corrupt(pos, f"a chunk length field of {n_len} bytes (XDF has 1, 4 or 8)")
        prefix = file.read(n_len + 2)
        if len(prefix) < n_len + 2:
            break
        length = int.from_bytes(prefix[:n_len], "little")
        tag = int.from_bytes(prefix[n_len:], "little")
        if length < 2 or tag not in TAGS:
            raise _Corrupt(pos, f"a chunk of unknown tag {tag} (length {length})")
        end = pos + 1 + n_len + length
        if end > size:
            break
        content = length - 2
        if tag in (2, 3, 4, 6):
            if content < 4:
                raise _Corrupt(pos, f"a {TAGS[tag]} chunk too short to name its stream")
            sid = int.from_bytes(file.read(4), "little")
            content -= 4
            if (tag == 2) == (sid in streams):
                raise _Corrupt(pos, f"a {TAGS[tag]} chunk for stream id {sid}, " + (
                    "declared twice" if tag == 2 else "whose header has not come yet"))  # fmt: skip
        if tag == 2:
            streams[sid] = _stream_layout(file.read(content), pos)
        elif tag == 3:
            _count_samples(file, streams[sid], content, pos)
            layout.sample_chunks.append((pos, end))
        elif tag == 4:
            if content != 16:
                raise _Corrupt(pos, f"a ClockOffset chunk of {content} bytes (XDF has 16)")
            streams[sid].n_offsets += 1
        elif tag == 6:
            streams[sid].footer = True
        file.seek(end)
        pos = layout.end = end
    return layout


def _stream_layout(xml: bytes, pos: int) -> StreamLayout:
    try:
        info = fromstring(xml.decode("utf-8", "replace"))
        n_channels = int(info.findtext("channel_count", ""))
    except (ParseError, ValueError) as error:
        raise _Corrupt(pos, f"a stream header that is not valid XML ({error})") from error
    fmt = (info.findtext("channel_format") or "").strip()
    if fmt not in VALUE_BYTES or n_channels < 0:
        raise _Corrupt(pos, f"a stream header with channel_format {fmt!r} and channel_count "
                            f"{n_channels} (formats: {', '.join(VALUE_BYTES)})")  # fmt: skip
    return StreamLayout(info.findtext("name") or "", fmt, n_channels)


def _count_samples(file, stream: StreamLayout, content: int, pos: int) -> None:
    head = file.read(1)
    n_len = head[0] if head else 0
    count = int.from_bytes(file.read(n_len), "little") if n_len in (1, 4, 8) else -1
    rest = content - 1 - n_len
    if stream.channel_format == "string":  # per sample: stamp flag, per value ≥ 2 length bytes
        fits = count >= 0 and rest >= count * (1 + 2 * stream.n_channels)
    else:  # per sample: stamp flag, an 8-byte stamp or none, the values
        values = stream.n_channels * VALUE_BYTES[stream.channel_format]
        low = count * (1 + values)
        fits = count >= 0 and low <= rest <= count * (9 + values) and (rest - low) % 8 == 0
    if not fits:
        raise _Corrupt(pos, (
            f"a Samples chunk of stream {stream.name!r} whose {max(rest, 0)} bytes cannot hold "
            f"{count} samples of {stream.n_channels} {stream.channel_format} channels: the "
            "header's channel_count or channel_format does not match the samples, or the "
            "chunk is damaged"))  # fmt: skip
    stream.n_samples += count


class _Prefix(io.RawIOBase):
    """The first ``end`` bytes of a binary file, as a file (what pyxdf reads)."""

    def __init__(self, file, end: int) -> None:
        self._file, self._end = file, end

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = max(min(len(buffer), self._end - self._file.tell()), 0)
        return self._file.readinto(memoryview(buffer)[:n]) if n else 0

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_END:
            offset, whence = self._end + offset, io.SEEK_SET
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextmanager
def _readable(path: Path) -> Iterator[tuple[BinaryIO, int]]:
    """The file's bytes as a seekable binary file, and how many can be read: a ``.xdfz`` is
    decompressed into a temporary file, as far as it decompresses (a cut one up to its cut)."""
    if not path.name.lower().endswith((".xdfz", ".gz")):
        with path.open("rb") as file:
            yield file, path.stat().st_size
        return
    with tempfile.TemporaryFile() as plain, path.open("rb") as packed:
        inflate = zlib.decompressobj(wbits=31)  # gzip framing
        try:
            while (block := packed.read(1 << 20)) and not inflate.eof:
                plain.write(inflate.decompress(block))
        except zlib.error:  # damaged from here on: what decompressed so far
            pass
        size = plain.tell()
        plain.seek(0)
        yield plain, size


def _corrupt_error(path: Path, offset: int, what: str) -> RecordingError:
    return RecordingError(
        f"{path}: corrupt XDF at byte {offset:,}: {what}. The data before that byte are whole: "
        f"to keep them, cut a copy there (head -c {offset} '{path.name}' > cut.xdf) and load "
        "the copy; or copy the file again from the recording PC."
    )


def _layout(path: Path, file: BinaryIO, size: int) -> Layout:
    magic = file.read(4)
    if magic != b"XDF:":
        said = f"starts with {magic!r}" if magic else "is empty"
        if not magic and path.name.lower().endswith((".xdfz", ".gz")):
            said = "is empty or not gzip-compressed"
        raise RecordingError(
            f"{path}: cannot read this XDF file: it {said}, not with the XDF magic b'XDF:', "
            "so it is not an XDF recording. Check that this is the file the recorder wrote."
        )
    try:
        layout = _scan_chunks(file, size)
    except _Corrupt as error:
        raise _corrupt_error(path, error.offset, error.what) from None
    if not layout.streams:
        cut = f" before it is cut at byte {layout.size:,}" if layout.truncated else ""
        raise NoStreamsError(
            f"{path}: holds no streams{cut}; nothing was recorded into it. Check that the "
            "recorder saw the streams (bci streams)."
        )
    return layout


def _load(path: Path, file: BinaryIO, layout: Layout) -> tuple[list[dict], dict, list[str]]:
    """pyxdf's streams and file header from the complete chunks, and its warnings."""
    import pyxdf

    misread: list[tuple[int, int]] = []  # (chunk start, stream id) of chunks read out of step
    n_read = 0

    def check_chunk(values, stamps, header, sid):
        # pyxdf reads a Samples chunk by its sample count, not its length: where it stopped
        # must be the chunk's end, or the rows do not match the header's channels
        nonlocal n_read
        if n_read < len(layout.sample_chunks) and not misread:
            start, end = layout.sample_chunks[n_read]
            if prefix.tell() != end:
                misread.append((start, sid))
        n_read += 1
        return values, stamps, header

    logger, collect = logging.getLogger("pyxdf.pyxdf"), _Collect()
    propagate, logger.propagate = logger.propagate, False  # its messages go into ours
    logger.addHandler(collect)
    try:
        file.seek(0)
        prefix = io.BufferedReader(_Prefix(file, layout.end))
        loaded, header = pyxdf.load_xdf(prefix, on_chunk=check_chunk, synchronize_clocks=True,
                                        dejitter_timestamps=False)  # fmt: skip
    except Exception as error:  # the framing was sound: pyxdf failed on a chunk's content
        raise RecordingError(
            f"{path}: corrupt XDF: pyxdf cannot read it ({type(error).__name__}: {error}). "
            "Copy the file again from the recording PC."
        ) from error
    finally:
        logger.removeHandler(collect)
        logger.propagate = propagate
    if misread:
        start, sid = misread[0]
        raise _corrupt_error(path, start, (
            f"a Samples chunk of stream {layout.streams[sid].name!r} whose samples do not fill "
            "it exactly: the header's channel_count or channel_format does not match the "
            "samples, or the chunk is damaged"))  # fmt: skip
    errors = [r.getMessage() for r in collect.records if r.levelno >= logging.ERROR]
    for stream in loaded:
        declared = layout.streams[stream["info"]["stream_id"]]
        if len(stream["time_stamps"]) != declared.n_samples:
            errors.append(f"stream {declared.name!r} declares {declared.n_samples} samples, "
                          f"{len(stream['time_stamps'])} were read")  # fmt: skip
    if errors:
        raise RecordingError(
            f"{path}: corrupt XDF: {errors[0]}. Samples inside a chunk are damaged; copy the "
            "file again from the recording PC."
        )
    return loaded, header, [r.getMessage() for r in collect.records]


def _layout_warnings(layout: Layout, said_by_pyxdf: list[str]) -> list[str]:
    warnings = []
    if layout.truncated:
        warnings.append(
            "the file is truncated (the recorder was stopped abruptly?): read its first "
            f"{layout.end:,} of {layout.size:,} bytes ({100 * layout.end / layout.size:.1f} %), "
            f"up to the last complete chunk; the {layout.size - layout.end:,} bytes of the cut "
            "chunk are lost."
        )
    unclosed = [s.name for s in layout.streams.values() if not s.footer]
    if unclosed and not layout.truncated:
        warnings.append(
            f"no footer for stream(s) {unclosed}: the recorder did not close the file (stopped "
            "abruptly?); everything it wrote was read."
        )
    unsynced = [sid for sid, s in layout.streams.items() if s.n_samples and not s.n_offsets]
    if unsynced:
        warnings.append(
            f"no clock offsets for stream(s) {[layout.streams[i].name for i in unsynced]} (the "
            "recorder writes them every 5 s): their timestamps are the sender's clock, "
            "uncorrected; exact only if the sender ran on the recording PC."
        )
    for message in said_by_pyxdf:  # pyxdf's own warnings, less the one said just above
        said = _CLOCK_SEGMENTS.fullmatch(message)
        if not (said and int(said.group(1)) in unsynced):
            warnings.append(f"pyxdf: {message}")
    return warnings


def read_xdf_file(path: Path) -> tuple[list[RecordedStream], list[str], dt.datetime | None]:
    """Read one XDF file (not its part files).

    Returns
    -------
    streams : list of RecordedStream
        In file order.
    warnings : list of str
        Truncation, missing footers or clock offsets, channel labels that disagree with the
        header, pyxdf's own warnings.
    meas_date : datetime | None
        The file header's ``<datetime>`` (UTC), if any.

    Raises
    ------
    RecordingError
        Not an XDF file, or corrupt; :class:`NoStreamsError` if it declares no stream.
    """
    with _readable(path) as (file, size):
        layout = _layout(path, file, size)
        loaded, header, said_by_pyxdf = _load(path, file, layout)
    warnings = _layout_warnings(layout, said_by_pyxdf)
    streams = [_recorded_stream(s, warnings) for s in loaded]
    return streams, warnings, _header_date(header)


def _text(node, key: str, default: str = "") -> str:
    """``node[key][0]`` of pyxdf's nested lists, as text; ``default`` where absent or empty."""
    value = node.get(key) if isinstance(node, dict) else None
    return value[0] if value and isinstance(value[0], str) else default


def _recorded_stream(stream: dict, warnings: list[str]) -> RecordedStream:
    info = stream["info"]
    name, fmt = _text(info, "name"), _text(info, "channel_format").strip()
    n_channels = int(_text(info, "channel_count", "0"))
    desc = (info.get("desc") or [None])[0]
    desc = desc if isinstance(desc, dict) else {}
    channels = (desc.get("channels") or [None])[0]
    described = list(channels.get("channel") or []) if isinstance(channels, dict) else []
    if described and len(described) != n_channels:
        warnings.append(
            f"stream {name!r} declares {n_channels} channels but describes "
            f"{len(described)}; its channels are named ch1…ch{n_channels} instead."
        )
        described = []
    described += [{}] * (n_channels - len(described))
    n = len(stream["time_stamps"])
    if fmt == "string":
        data = np.empty((n, n_channels), dtype=object)
        for row, sample in enumerate(stream["time_series"]):
            data[row, :] = sample
    else:
        data = np.asarray(stream["time_series"], dtype=np.float64).reshape(n, n_channels)
    return RecordedStream(
        name=name,
        type=_text(info, "type").strip(),
        source_id=_text(info, "source_id"),
        srate=float(_text(info, "nominal_srate", "0") or 0),
        channel_format=fmt,
        ch_names=[_text(ch, "label") or f"ch{i + 1}" for i, ch in enumerate(described)],
        ch_types=[_text(ch, "type").strip() for ch in described],
        units=[_text(ch, "unit").strip() for ch in described],
        data=data,
        timestamps=np.asarray(stream["time_stamps"], dtype=np.float64),
        desc=desc,
    )


def _header_date(header) -> dt.datetime | None:
    text = _text((header or {}).get("info"), "datetime").strip()
    try:
        return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S%z").astimezone(dt.UTC)
    except ValueError:
        return None
