"""Quantizer by name, for the tokenizer factories and recipes ("vq" | "rvq" | "fsq")."""

from __future__ import annotations

from collections.abc import Sequence

from mmtok.errors import ConfigError
from mmtok.quantization.base import Quantizer
from mmtok.quantization.fsq import FSQ
from mmtok.quantization.residual import ResidualVQ
from mmtok.quantization.vq import VectorQuantizer


def build_quantizer(
    kind: str,
    dim: int,
    codebook_size: int,
    num_quantizers: int = 1,
    *,
    quantizer_dropout: float = 0.0,
    codebook_dim: int | None = None,
    levels: Sequence[int] = (8, 5, 5, 5),
    dead_code_threshold: float | None = None,
) -> Quantizer:
    """A quantizer with the library defaults.

    kind: "vq" (EMA VectorQuantizer), "rvq" (ResidualVQ of ``num_quantizers`` stages with
        ``quantizer_dropout``) or "fsq" (FSQ with ``levels``; ``codebook_size`` is ignored).
    dim: D, the latent size; codebook_dim: low-dimensional code size for vq / rvq.
    dead_code_threshold: vq / rvq absolute restart threshold (None: the relative default).
    """
    if kind == "vq":
        return VectorQuantizer(dim, codebook_size, codebook_dim=codebook_dim,
                               dead_code_threshold=dead_code_threshold)  # fmt: skip
    if kind == "rvq":
        return ResidualVQ(
            dim, codebook_size, num_quantizers,
            quantizer_dropout=quantizer_dropout, codebook_dim=codebook_dim,
            dead_code_threshold=dead_code_threshold,
        )  # fmt: skip
    if kind == "fsq":
        return FSQ(dim, levels)
    raise ConfigError(f"quantizer must be vq|rvq|fsq, got {kind!r}")
