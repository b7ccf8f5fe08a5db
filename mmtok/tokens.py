"""Tokens: the ids a tokenizer produced plus what is needed to decode them.

Legend: B batch, Q code streams per position, grid = (h, w) image | (t,) audio | (t, h, w)
video, L = Q * prod(grid) flattened length.

``flatten`` gives the sequence a model sees: raster order over the grid (t, then h, then w),
the Q codes of one position adjacent. ``unflatten`` inverts it. ``save``/``load`` keep the ids
and metadata in one safetensors file (no pickle).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, replace

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from mmtok.errors import InputError
from mmtok.fileutil import atomic_path, require_file

TOKENS_FORMAT = "mmtok.tokens/1"


@dataclass
class Tokens:
    """ids ``[B, Q, *grid]`` int64 in ``[0, codebook_size)`` with their provenance.

    input_size: spatial/temporal size of the original input per sample ((H, W), (T,), (T, H, W)),
        so ``decode`` crops the padding back off.
    tokenizer_id: fingerprint (config + weights hash) of the tokenizer that made the ids.
    tokenizer_name: preset name or checkpoint path the tokenizer was loaded from ("" if unknown).
    """

    ids: Tensor
    input_size: tuple[int, ...]
    codebook_size: int
    modality: str
    tokenizer_id: str = ""
    tokenizer_name: str = ""

    @property
    def grid(self) -> tuple[int, ...]:
        return tuple(self.ids.shape[2:])

    @property
    def num_codebooks(self) -> int:
        return self.ids.shape[1]

    def flatten(self) -> Tensor:
        """``[B, L]`` ids in raster order over the grid, the Q codes of a position adjacent."""
        b, q = self.ids.shape[:2]
        return self.ids.reshape(b, q, -1).transpose(1, 2).reshape(b, -1)

    def unflatten(self, seq: Tensor) -> Tokens:
        """Inverse of ``flatten``: ``seq`` ``[B, L]`` -> Tokens with this grid and metadata."""
        q, grid = self.num_codebooks, self.grid
        if seq.ndim != 2 or seq.shape[1] != q * math.prod(grid):
            raise InputError(
                f"seq: expected [B, {q * math.prod(grid)}] for grid {grid} x Q={q}, "
                f"got {list(seq.shape)}"
            )
        ids = seq.reshape(seq.shape[0], -1, q).transpose(1, 2).reshape(seq.shape[0], q, *grid)
        return replace(self, ids=ids)

    def to(self, device: str | torch.device) -> Tokens:
        return replace(self, ids=self.ids.to(device))

    def save(self, path: str | os.PathLike) -> None:
        """Write ids and metadata to one safetensors file, atomically."""
        meta = {
            "format": TOKENS_FORMAT,
            "input_size": json.dumps(list(self.input_size)),
            "codebook_size": str(self.codebook_size),
            "modality": self.modality,
            "tokenizer_id": self.tokenizer_id,
            "tokenizer_name": self.tokenizer_name,
        }
        with atomic_path(path) as tmp:
            save_file({"ids": self.ids.contiguous().cpu()}, str(tmp), metadata=meta)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Tokens:
        """Read a file written by ``save``; InputError naming the path if it is not one."""
        p = require_file(path, "token file")
        try:
            from safetensors import safe_open

            with safe_open(str(p), framework="pt") as f:
                meta = f.metadata() or {}
            ids = load_file(str(p))["ids"]
        except (SafetensorError, OSError, KeyError, ValueError) as e:
            raise InputError(f"token file {str(p)!r} is not a valid mmtok token file: {e}") from e
        if meta.get("format") != TOKENS_FORMAT:
            raise InputError(f"token file {str(p)!r}: format {meta.get('format')!r}, "
                             f"expected {TOKENS_FORMAT!r}")  # fmt: skip
        return cls(
            ids=ids,
            input_size=tuple(json.loads(meta["input_size"])),
            codebook_size=int(meta["codebook_size"]),
            modality=meta["modality"],
            tokenizer_id=meta["tokenizer_id"],
            tokenizer_name=meta.get("tokenizer_name", ""),
        )
