"""Codebook: K code vectors with EMA (or learnable) updates, k-means init, dead-code restart.

Legend: M vectors (the flattened batch), d code dim, K codebook size.

EMA update with Laplace-smoothed counts as in VQ-VAE-2 / EnCodec ``core_vq.py``:
``N_k <- decay N_k + (1 - decay) n_k``, ``S_k <- decay S_k + (1 - decay) sum_{i: k} x_i``,
``e_k = S_k / N~_k`` with ``N~_k = (N_k + eps) / (sum N + K eps) * sum N``.

All state is in fp32 buffers (a resumed model never re-initialises). Random choices use a
generator seeded from ``(seed, step)`` and index the concatenation of all ranks' vectors, so
runs are reproducible and every rank of a DDP job makes the same choice without a broadcast.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmtok.errors import ConfigError
from mmtok.quantization.distributed import all_reduce_sum_, gather_rows, global_count
from mmtok.quantization.metrics import usage_metrics

Init = Literal["kmeans", "data", "uniform", "normal"]
MAX_ROWS = 1024  # rows per search GEMM: large enough that MKL packs the codes rarely


class StepRng(nn.Module):
    """A persistent step counter and a per-step ``torch.Generator`` (same on every rank)."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        self.seed = int(seed)
        self.register_buffer("step", torch.zeros((), dtype=torch.long))
        self._host_step: int | None = 0

    def _load_from_state_dict(self, *args, **kw) -> None:  # noqa: ANN002, ANN003 (torch hook)
        super()._load_from_state_dict(*args, **kw)
        self._host_step = None  # re-read lazily from the loaded buffer

    def current_step(self) -> int:
        if self._host_step is None:
            self._host_step = int(self.step)
        return self._host_step

    def advance(self) -> None:
        self._host_step = self.current_step() + 1
        self.step.fill_(self._host_step)

    def generator(self, salt: int) -> torch.Generator:
        """CPU generator for this step and purpose (``salt``); identical on every rank."""
        return torch.Generator().manual_seed(
            (self.seed * 1_000_003 + self.current_step() * 7_919 + salt) % (2**63)
        )


