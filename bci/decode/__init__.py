"""Decoders: windows of preprocessed signal in, calibrated class probabilities out."""

from bci.decode.base import Decoder, DecoderInfo
from bci.decode.riemann import TangentSpaceDecoder

DECODERS = {"riemann": TangentSpaceDecoder}
"""Decoder classes by the protocol's ``decoder.kind``."""

__all__ = ["DECODERS", "Decoder", "DecoderInfo", "TangentSpaceDecoder"]
