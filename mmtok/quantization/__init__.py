"""Shared quantizer core: every quantizer maps ``[B, N, D]`` latents to ``[B, N, Q]`` ids."""

from mmtok.quantization.base import Quantizer, QuantizerOutput, bitrate
from mmtok.quantization.codebook import Codebook, nearest_code
from mmtok.quantization.factory import QuantizerOptions, build_quantizer
from mmtok.quantization.fsq import FSQ
from mmtok.quantization.identity import IdentityQuantizer
from mmtok.quantization.residual import ResidualVQ
from mmtok.quantization.vq import VectorQuantizer

__all__ = [
    "FSQ",
    "Codebook",
    "IdentityQuantizer",
    "Quantizer",
    "QuantizerOptions",
    "QuantizerOutput",
    "ResidualVQ",
    "VectorQuantizer",
    "bitrate",
    "build_quantizer",
    "nearest_code",
]
