"""Collective helpers for the quantizers; every one is a no-op in a single process.

Legend: K codebook size, d code dim, M local vectors, R ranks.

Under ``torch.distributed`` the codebook statistics are all-reduced, so every rank applies the
same EMA update, and random choices (k-means seeds, restarts) index the *concatenation* of all
ranks' vectors with a generator that is identical on every rank. The result equals one process
trained on the concatenated batch.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor


def is_distributed() -> bool:
    """True when a process group with more than one rank is initialised."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce_sum_(t: Tensor) -> Tensor:
    """Sum ``t`` over ranks in place (no-op in a single process); returns ``t``."""
    if is_distributed():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def global_sizes(m: int, device: torch.device) -> list[int]:
    """Number of local vectors of every rank, in rank order (``[m]`` in a single process)."""
    if not is_distributed():
        return [m]
    sizes = torch.zeros(dist.get_world_size(), dtype=torch.long, device=device)
    sizes[dist.get_rank()] = m
    all_reduce_sum_(sizes)
    return sizes.tolist()


def gather_rows(local: Tensor, index: Tensor) -> Tensor:
    """Rows ``index`` of the concatenation (in rank order) of every rank's ``local`` ``[M, d]``.

    ``index`` ``[n]`` (int64, identical on every rank) indexes the virtual concatenated tensor;
    each rank contributes the rows it owns and an all-reduce assembles them, so the result is
    ``[n, d]`` and identical everywhere without gathering whole batches.
    """
    if not is_distributed():
        return local[index]
    sizes = global_sizes(local.shape[0], local.device)
    start = sum(sizes[: dist.get_rank()])
    mine = (index >= start) & (index < start + local.shape[0])
    rows = torch.zeros(index.shape[0], local.shape[1], dtype=local.dtype, device=local.device)
    rows[mine] = local[index[mine] - start]
    return all_reduce_sum_(rows)


def global_count(m: int, device: torch.device) -> int:
    """Total number of vectors over all ranks."""
    return sum(global_sizes(m, device))
