"""Acquisition: resolve LSL streams, pull them into preallocated ring buffers on one clock."""

from bci.acquire.inlet import Gap, Inlet, InletSettings, MarkerInlet
from bci.acquire.resolve import StreamNotFoundError, StreamQuery, list_streams, resolve_streams
from bci.acquire.ring import RingBuffer

__all__ = [
    "Gap",
    "Inlet",
    "InletSettings",
    "MarkerInlet",
    "RingBuffer",
    "StreamNotFoundError",
    "StreamQuery",
    "list_streams",
    "resolve_streams",
]
