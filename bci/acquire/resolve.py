"""Find LSL streams on the network by name, type and source id."""

from __future__ import annotations

from dataclasses import dataclass

import pylsl


class StreamNotFoundError(RuntimeError):
    """A requested stream was not on the network within the timeout."""


@dataclass(frozen=True)
class StreamQuery:
    """Which stream to resolve; every field given must match exactly."""

    name: str | None = None
    """LSL stream name, e.g. ``"NeuroLoop-EEG"``."""
    type: str | None = None
    """LSL stream type, e.g. ``"EEG"``, ``"NIRS"``, ``"Markers"``."""
    source_id: str | None = None
    """LSL source id; the most specific field, and the one inlets recover by."""

    def __post_init__(self) -> None:
        if self.name is None and self.type is None and self.source_id is None:
            raise ValueError("A StreamQuery needs at least one of name, type or source_id.")

    def predicate(self) -> str:
        """The query as an XPath predicate for ``pylsl.resolve_bypred``."""
        fields = {"name": self.name, "type": self.type, "source_id": self.source_id}
        return " and ".join(f"{key}='{value}'" for key, value in fields.items() if value)

    def matches(self, info: pylsl.StreamInfo) -> bool:
        """Whether ``info`` satisfies this query."""
        return (
            (self.name is None or info.name() == self.name)
            and (self.type is None or info.type() == self.type)
            and (self.source_id is None or info.source_id() == self.source_id)
        )

    def __str__(self) -> str:
        return self.predicate()


def describe(info: pylsl.StreamInfo) -> str:
    """One line describing a stream: name, type, channels, rate, source id, host."""
    rate = f"{info.nominal_srate():g} Hz" if info.nominal_srate() > 0 else "irregular"
    return (
        f"{info.name()!r} type={info.type()!r} {info.channel_count()} ch {rate} "
        f"source_id={info.source_id()!r} host={info.hostname()!r}"
    )


def list_streams(wait_s: float = 1.0) -> list[pylsl.StreamInfo]:
    """Every stream visible on the network, sorted by name.

    Parameters
    ----------
    wait_s : float
        How long to listen for stream announcements, s.
    """
    return sorted(pylsl.resolve_streams(wait_time=wait_s), key=lambda info: info.name())


def resolve_streams(queries: list[StreamQuery], timeout_s: float = 10.0) -> list[pylsl.StreamInfo]:
    """Resolve one stream per query, waiting up to ``timeout_s`` for all of them.

    Parameters
    ----------
    queries : list of StreamQuery
        The streams wanted.
    timeout_s : float
        Total time to wait, s.

    Returns
    -------
    infos : list of pylsl.StreamInfo
        One per query, in query order.

    Raises
    ------
    StreamNotFoundError
        If any query matched nothing in time; the message lists what was missing and every
        stream that was found, so the operator can fix a name or start a source.
    """
    if timeout_s <= 0:
        raise ValueError(f"timeout_s must be > 0 s, got {timeout_s}.")
    deadline = pylsl.local_clock() + timeout_s
    found: dict[StreamQuery, pylsl.StreamInfo] = {}
    while True:
        for query in queries:
            if query in found:
                continue
            remaining = max(0.05, min(0.5, deadline - pylsl.local_clock()))
            infos = pylsl.resolve_bypred(query.predicate(), minimum=1, timeout=remaining)
            if infos:
                # listen a moment longer: two rigs on one network may publish the same name
                infos = pylsl.resolve_bypred(query.predicate(), minimum=2, timeout=0.2) or infos
                sources = {info.source_id(): info for info in infos}
                if len(sources) > 1:
                    listing = "; ".join(describe(info) for info in sources.values())
                    raise StreamNotFoundError(
                        f"{len(sources)} LSL streams match {query}: {listing}. Give the source "
                        "id (source.eeg_source_id in a protocol) to pick one."
                    )
                found[query] = infos[0]
        if len(found) == len(queries) or pylsl.local_clock() >= deadline:
            break
    missing = [q for q in queries if q not in found]
    if missing:
        seen = list_streams(wait_s=0.5)
        listing = "; ".join(describe(info) for info in seen) or "no streams at all"
        raise StreamNotFoundError(
            f"No LSL stream matched {', '.join(str(q) for q in missing)} within {timeout_s:g} s. "
            f"Found: {listing}. Start the source (e.g. `bci simulate`) or fix the stream name."
        )
    return [found[q] for q in queries]
