"""FSQ: finite scalar quantisation (Mentzer et al., 2023, "Finite Scalar Quantization").

Legend: B batch, N vectors per sample, D input dim, L = len(levels), K = prod(levels).

Each of the L channels is bounded with tanh and rounded to ``levels[i]`` values; the code is
the mixed-radix number of the per-channel digits. The codebook is implicit: ids <-> codes are
converted arithmetically and the K x L table is never built. No loss, no collapse.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from mmtok.errors import ConfigError
from mmtok.quantization.base import (
    Quantizer,
    QuantizerOutput,
    check_ids,
    check_latents,
    check_single_stream,
)
from mmtok.quantization.metrics import to_host, usage_metrics

MAX_HISTOGRAM = 1 << 20


class FSQ(Quantizer):
    """Finite scalar quantiser; ids ``[B, N, 1]`` in ``[0, prod(levels))``.

    Args:
        dim: D, input / output feature size; linear projections to/from L channels when D != L.
        levels: number of values per channel, e.g. ``[8, 5, 5, 5]`` (K = 1000), each >= 2.
    """

    num_codebooks = 1

    def __init__(self, dim: int, levels: Sequence[int]) -> None:
        super().__init__()
        levels = [int(v) for v in levels]
        if not levels or min(levels) < 2:
            raise ConfigError(f"levels must be a non-empty list of ints >= 2, got {levels}")
        self.dim, self.levels = dim, levels
        self.codebook_size = math.prod(levels)
        lv = torch.tensor(levels, dtype=torch.long)
        basis = torch.cumprod(torch.tensor([1] + levels[:-1], dtype=torch.long), 0)
        self.register_buffer("_levels", lv, persistent=False)
        self.register_buffer("_basis", basis, persistent=False)
        self.register_buffer("_half", (lv // 2).float(), persistent=False)
        # running usage histogram, only where K is small enough to hold one (K <= 2^20)
        self.track_usage = self.codebook_size <= MAX_HISTOGRAM
        hist = torch.zeros(self.codebook_size if self.track_usage else 0, dtype=torch.long)
        self.register_buffer("usage", hist, persistent=False)
        n = len(levels)
        self.project_in = nn.Linear(dim, n) if dim != n else nn.Identity()
        self.project_out = nn.Linear(n, dim) if dim != n else nn.Identity()

    def _digits(self, z: Tensor) -> Tensor:
        """Bound ``z`` ``[..., L]`` and round: integer-valued floats in ``[-half, L - 1 - half]``
        (straight-through gradient through the rounding)."""
        lv = self._levels.float()
        eps = 1e-3
        half_l = (lv - 1) * (1 + eps) / 2
        offset = torch.where(self._levels % 2 == 0, 0.5, 0.0)
        shift = torch.atanh(offset / half_l)
        bounded = torch.tanh(z + shift) * half_l - offset
        return bounded + (bounded.round() - bounded).detach()

    def digits_to_ids(self, digits: Tensor) -> Tensor:
        """Integer-valued ``[..., L]`` digits (centred) -> int64 ids ``[...]``."""
        return ((digits.detach().round() + self._half).long() * self._basis).sum(-1)

    def ids_to_codes(self, ids: Tensor) -> Tensor:
        """int64 ids ``[...]`` -> normalised codes ``[..., L]`` in [-1, 1]."""
        digits = (ids.unsqueeze(-1) // self._basis) % self._levels
        return (digits.float() - self._half) / self._half

    def forward(self, x: Tensor, n_q: int | None = None) -> QuantizerOutput:
        """``x`` ``[B, N, D]`` -> quantized ``[B, N, D]``, ids ``[B, N, 1]`` int64; ``n_q``: None
        or 1 (one code stream)."""
        check_latents(x, self.dim)
        check_single_stream(n_q, "FSQ")
        with torch.autocast(device_type=x.device.type, enabled=False):
            digits = self._digits(self.project_in(x.float()))  # [B, N, L]
            ids = self.digits_to_ids(digits)  # [B, N]
            out = self.project_out(digits / self._half)
        if self.track_usage:
            counts = torch.bincount(ids.reshape(-1), minlength=self.codebook_size)
            self.usage += counts
        else:
            counts = torch.unique(ids, return_counts=True)[1]
        metrics = to_host(usage_metrics(counts, None, 0.0))
        return QuantizerOutput(out.to(x.dtype), ids.unsqueeze(-1), x.new_zeros(()), metrics)

    def encode(self, x: Tensor, n_q: int | None = None) -> Tensor:
        """Ids only: ``[B, N, D]`` -> ``[B, N, 1]`` int64, the ids of ``forward`` in either mode
        (FSQ has no state), without the usage count or metrics."""
        check_latents(x, self.dim)
        check_single_stream(n_q, "FSQ")
        with torch.no_grad(), torch.autocast(device_type=x.device.type, enabled=False):
            return self.digits_to_ids(self._digits(self.project_in(x.float()))).unsqueeze(-1)

    def decode_ids(self, ids: Tensor) -> Tensor:
        """``ids`` ``[B, N, 1]`` -> ``[B, N, D]`` fp32."""
        check_ids(ids, 1, self.codebook_size)
        with torch.autocast(device_type=ids.device.type, enabled=False):
            return self.project_out(self.ids_to_codes(ids[..., 0].long()))

    def reset_usage(self) -> None:
        """Zero the running usage histogram (kept when K <= 2^20)."""
        self.usage.zero_()

    def usage_histograms(self) -> dict[str, Tensor]:
        """``{"codebook": [K] int64}`` codes emitted by ``forward`` since ``reset_usage``;
        ``{}`` when K is too large to keep a histogram."""
        return {"codebook": self.usage.detach().clone()} if self.track_usage else {}
