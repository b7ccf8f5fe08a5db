"""Megatron-LM / NeMo indexed dataset shards (``.bin`` + ``.idx``), one document per row.

The format (``megatron.core.datasets.indexed_dataset``, index version 1; NeMo reads the same
files): ``PREFIX.bin`` is every sequence's tokens back to back; ``PREFIX.idx`` is

    b"MMIDIDX\\x00\\x00"  <Q version = 1  <B dtype code (uint16: 8, int32: 4)
    <Q sequence count S   <Q document index count D + 1
    int32 [S] sequence lengths (tokens)   int64 [S] sequence byte offsets into .bin
    int64 [D + 1] document indices: document d is sequences [idx[d], idx[d + 1])

all little-endian. A row is one sequence and one document. Tokens are uint16 when every id
fits (Megatron's own choice for vocabularies under 65,500 ids), else int32. Megatron keeps no
metadata, so the row's other fields go to ``PREFIX.rows.jsonl`` beside it (one JSON object per
row, same order), which Megatron ignores. The ``.bin`` and the sidecar are renamed into place
before the ``.idx``: a shard whose ``.idx`` exists is complete. A shard without rows (every
item failed) has zero sequences and one unused padding token in its ``.bin``, because
Megatron cannot memory-map an empty file.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

from mmtok.errors import InputError
from mmtok.fileutil import atomic_path

HEADER = b"MMIDIDX\x00\x00"
DTYPE_CODES = {np.dtype(np.uint8): 1, np.dtype(np.int32): 4, np.dtype(np.uint16): 8}


def token_dtype(vocab_dtype: np.dtype) -> np.dtype:
    """uint16 when the vocabulary's ids fit in it, else int32 (what Megatron's readers expect)."""
    if np.dtype(vocab_dtype).itemsize <= 2:
        return np.dtype(np.uint16)
    if np.dtype(vocab_dtype).itemsize <= 4:
        return np.dtype(np.int32)
    raise InputError(f"vocabulary ids of type {np.dtype(vocab_dtype).name} do not fit the "
                     "Megatron indexed format (int32 at most)")  # fmt: skip


def sidecar(idx_path: Path) -> Path:
    return idx_path.with_suffix(".rows.jsonl")


def write_megatron(path: Path, rows: list[dict], dtype: np.dtype, meta_fields: tuple) -> None:
    """Write ``path`` (``.idx``), its ``.bin`` and ``.rows.jsonl``; ``dtype``: the vocabulary's."""
    out = token_dtype(dtype)
    seqs = [np.asarray(r["tokens"]).astype(out) for r in rows]
    lengths = np.array([s.size for s in seqs], dtype=np.int32)
    pointers = np.concatenate([[0], np.cumsum(lengths[:-1], dtype=np.int64)]) * out.itemsize
    with atomic_path(path.with_suffix(".bin")) as tmp, open(tmp, "wb") as f:
        for s in seqs:
            f.write(s.tobytes(order="C"))
        if not seqs:  # every item failed: Megatron cannot memory-map an empty .bin
            f.write(np.zeros(1, out).tobytes())
    with atomic_path(sidecar(path)) as tmp:
        tmp.write_text("".join(json.dumps({k: r[k] for k in meta_fields}) + "\n" for r in rows))
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(HEADER + struct.pack("<Q", 1) + struct.pack("<B", DTYPE_CODES[out]))
        f.write(struct.pack("<Q", len(seqs)) + struct.pack("<Q", len(seqs) + 1))
        f.write(lengths.tobytes())
        f.write(pointers.astype(np.int64)[: len(seqs)].tobytes())
        f.write(np.arange(len(seqs) + 1, dtype=np.int64).tobytes())


def read_megatron(path: Path) -> list[dict]:
    """Rows of one shard (tokens from ``.bin`` / ``.idx``, the rest from the sidecar)."""
    idx = Path(path).read_bytes()
    if idx[: len(HEADER)] != HEADER:
        raise InputError(f"{str(path)!r}: not a Megatron indexed dataset index")
    pos = len(HEADER) + 8
    (code,) = struct.unpack_from("<B", idx, pos)
    dtype = {c: d for d, c in DTYPE_CODES.items()}[code]
    n, _ = struct.unpack_from("<QQ", idx, pos + 1)
    lengths = np.frombuffer(idx, np.int32, n, pos + 17)
    pointers = np.frombuffer(idx, np.int64, n, pos + 17 + 4 * n)
    data = np.memmap(Path(path).with_suffix(".bin"), dtype=np.uint8, mode="r")
    lines = sidecar(Path(path)).read_text().splitlines()
    rows = []
    for line, length, ptr in zip(lines, lengths, pointers, strict=True):
        tokens = np.frombuffer(data[ptr : ptr + length * dtype.itemsize].tobytes(), dtype)
        rows.append({**json.loads(line), "tokens": tokens})
    return rows