def nearest_code(
    x: Tensor, embed: Tensor, cosine: bool = False, chunk_bytes: int = 32 << 20
) -> Tensor:
    """Index of the nearest code for each row: ``x`` ``[M, d]``, ``embed`` ``[K, d]`` -> ``[M]``.

    Euclidean: argmax of ``x . e - |e|^2 / 2`` (same argmin as the distance). Cosine: argmax of
    ``x . e`` (both normalised by the caller). Rows go in chunks of a fixed row count (at most
    ``MAX_ROWS``, and the ``[rows, K]`` score block under ``chunk_bytes``: bounded extra memory
    for any K) into one reused score buffer; ties go to the lowest index. A short last chunk
    is zero-padded to the chunk's row count, because BLAS kernels round differently for
    different row counts: this way the ids of a row never depend on M.
    """
    k = embed.shape[0]
    rows = max(1, min(MAX_ROWS, chunk_bytes // (4 * k)))
    e_t = embed.t()
    bias = None if cosine else embed.pow(2).sum(1).mul(-0.5)
    m = x.shape[0]
    out = torch.empty(m, dtype=torch.long, device=x.device)
    scores = x.new_empty(rows, k)  # reused by every chunk
    best = (x.new_empty(rows), torch.empty(rows, dtype=torch.long, device=x.device))
    for s in range(0, m, rows):
        xs = x[s : s + rows]
        if xs.shape[0] < rows:  # every GEMM gets the same row count: ids never depend on M
            xs = torch.cat([xs, xs.new_zeros(rows - xs.shape[0], xs.shape[1])])
        if bias is None:
            torch.mm(xs, e_t, out=scores)
        else:
            torch.addmm(bias, xs, e_t, out=scores)
        torch.max(scores, dim=1, out=best)  # first maximal index, faster than argmax on CPU
        out[s : s + rows] = best[1][: m - s]
    return out


def batch_stats(x: Tensor, ids: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Per-code sums ``[K, d]`` and counts ``[K]`` of ``x`` ``[M, d]``, all-reduced over ranks."""
    stats = torch.zeros(k, x.shape[1] + 1, dtype=torch.float32, device=x.device)
    stats[:, :-1].index_add_(0, ids, x.float())
    stats[:, -1].index_add_(0, ids, torch.ones_like(ids, dtype=torch.float32))
    all_reduce_sum_(stats)
    return stats[:, :-1], stats[:, -1]


class Codebook(StepRng):
    """K codes of dimension d, updated by EMA (default) or by gradients (``ema=False``).

    Args:
        codebook_size: K, number of codes.
        dim: d, code dimension.
        ema: EMA updates (True) or a learnable ``nn.Parameter`` trained by the codebook loss.
        decay: EMA decay of counts and sums (also used for the dead-code counts when learnable).
        eps: Laplace smoothing of the EMA counts.
        init: "kmeans" (k-means on the first training batch), "data" (random batch vectors),
            "uniform" (U(-1/K, 1/K), the seed VQ-VAE layer), "normal" (N(0, 1)).
        kmeans_iters: Lloyd iterations for ``init="kmeans"``.
        dead_code_threshold: absolute EMA count (codes per step) under which a code is
            restarted from a random current input, EMA state reset; 0 disables restarts.
            None (default): the threshold is ``dead_code_ratio`` x the mean EMA count per code
            (EMA tokens per step / K), so it does not depend on the batch size.
        dead_code_ratio: relative threshold used when ``dead_code_threshold`` is None (0.25: a
            code is dead when it gets under a quarter of a uniform share); 0 disables restarts.
        cosine: codes and inputs live on the unit sphere (the caller normalises inputs; a
            learnable codebook is normalised where it is used, see ``weight``).
        seed: base seed of the per-step generator.
    """

    def __init__(
        self,
        codebook_size: int,
        dim: int,
        *,
        ema: bool = True,
        decay: float = 0.99,
        eps: float = 1e-5,
        init: Init = "kmeans",
        kmeans_iters: int = 10,
        dead_code_threshold: float | None = None,
        dead_code_ratio: float = 0.25,
        cosine: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__(seed)
        if (dead_code_threshold is not None and dead_code_threshold < 0) or dead_code_ratio < 0:
            raise ConfigError(f"dead_code_threshold and dead_code_ratio must be >= 0, got "
                              f"{dead_code_threshold}, {dead_code_ratio}")  # fmt: skip
        if codebook_size < 1 or dim < 1:
            raise ConfigError(f"codebook_size and dim must be >= 1, got {codebook_size}, {dim}")
        if not 0.0 <= decay < 1.0:
            raise ConfigError(f"decay must be in [0, 1), got {decay}")
        if init not in ("kmeans", "data", "uniform", "normal"):
            raise ConfigError(f"init must be kmeans|data|uniform|normal, got {init!r}")
        self.codebook_size, self.dim, self.ema, self.decay, self.eps = (
            codebook_size, dim, ema, decay, eps)  # fmt: skip
        self.init, self.kmeans_iters, self.cosine = init, kmeans_iters, cosine
        self.dead_code_threshold = (
            None if dead_code_threshold is None else float(dead_code_threshold)
        )
        self.dead_code_ratio = float(dead_code_ratio)
        limit = dead_code_ratio if dead_code_threshold is None else dead_code_threshold
        self.restarts = limit > 0  # False: no restarts
        if init == "uniform":
            weight = torch.empty(codebook_size, dim).uniform_(-1 / codebook_size, 1 / codebook_size)
        else:
            weight = torch.randn(codebook_size, dim)
        if cosine:
            weight = F.normalize(weight, dim=1)
        if ema:
            self.register_buffer("embed", weight)
        else:
            self.embed = nn.Parameter(weight)
        self.register_buffer("embed_sum", weight.clone() if ema else torch.zeros(0))
        self.register_buffer("cluster_size", torch.ones(codebook_size))
        data_init = init in ("kmeans", "data")
        self.register_buffer("initialized", torch.tensor(not data_init))
        self.register_buffer(
            "usage", torch.zeros(codebook_size, dtype=torch.long), persistent=False
        )
        self._host_initialized: bool | None = not data_init

    def _load_from_state_dict(self, *args, **kw) -> None:  # noqa: ANN002, ANN003 (torch hook)
        super()._load_from_state_dict(*args, **kw)
        self._host_initialized = None

    def is_initialized(self) -> bool:
        if self._host_initialized is None:
            self._host_initialized = bool(self.initialized)
        return self._host_initialized

    def weight(self) -> Tensor:
        """The codes ``[K, d]`` in fp32 that ``search`` and ``lookup`` use. Cosine + learnable:
        the parameter l2-normalised (differentiably), since gradient steps move the raw codes off
        the unit sphere; otherwise the codes as stored (EMA cosine codes are re-normalised by
        every update, so they are used as they are)."""
        if self.cosine and not self.ema:
            return F.normalize(self.embed, dim=1)
        return self.embed

    def lookup(self, ids: Tensor) -> Tensor:
        """``ids`` int64 ``[...]`` -> codes ``[..., d]`` (rows of ``weight()``)."""
        return F.embedding(ids, self.weight())

    def search(self, x: Tensor) -> Tensor:
        """Nearest code ids ``[M]`` of ``x`` ``[M, d]`` among ``weight()`` (fp32, no gradient)."""
        with torch.no_grad():
            return nearest_code(x.float(), self.weight().detach().float(), cosine=self.cosine)

    @torch.no_grad()
    def kmeans_init_(self, x: Tensor) -> None:
        """Initialise the codes from ``x`` ``[M, d]`` (all ranks' vectors): k-means or samples."""
        k = self.codebook_size
        total = global_count(x.shape[0], x.device)
        g = self.generator(salt=1)
        idx = torch.randperm(total, generator=g)[:k] if total >= k else torch.randint(
            total, (k,), generator=g)  # fmt: skip
        centroids = gather_rows(x, idx.to(x.device))
        counts = torch.ones(k, device=x.device)
        iters = self.kmeans_iters if self.init == "kmeans" else 0
        for _ in range(iters):
            sums, counts = batch_stats(x, nearest_code(x, centroids, self.cosine), k)
            means = sums / counts.clamp_min(1.0)[:, None]
            means = F.normalize(means, dim=1) if self.cosine else means
            centroids = torch.where(counts[:, None] > 0, means, centroids)
        self.embed.data.copy_(centroids)
        self.cluster_size.copy_(counts)
        if self.ema:
            self.embed_sum.copy_(centroids * counts[:, None])
        self.initialized.fill_(True)
        self._host_initialized = True

    @torch.no_grad()
    def update_(self, x: Tensor, ids: Tensor) -> dict[str, Tensor]:
        """One training step of codebook maintenance on ``x`` ``[M, d]`` with codes ``ids`` [M].

        EMA counts/sums (all-reduced), new codes (EMA mode), then dead-code restarts. Returns
        metric tensors: batch perplexity, used codes, dead codes (= codes restarted), drift.
        """
        sums, counts = batch_stats(x, ids, self.codebook_size)
        self.usage += counts.long()
        self.cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        old = self.embed.detach().clone()
        if self.ema:
            self.embed_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
            n = self.cluster_size.sum()
            smoothed = (self.cluster_size + self.eps) / (n + self.codebook_size * self.eps) * n
            new = self.embed_sum / smoothed[:, None]
            self.embed.copy_(F.normalize(new, dim=1) if self.cosine else new)
        thr = self.dead_threshold()
        metrics = usage_metrics(counts, self.cluster_size, thr)
        if self.restarts:
            self._restart_dead_(x, thr)
        metrics["drift"] = (self.embed - old).norm() / old.norm().clamp_min(1e-12)
        return metrics

    def dead_threshold(self) -> float | Tensor:
        """EMA count under which a code is dead: ``dead_code_threshold``, or (None)
        ``dead_code_ratio`` x the mean EMA count per code (a 0-dim tensor)."""
        if self.dead_code_threshold is not None:
            return self.dead_code_threshold
        return self.cluster_size.sum() * (self.dead_code_ratio / self.codebook_size)

    def _restart_dead_(self, x: Tensor, thr: float | Tensor) -> None:
        """Replace codes whose EMA count is under ``thr`` by random rows of ``x``."""
        dead = self.cluster_size < thr  # [K]
        total = global_count(x.shape[0], x.device)
        idx = torch.randint(total, (self.codebook_size,), generator=self.generator(salt=2))
        candidates = gather_rows(x, idx.to(x.device))  # [K, d]
        if self.cosine:
            candidates = F.normalize(candidates, dim=1)
        mask = dead[:, None]
        self.embed.data.copy_(torch.where(mask, candidates, self.embed.data))
        if self.ema:
            self.embed_sum.copy_(torch.where(mask, candidates * thr, self.embed_sum))
        self.cluster_size.copy_(torch.where(dead, thr, self.cluster_size))

    @torch.no_grad()
    def count_usage_(self, ids: Tensor) -> dict[str, Tensor]:
        """Eval-time metrics for codes ``ids`` ``[M]``; adds them to the usage histogram."""
        counts = torch.bincount(ids, minlength=self.codebook_size)
        self.usage += counts
        return usage_metrics(counts, self.cluster_size, self.dead_threshold())
