"""Session protocols: TOML files validated before anything starts."""

from bci.protocol.load import (
    ProtocolError,
    apply_overrides,
    find_protocol,
    load_protocol,
    protocol_from_data,
)
from bci.protocol.schema import Block, Protocol

__all__ = [
    "Block",
    "Protocol",
    "ProtocolError",
    "apply_overrides",
    "find_protocol",
    "load_protocol",
    "protocol_from_data",
]
