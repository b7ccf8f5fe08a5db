"""Codebook health metrics, computed as tensors so a forward pays one host sync at the end.

Legend: K codebook size, M vectors in the batch, Q codebooks (streams), N tokens.
Perplexity = exp(entropy of the batch code distribution): K for perfectly uniform use, 1 for
collapse (Jukebox ``vqvae/bottleneck.py`` logs the same family of numbers).
"""

from __future__ import annotations

import torch
from torch import Tensor


def perplexity(counts: Tensor) -> Tensor:
    """exp(H(p)) of the code histogram ``counts`` ``[K]`` (any dtype); a 0-dim float tensor."""
    p = counts.float() / counts.sum().clamp_min(1).float()
    return torch.exp(-(p * torch.log(p.clamp_min(1e-12))).sum())


def usage_metrics(
    counts: Tensor, ema_counts: Tensor | None, threshold: float | Tensor
) -> dict[str, Tensor]:
    """Perplexity and used codes of the batch; dead codes (EMA count under ``threshold``)."""
    out = {"perplexity": perplexity(counts), "used_codes": (counts > 0).sum().float()}
    if ema_counts is not None:
        out["dead_codes"] = (ema_counts < threshold).sum().float()
    return out


def to_host(metrics: dict[str, Tensor]) -> dict[str, float]:
    """Move a dict of 0-dim tensors to host floats with a single synchronisation."""
    if not metrics:
        return {}
    values = torch.stack([v.detach().float().reshape(()) for v in metrics.values()]).tolist()
    return dict(zip(metrics.keys(), values, strict=True))


def add_code_hits(hits: Tensor | None, ids: Tensor, codebook_size: int) -> Tensor:
    """``hits`` (``[Q, K]`` counts, or None) plus the counts of ``ids`` ``[Q, N]`` (held-out
    codebook usage accumulated over clips)."""
    counts = torch.stack([torch.bincount(i, minlength=codebook_size) for i in ids])
    return counts if hits is None else hits + counts
