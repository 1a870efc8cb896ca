"""Decoders: windows of preprocessed signal in, calibrated class probabilities out."""

from __future__ import annotations

from bci.decode.alignment import Alignment
from bci.decode.base import (
    Decoder,
    DecoderInfo,
    InputSpec,
    Provenance,
    read_model_file,
    select_inputs,
)
from bci.decode.csp import CspLdaDecoder
from bci.decode.fnirs import FnirsDecoder
from bci.decode.hybrid import HybridDecoder
from bci.decode.riemann import TangentSpaceDecoder
from bci.decode.snn import SpikingDecoder
from bci.decode.torch_decoder import EEGNetDecoder, ShallowDecoder

DECODERS: dict[str, type[Decoder]] = {
    cls.kind: cls
    for cls in (
        TangentSpaceDecoder,
        CspLdaDecoder,
        FnirsDecoder,
        HybridDecoder,
        EEGNetDecoder,
        ShallowDecoder,
        SpikingDecoder,
    )
}
"""Decoder classes by the protocol's ``decoder.kind``."""


def load_decoder(path) -> Decoder:
    """Read a model file written by :meth:`Decoder.save` (ValueError if it cannot be used)."""
    header, arrays = read_model_file(path)
    kind = header.get("kind")
    if kind not in DECODERS:
        raise ValueError(
            f"{path} holds a {kind!r} decoder, which this NeuroLoop does not know "
            f"(known: {sorted(DECODERS)}); update NeuroLoop."
        )
    return DECODERS[kind].from_state(header, arrays)


__all__ = [
    "DECODERS",
    "Alignment",
    "Decoder",
    "DecoderInfo",
    "InputSpec",
    "Provenance",
    "TangentSpaceDecoder",
    "load_decoder",
    "select_inputs",
]
