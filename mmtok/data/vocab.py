"""One token vocabulary over every tokenizer of a dataset.

Layout (``vocab.json``, format ``mmtok.vocab/1``): special tokens first (pad, bos, eos, mask,
then a begin/end marker per modality), then one contiguous id range per (tokenizer, level)
at a recorded offset. A dataset row's ``tokens`` are ``<modality> level_0 ... level_n
</modality>`` with each level's flattened ids (``Tokens.flatten()``: raster order over the
grid, the Q codes of one position adjacent) shifted by that level's offset.

Offsets are assigned in a fixed order (modality image, audio, video; then level order), so
the same tokenizers always give the same vocabulary; an existing vocab.json is reused and a
mismatch is an error rather than a silent renumbering.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from mmtok.errors import InputError
from mmtok.fileutil import atomic_path

VOCAB_FORMAT = "mmtok.vocab/1"
MODALITIES = ("image", "audio", "video")
SPECIALS = ["<pad>", "<bos>", "<eos>", "<mask>"] + [
    f"<{t}{m}>" for m in MODALITIES for t in ("", "/")
]


@dataclass(frozen=True)
class LevelRange:
    """Ids ``[offset, offset + size)`` hold codes ``[0, size)`` of one tokenizer level."""

    modality: str
    tokenizer: str  # preset name or checkpoint path
    fingerprint: str  # config + weights hash of that tokenizer
    level: int
    offset: int
    size: int  # codebook size K
    num_codebooks: int  # Q streams, adjacent per position in the flattened order


@dataclass
class Vocabulary:
    """Special tokens + per-level ranges; ``size`` is the total number of ids."""

    ranges: list[LevelRange]

    @property
    def specials(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(SPECIALS)}

    @property
    def size(self) -> int:
        return max([len(SPECIALS)] + [r.offset + r.size for r in self.ranges])

    def dtype(self) -> np.dtype:
        """Smallest unsigned integer type that holds every id."""
        for dt in (np.uint8, np.uint16, np.uint32):
            if self.size <= np.iinfo(dt).max + 1:
                return np.dtype(dt)
        return np.dtype(np.int64)

    def range_of(self, fingerprint: str, level: int) -> LevelRange:
        for r in self.ranges:
            if r.fingerprint == fingerprint and r.level == level:
                return r
        raise InputError(f"vocabulary has no range for tokenizer {fingerprint} level {level}")

    @classmethod
    def build(cls, levels: list[tuple[str, str, str, int, int, int]]) -> Vocabulary:
        """``levels``: (modality, name, fingerprint, level, K, Q) in any order."""
        order = sorted(levels, key=lambda v: (MODALITIES.index(v[0]), v[1], v[3]))
        ranges, offset = [], len(SPECIALS)
        for modality, name, fp, level, k, q in order:
            ranges.append(LevelRange(modality, name, fp, level, offset, k, q))
            offset += k
        return cls(ranges)

    def to_json(self) -> dict:
        return {
            "format": VOCAB_FORMAT,
            "size": self.size,
            "dtype": self.dtype().name,
            "specials": self.specials,
            "ranges": [asdict(r) for r in self.ranges],
            "row_layout": "<modality> level_0 ... level_n </modality>, level ids + offset",
            "flatten_order": "raster over the grid (t, then h, then w); Q codes adjacent",
        }

    def save(self, path: str | os.PathLike) -> None:
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(self.to_json(), indent=2))

    @classmethod
    def load(cls, path: str | os.PathLike) -> Vocabulary:
        data = json.loads(Path(path).read_text())
        if data.get("format") != VOCAB_FORMAT:
            raise InputError(f"{str(path)!r}: not a {VOCAB_FORMAT} file")
        return cls([LevelRange(**r) for r in data["ranges"]])
