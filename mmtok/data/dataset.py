"""TokenSequenceDataset: shards -> fixed-length training sequences (nanoGPT style).

Legend: L = ``block_size``. Rows are concatenated in shard order, each followed by ``<eos>``,
into one stream; item i is the window ``stream[i*L : i*L + L + 1]`` split into inputs ``x``
``[L]`` and next-token targets ``y`` ``[L]`` (int64). The last partial window is dropped.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
from torch.utils.data import Dataset

from mmtok.data.shards import read_rows
from mmtok.errors import InputError


class TokenSequenceDataset(Dataset):
    """Fixed-length (x, y) pairs from a prep output folder (Parquet, WebDataset or Megatron
    shards).

    Args:
        root: the folder ``mmtok prep`` wrote (shards + vocab.json).
        block_size: L, tokens per training sequence.
        modalities: keep only rows of these modalities (default: all).
    """

    def __init__(
        self, root: str | os.PathLike, block_size: int, modalities: list[str] | None = None
    ) -> None:
        root = Path(root)
        vocab_path = root / "vocab.json"
        if not vocab_path.is_file():
            raise InputError(f"{str(root)!r}: no vocab.json (not a `mmtok prep` output folder)")
        if block_size < 1:
            raise InputError(f"block_size must be >= 1, got {block_size}")
        self.vocab = json.loads(vocab_path.read_text())
        self.block_size = block_size
        eos = self.vocab["specials"]["<eos>"]
        parts = []
        shards = [
            p for ext in (".parquet", ".tar", ".idx") for p in sorted(root.glob(f"shard-*{ext}"))
        ]
        for shard in shards:
            for row in self._rows(shard):
                if modalities is None or row["modality"] in modalities:
                    parts += [np.asarray(row["tokens"], dtype=np.int64), np.array([eos])]
        self.stream = torch.from_numpy(np.concatenate(parts)) if parts else torch.zeros(0).long()

    @staticmethod
    def _rows(shard: Path) -> list[dict]:
        if shard.suffix == ".parquet":
            return pq.read_table(shard, columns=["modality", "tokens"]).to_pylist()
        return read_rows(shard)

    def __len__(self) -> int:
        return max(0, (self.stream.numel() - 1) // self.block_size)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= i < len(self):
            raise IndexError(i)
        w = self.stream[i * self.block_size : (i + 1) * self.block_size + 1]
        return w[:-1], w[1:]
