"""One token vocabulary over every tokenizer of a dataset.

Layout (``vocab.json``, format ``mmtok.vocab/2``): a text tokenizer's ids first and unchanged
when the dataset has one (``text``: ids ``[0, text.size)``), then the special tokens (pad, bos,
eos, mask, then a begin/end marker per modality), then one contiguous id range per (tokenizer,
level, code stream) at a recorded offset: a residual-VQ level with Q streams gets Q ranges, so a
sequence model can tell the streams apart. A dataset row's media segment is ``<modality>
level_0 ... level_n </modality>`` with each level's flattened ids (``Tokens.flatten()``:
raster order over the grid, the Q codes of one position adjacent), code ``c`` of stream ``q``
written as ``offset(level, q) + c``.

Offsets depend only on the tokenizers (assigned in a fixed order: modality image, audio,
video; then level, then stream), never on which files a folder holds, so datasets prepped
separately with the same tokenizers share their ids; ``Vocabulary.differences`` names what
differs when they do not.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass

import numpy as np

from mmtok.errors import InputError
from mmtok.fileutil import atomic_path, require_file

VOCAB_FORMAT = "mmtok.vocab/2"
_OLD_FORMAT = "mmtok.vocab/1"  # one range per level (Q streams shared it); no stream field
MODALITIES = ("image", "audio", "video")
SPECIALS = ["<pad>", "<bos>", "<eos>", "<mask>"] + [
    f"<{t}{m}>" for m in MODALITIES for t in ("", "/")
]


@dataclass(frozen=True)
class TextRange:
    """Ids ``[0, size)`` are the text tokenizer's own ids."""

    tokenizer: str  # the path it was loaded from
    fingerprint: str  # sha256 of its tokenizer.json (16 hex chars)
    size: int


@dataclass(frozen=True)
class LevelSpec:
    """What the vocabulary needs of one tokenizer level."""

    modality: str
    tokenizer: str  # preset name or checkpoint path (as the user named it)
    fingerprint: str  # config + weights hash of that level
    level: int
    size: int  # K: codes of each stream are in [0, K)
    num_codebooks: int  # Q streams, adjacent per position in the flattened order


@dataclass(frozen=True)
class LevelRange:
    """Ids ``[offset, offset + size)`` hold codes ``[0, size)`` of stream ``stream`` of one
    tokenizer level."""

    modality: str
    tokenizer: str  # preset name or checkpoint path
    fingerprint: str  # config + weights hash of that tokenizer level
    level: int
    stream: int  # code stream q in [0, num_codebooks)
    offset: int
    size: int  # codebook size K
    num_codebooks: int  # Q streams of the level, adjacent per position in the flattened order

    def where(self) -> str:
        return f"{self.modality} level {self.level} stream {self.stream}"


