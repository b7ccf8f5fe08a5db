"""VectorQuantizer: nearest-code quantisation with a straight-through estimator.

Legend: B batch, N vectors per sample, D input dim, d code dim (``codebook_dim``), K codes.

VQ-VAE (van den Oord et al., 2017) with the usual fixes against codebook collapse: EMA
codebook updates, data-dependent k-means init, dead-code restarts (Jukebox / EnCodec),
optional cosine lookup and a low-dimensional codebook with in/out projections (ViT-VQGAN).
Loss: ``beta * |z - sg(e)|^2`` (commitment) plus ``|sg(z) - e|^2`` when the codebook is
learnable; the EMA replaces that codebook term.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmtok.errors import ConfigError
from mmtok.quantization.base import (
    Quantizer,
    QuantizerOutput,
    check_ids,
    check_latents,
    check_single_stream,
)
from mmtok.quantization.codebook import Codebook, Init
from mmtok.quantization.metrics import to_host


class VectorQuantizer(Quantizer):
    """Single-codebook VQ over ``[B, N, D]`` latents; ids ``[B, N, 1]``.

    Args:
        dim: D, input / output feature size.
        codebook_size: K, number of codes.
        codebook_dim: d, code size; ``d < D`` adds linear in/out projections (default D).
        ema: EMA codebook (default) or learnable codebook trained by the codebook loss.
        decay: EMA decay (0.99).
        beta: commitment loss weight (0.25).
        cosine: look codes up by cosine similarity (inputs and codes l2-normalised).
        init: codebook init: "kmeans" (default), "data", "uniform" (seed layer), "normal".
        kmeans_iters: k-means iterations on the first training batch.
        dead_code_threshold: absolute EMA count under which a code is restarted (0 disables);
            None (default): ``dead_code_ratio`` x the mean EMA count per code.
        dead_code_ratio: relative restart threshold (0.25 of a uniform share; 0 disables).
        seed: seed of the codebook's per-step generator (restarts, k-means seeding).
    """

    num_codebooks = 1

    def __init__(
        self,
        dim: int,
        codebook_size: int,
        *,
        codebook_dim: int | None = None,
        ema: bool = True,
        decay: float = 0.99,
        beta: float = 0.25,
        cosine: bool = False,
        init: Init = "kmeans",
        kmeans_iters: int = 10,
        dead_code_threshold: float | None = None,
        dead_code_ratio: float = 0.25,
        seed: int = 0,
    ) -> None:
        super().__init__()
        cdim = dim if codebook_dim is None else codebook_dim
        if cdim < 1 or cdim > dim:
            raise ConfigError(f"codebook_dim must be in [1, dim={dim}], got {codebook_dim}")
        self.dim, self.codebook_size, self.codebook_dim, self.beta = dim, codebook_size, cdim, beta
        self.project_in = nn.Linear(dim, cdim) if cdim != dim else nn.Identity()
        self.project_out = nn.Linear(cdim, dim) if cdim != dim else nn.Identity()
        self.codebook = Codebook(
            codebook_size, cdim, ema=ema, decay=decay, init=init, kmeans_iters=kmeans_iters,
            dead_code_threshold=dead_code_threshold, dead_code_ratio=dead_code_ratio,
            cosine=cosine, seed=seed,
        )  # fmt: skip

    def _to_code_space(self, x: Tensor) -> Tensor:
        z = self.project_in(x)
        return F.normalize(z, dim=-1) if self.codebook.cosine else z

    def quantize(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, dict[str, Tensor]]:
        """fp32 core of ``forward``: ``x`` ``[B, N, D]`` -> (quantized ``[B, N, D]`` fp32,
        ids ``[B, N]``, loss, metric tensors). Used by ResidualVQ to sync metrics once."""
        with torch.autocast(device_type=x.device.type, enabled=False):
            z = self._to_code_space(x.float())  # [B, N, d]
            flat = z.reshape(-1, self.codebook_dim)  # [M, d]
            cb = self.codebook
            if self.training and not cb.is_initialized():
                cb.kmeans_init_(flat.detach())
            ids = cb.search(flat)  # [M]
            q = cb.lookup(ids)  # [M, d]
            loss = x.new_zeros((), dtype=torch.float32)
            if self.training:
                loss = self.beta * F.mse_loss(flat, q.detach())
                if not cb.ema:
                    loss = loss + F.mse_loss(q, flat.detach())
                metrics = cb.update_(flat.detach(), ids)
                cb.advance()
                q = flat + (q - flat).detach()  # straight-through
            else:
                metrics = cb.count_usage_(ids)
            out = self.project_out(q).reshape(x.shape)
        return out, ids.reshape(x.shape[:-1]), loss, metrics

    def _check(self, x: Tensor, n_q: int | None) -> None:
        check_latents(x, self.dim)
        check_single_stream(n_q, "VectorQuantizer")

    def forward(self, x: Tensor, n_q: int | None = None) -> QuantizerOutput:
        """``x`` ``[B, N, D]`` float -> quantized ``[B, N, D]``, ids ``[B, N, 1]`` int64 < K."""
        self._check(x, n_q)
        out, ids, loss, metrics = self.quantize(x)
        return QuantizerOutput(out.to(x.dtype), ids.unsqueeze(-1), loss, to_host(metrics))

    def nearest(self, x: Tensor) -> Tensor:
        """The code search alone: fp32 ``x`` ``[B, N, D]`` -> ids ``[B, N]`` (no gradient, no
        state change; the ids ``quantize`` picks for the same input)."""
        flat = self._to_code_space(x).reshape(-1, self.codebook_dim)  # [M, d]
        return self.codebook.search(flat).reshape(x.shape[:-1])

    def codes(self, ids: Tensor) -> Tensor:
        """Unchecked lookup: int64 ids ``[...]`` -> fp32 ``[..., D]`` (what ``quantize``
        returns in eval mode for those ids)."""
        return self.project_out(self.codebook.lookup(ids))

    def encode(self, x: Tensor, n_q: int | None = None) -> Tensor:
        """Ids only: ``[B, N, D]`` -> ``[B, N, 1]`` int64 < K. In eval mode just the code
        search (no lookup, loss, metrics or usage count), the same ids as ``forward``; in
        train mode ``forward`` (which also updates the codebook)."""
        if self.training:
            return self.forward(x, n_q=n_q).ids
        self._check(x, n_q)
        with torch.no_grad(), torch.autocast(device_type=x.device.type, enabled=False):
            return self.nearest(x.float()).unsqueeze(-1)

    def decode_ids(self, ids: Tensor) -> Tensor:
        """``ids`` ``[B, N, 1]`` int64 in [0, K) -> ``[B, N, D]`` fp32."""
        check_ids(ids, 1, self.codebook_size)
        with torch.autocast(device_type=ids.device.type, enabled=False):
            return self.codes(ids[..., 0].long())

    def reset_usage(self) -> None:
        """Zero the running usage histogram (``codebook.usage``)."""
        self.codebook.usage.zero_()

    def usage_histograms(self) -> dict[str, Tensor]:
        """``{"codebook": [K] int64}``: codes emitted by ``forward`` since ``reset_usage``."""
        return {"codebook": self.codebook.usage.detach().clone()}
