"""IdentityQuantizer: passes latents through, to test encoders and decoders without codes.

Legend: B batch, N vectors, D dim. It has no codes: ids are ``[B, N, 0]`` and
``decode_ids`` refuses, so a tokenizer built with it can train and reconstruct, not tokenize.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mmtok.errors import InputError
from mmtok.quantization.base import (
    Quantizer,
    QuantizerOutput,
    check_latents,
    check_single_stream,
)


class IdentityQuantizer(Quantizer):
    """``quantized = x``, zero loss, no ids. Args: dim: D, the feature size."""

    codebook_size = 0
    num_codebooks = 0

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, x: Tensor, n_q: int | None = None) -> QuantizerOutput:
        """``x`` ``[B, N, D]`` -> quantized ``x``, ids ``[B, N, 0]``; ``n_q``: None or 1."""
        check_latents(x, self.dim)
        check_single_stream(n_q, "IdentityQuantizer")
        ids = x.new_zeros((*x.shape[:-1], 0)).long()
        return QuantizerOutput(x, ids, x.new_zeros(()), {})

    def encode(self, x: Tensor, n_q: int | None = None) -> Tensor:
        """``x`` ``[B, N, D]`` -> ids ``[B, N, 0]`` (no codes)."""
        check_latents(x, self.dim)
        check_single_stream(n_q, "IdentityQuantizer")
        return x.new_zeros((*x.shape[:-1], 0), dtype=torch.long)

    def reset_usage(self) -> None:
        """Nothing to reset: no codes."""

    def usage_histograms(self) -> dict[str, Tensor]:
        return {}

    def decode_ids(self, ids: Tensor) -> Tensor:
        raise InputError("ids: an IdentityQuantizer has no codes to decode")