@dataclass
class Vocabulary:
    """Text ids, special tokens, per-(level, stream) ranges; ``size``: the number of ids."""

    ranges: list[LevelRange]
    text: TextRange | None = None

    @property
    def specials(self) -> dict[str, int]:
        base = self.text.size if self.text else 0
        return {name: base + i for i, name in enumerate(SPECIALS)}

    @property
    def size(self) -> int:
        first = (self.text.size if self.text else 0) + len(SPECIALS)
        return max([first] + [r.offset + r.size for r in self.ranges])

    def dtype(self) -> np.dtype:
        """Smallest unsigned integer type that holds every id."""
        for dt in (np.uint8, np.uint16, np.uint32):
            if self.size <= np.iinfo(dt).max + 1:
                return np.dtype(dt)
        return np.dtype(np.int64)

    def offsets(self, fingerprint: str, level: int) -> np.ndarray:
        """int64 ``[Q]``: the offset of each code stream of one tokenizer level."""
        found = sorted((r.stream, r.offset) for r in self.ranges
                       if r.fingerprint == fingerprint and r.level == level)  # fmt: skip
        if not found:
            raise InputError(f"vocabulary has no range for tokenizer {fingerprint} level {level}")
        return np.array([offset for _, offset in found], dtype=np.int64)

    def tokenizers(self) -> dict[str, str]:
        """modality -> tokenizer name, as recorded (what ``--vocab`` reuses)."""
        return {r.modality: r.tokenizer for r in self.ranges}

    @classmethod
    def build(cls, levels: list[LevelSpec], text: TextRange | None = None) -> Vocabulary:
        """Ranges for ``levels`` (in any order): Q ranges of K ids per level, in the fixed
        order modality, tokenizer name, level, stream, after the text ids and specials."""
        order = sorted(levels, key=lambda v: (MODALITIES.index(v.modality), v.tokenizer, v.level))
        ranges, offset = [], (text.size if text else 0) + len(SPECIALS)
        for v in order:
            for q in range(v.num_codebooks):
                ranges.append(LevelRange(v.modality, v.tokenizer, v.fingerprint, v.level, q,
                                         offset, v.size, v.num_codebooks))  # fmt: skip
                offset += v.size
        return cls(ranges, text)

    def differences(self, other: Vocabulary) -> list[str]:
        """What ``other`` (e.g. a reused vocab.json) has that this one does not, per range."""
        mine = {(r.modality, r.level, r.stream): r for r in self.ranges}
        theirs = {(r.modality, r.level, r.stream): r for r in other.ranges}
        out = []
        a, b = self.text, other.text
        if (a and (a.fingerprint, a.size)) != (b and (b.fingerprint, b.size)):
            said = [f"{t.tokenizer!r} fingerprint {t.fingerprint}, {t.size} ids" if t else "none"
                    for t in (b, a)]  # fmt: skip
            out.append(f"text tokenizer: {said[0]} in the vocabulary; {said[1]} in this job")
        for key in sorted(mine.keys() | theirs.keys(), key=lambda k: (MODALITIES.index(k[0]),
                                                                     *k[1:])):  # fmt: skip
            a, b = mine.get(key), theirs.get(key)
            if a is None or b is None:
                r = a or b
                side = "this job" if a else "the vocabulary"
                out.append(f"{r.where()} ({r.tokenizer!r}) only in {side}")
            elif (a.fingerprint, a.size, a.offset) != (b.fingerprint, b.size, b.offset):
                out.append(f"{a.where()}: {b.tokenizer!r} fingerprint {b.fingerprint}, "
                           f"{b.size} codes at {b.offset} in the vocabulary; {a.tokenizer!r} "
                           f"fingerprint {a.fingerprint}, {a.size} codes at {a.offset} "
                           "in this job")  # fmt: skip
        return out

    def to_json(self) -> dict:
        return {
            "format": VOCAB_FORMAT,
            "size": self.size,
            "dtype": self.dtype().name,
            "text": asdict(self.text) if self.text else None,
            "specials": self.specials,
            "ranges": [asdict(r) for r in self.ranges],
            "row_layout": "segments in order: text ids as the text tokenizer gives them; media "
            "as <modality> level_0 ... level_n </modality>, code c of stream q of a level "
            "written as id offset(level, q) + c",
            "flatten_order": "raster over the grid (t, then h, then w); Q codes adjacent",
        }

    def save(self, path: str | os.PathLike) -> None:
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(self.to_json(), indent=2))

    @classmethod
    def load(cls, path: str | os.PathLike) -> Vocabulary:
        """Read a vocab.json; InputError naming the path when it is not one. A
        ``mmtok.vocab/1`` file is read as the same layout when every level has one stream."""
        p = require_file(path, "vocabulary")
        try:
            data = json.loads(p.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise InputError(f"vocabulary {str(p)!r} is not JSON: {e}") from None
        fmt = data.get("format") if isinstance(data, dict) else None
        if fmt not in (VOCAB_FORMAT, _OLD_FORMAT):
            raise InputError(f"vocabulary {str(p)!r}: format {fmt!r}, expected {VOCAB_FORMAT!r}")
        ranges = data.get("ranges")
        if fmt == _OLD_FORMAT:
            if any(r.get("num_codebooks") != 1 for r in ranges):
                raise InputError(f"vocabulary {str(p)!r} ({_OLD_FORMAT}) shares one range "
                                 "between the code streams of a residual-VQ level; "
                                 "it cannot be reused: prep into a new dataset")  # fmt: skip
            ranges = [{**r, "stream": 0} for r in ranges]
        try:
            text = TextRange(**data["text"]) if data.get("text") else None
            return cls([LevelRange(**r) for r in ranges], text)
        except TypeError as e:
            raise InputError(f"vocabulary {str(p)!r}: bad range ({e})") from None
