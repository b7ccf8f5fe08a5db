"""Quantizer interface shared by every modality.

Legend: B batch, N vectors per sample (a flattened grid), D feature dim, Q code streams per
vector (1 for VQ / FSQ, n_q for residual VQ), K codebook size.

A quantizer sees ``[B, N, D]`` only; modalities pack their grids into N before calling it
(audiocraft ``quantization/base.py`` is the model for this interface).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from torch import Tensor, nn

from mmtok.configurable import Configurable
from mmtok.errors import InputError


@dataclass
class QuantizerOutput:
    """Result of ``Quantizer.forward``.

    quantized: ``[B, N, D]`` float, straight-through in training (gradients reach the input).
    ids: ``[B, N, Q]`` int64 in ``[0, K)``.
    loss: scalar auxiliary loss (commitment, codebook) to add to the reconstruction loss.
    metrics: host floats (perplexity, used codes, dead codes, drift, ...) for logging.
    """

    quantized: Tensor
    ids: Tensor
    loss: Tensor
    metrics: dict[str, float] = field(default_factory=dict)


def check_latents(x: Tensor, dim: int, name: str = "x") -> None:
    """Raise InputError unless ``x`` is a finite float ``[B, N, dim]`` tensor."""
    if not isinstance(x, Tensor):
        raise InputError(f"{name}: expected a torch.Tensor [B, N, {dim}], got {type(x).__name__}")
    if x.ndim != 3 or x.shape[-1] != dim:
        raise InputError(f"{name}: expected shape [B, N, {dim}], got {list(x.shape)}")
    if not x.is_floating_point():
        raise InputError(f"{name}: expected a float tensor, got {x.dtype}")


def check_ids(ids: Tensor, num_streams: int, codebook_size: int, name: str = "ids") -> None:
    """Raise InputError unless ``ids`` is an integer ``[B, N, q]`` tensor, q <= num_streams,
    with values in ``[0, codebook_size)``."""
    if not isinstance(ids, Tensor) or ids.is_floating_point() or ids.is_complex():
        got = ids.dtype if isinstance(ids, Tensor) else type(ids).__name__
        raise InputError(f"{name}: expected an integer tensor [B, N, Q], got {got}")
    if ids.ndim != 3 or not 1 <= ids.shape[-1] <= num_streams:
        raise InputError(
            f"{name}: expected shape [B, N, Q] with 1 <= Q <= {num_streams}, got {list(ids.shape)}"
        )
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= codebook_size):
        raise InputError(
            f"{name}: ids must be in [0, {codebook_size}), got range "
            f"[{int(ids.min())}, {int(ids.max())}]"
        )


def check_single_stream(n_q: int | None, quantizer: str) -> None:
    """InputError unless ``n_q`` is None or 1: what every quantizer without residual stages
    (VQ, FSQ, identity) accepts, so ``n_q=3`` is refused instead of silently ignored."""
    if n_q not in (None, 1):
        raise InputError(f"n_q: a {quantizer} has no residual stages, so n_q must be None or 1, "
                         f"got n_q={n_q}")  # fmt: skip


class Quantizer(Configurable, nn.Module):
    """Base class: maps ``[B, N, D]`` latents to codes and back.

    Subclasses set ``dim`` (D), ``codebook_size`` (K) and ``num_codebooks`` (Q), and implement
    ``forward``, ``encode`` (ids only), ``decode_ids``, ``reset_usage`` and
    ``usage_histograms``. Invariants (tested for every quantizer): in eval mode
    ``forward(x).quantized == decode_ids(forward(x).ids)`` and ``encode(x) == forward(x).ids``.
    """

    dim: int
    codebook_size: int
    num_codebooks: int

    def forward(self, x: Tensor, n_q: int | None = None) -> QuantizerOutput:
        """Quantize ``x`` ``[B, N, D]``; ``n_q`` limits the code streams (residual VQ only)."""
        raise NotImplementedError

    def decode_ids(self, ids: Tensor) -> Tensor:
        """``ids`` ``[B, N, q]`` int64 in ``[0, K)`` (q <= Q, a prefix) -> ``[B, N, D]`` float."""
        raise NotImplementedError

    def encode(self, x: Tensor, n_q: int | None = None) -> Tensor:
        """Ids only: ``[B, N, D]`` -> ``[B, N, Q]`` int64 in ``[0, K)``, the ids ``forward``
        gives in the same mode. In eval mode (what ``Tokenizer.encode`` runs) it computes no
        loss, no metrics and counts no usage."""
        raise NotImplementedError

    def reset_usage(self) -> None:
        """Zero the running usage histograms (``forward`` counts the codes it emits)."""
        raise NotImplementedError

    def usage_histograms(self) -> dict[str, Tensor]:
        """Codes emitted by ``forward`` since ``reset_usage``: a copy, one int64 ``[K]`` count
        per codebook by name (``{}`` when the quantizer keeps none)."""
        raise NotImplementedError

    def bitrate(self, frame_rate: float, n_q: int | None = None) -> float:
        """Bits per second: ``frame_rate`` (grid positions / s) * n_q (default Q) * log2(K)."""
        return bitrate(frame_rate, n_q or self.num_codebooks, self.codebook_size)


def bitrate(frame_rate: float, n_q: int, codebook_size: int) -> float:
    """Bits per second: ``frame_rate`` (positions / s) * n_q * log2(K)."""
    return frame_rate * n_q * math.log2(codebook_size) if codebook_size > 0 else 0.0
