"""A dataset row (or a generated sequence) back to its text segments and media ``Tokens``.

Legend: Q code streams of a level, G channel groups (1 unless a mono audio tokenizer coded
each channel alone), grid the level's token grid; a level's media codes are G * Q * prod(grid)
ids, stream q of a position at flattened index ``j % Q``.

The row layout is ``mmtok.data.rows``'s: text ids as they are, media as ``<m> level_0 ...
level_n </m>``. Each level's codes lie in that level's own ranges, so a level ends where its
ranges end; its grid comes from the row's ``grid`` (and the original size from
``input_size``), consumed in order. Anything else - an id outside the vocabulary, a media code
outside a segment or of the wrong level or stream, a sequence cut inside a segment, a missing
closing marker - is an ``InputError`` naming the position.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
import torch

from mmtok.data.text import TextTokenizer
from mmtok.data.vocab import MODALITIES, LevelRange, Vocabulary
from mmtok.errors import InputError
from mmtok.tokens import Tokens

GRID_RANK = {"image": 2, "audio": 1, "video": 3}  # (h, w) | (t,) | (t, h, w)


@dataclass
class TextSegment:
    ids: list[int]  # the text tokenizer's ids
    text: str | None  # decoded, when the vocabulary's text tokenizer could be loaded


@dataclass
class MediaSegment:
    modality: str
    levels: list[Tokens]  # one per tokenizer level, in row order (coarse to fine)


class _Cursor:
    """Reads a row's flat int list (``grid`` / ``input_size``) a few values at a time."""

    def __init__(self, values: object, name: str) -> None:
        self.values, self.name, self.at = [int(v) for v in (values or [])], name, 0

    def take(self, n: int, pos: int) -> tuple[int, ...]:
        if self.at + n > len(self.values):
            raise InputError(f"position {pos}: the row's {self.name} has no entry left for "
                             f"this segment ({len(self.values)} values)")  # fmt: skip
        self.at += n
        return tuple(self.values[self.at - n : self.at])


def _level_codes(tokens: np.ndarray, pos: int, streams: list[LevelRange], where: str) -> int:
    """End position of the run of ``streams``' codes starting at ``pos`` (checked per stream)."""
    q = len(streams)
    end = pos
    while end < tokens.size and any(r.offset <= tokens[end] < r.offset + r.size for r in streams):
        r = streams[(end - pos) % q]
        if not r.offset <= tokens[end] < r.offset + r.size:
            raise InputError(
                f"position {end}: id {int(tokens[end])} is not a code of {where} "
                f"stream {r.stream} (ids {r.offset}..{r.offset + r.size - 1})"
            )
        end += 1
    return end


def _media(tokens: np.ndarray, start: int, m: str, vocab: Vocabulary, grid: _Cursor,
           size: _Cursor) -> tuple[MediaSegment, int]:  # fmt: skip
    """The media segment whose ``<m>`` is at ``start``; returns it and the position after it."""
    by_level: dict[int, list[LevelRange]] = {}
    for r in sorted(vocab.ranges, key=lambda r: (r.level, r.stream)):
        if r.modality == m:
            by_level.setdefault(r.level, []).append(r)
    if not by_level:
        raise InputError(f"position {start}: <{m}> but the vocabulary has no {m} tokenizer")
    pos, levels, rank = start + 1, [], GRID_RANK[m]
    for level, streams in sorted(by_level.items()):
        where = f"{m} level {level}"
        end = _level_codes(tokens, pos, streams, where)
        g = grid.take(rank, pos)
        per_group = len(streams) * math.prod(g)
        if end == pos or (end - pos) % per_group:
            cut = "the sequence ends" if end == tokens.size else f"id {int(tokens[end])} comes"
            raise InputError(f"position {end}: {cut} after {end - pos} codes of {where} (grid "
                             f"{list(g)} x {len(streams)} streams: a multiple of {per_group} "
                             f"expected) in the <{m}> segment opened at {start}")  # fmt: skip
        groups = (end - pos) // per_group
        offsets = np.tile([r.offset for r in streams], (end - pos) // len(streams))
        flat = torch.from_numpy(tokens[pos:end].astype(np.int64) - offsets)[None]
        levels.append((streams[0], flat, g, groups))
        pos = end
    close = vocab.specials[f"</{m}>"]
    if pos >= tokens.size or tokens[pos] != close:
        got = "the sequence ends" if pos >= tokens.size else f"got id {int(tokens[pos])}"
        raise InputError(f"position {pos}: expected </{m}> closing the segment opened at "
                         f"{start}; {got}")  # fmt: skip
    input_size = size.take(rank, start)
    out = []
    for r, flat, g, groups in levels:
        template = Tokens(torch.zeros(1, groups * r.num_codebooks, *g, dtype=torch.long),
                          input_size, r.size, m, r.fingerprint, r.tokenizer)  # fmt: skip
        if groups > 1:  # channels coded alone (mono tokenizer, multi-channel file)
            template = Tokens(template.ids, input_size, r.size, m, r.fingerprint, r.tokenizer,
                              channels=groups)  # fmt: skip
        out.append(template.unflatten(flat))
    return MediaSegment(m, out), pos + 1


def _vocabulary(vocab: Vocabulary | str | os.PathLike) -> Vocabulary:
    return vocab if isinstance(vocab, Vocabulary) else Vocabulary.load(vocab)


def decode_row(row: dict, vocab: Vocabulary | str | os.PathLike,
               text: TextTokenizer | None = None) -> list[TextSegment | MediaSegment]:  # fmt: skip
    """The segments of ``row`` (a shard row, or ``{"tokens", "grid", "input_size"}`` of a
    generated sequence) in order. ``vocab``: the dataset's ``Vocabulary`` or vocab.json path;
    ``text``: the text tokenizer (None: the vocabulary's, loaded from its recorded path when
    it is there; else text segments carry ids only). ``Tokens.decode``-ready media: a
    tokenizer's ``decode(segment.levels[i])`` gives the media back."""
    vocab = _vocabulary(vocab)
    if text is None and vocab.text is not None and os.path.exists(vocab.text.tokenizer):
        text = TextTokenizer(vocab.text.tokenizer)
    tokens = np.asarray(row["tokens"]).astype(np.int64)
    opening = {vocab.specials[f"<{m}>"]: m for m in MODALITIES}
    text_size = vocab.text.size if vocab.text else 0
    grid, size = _Cursor(row.get("grid"), "grid"), _Cursor(row.get("input_size"), "input_size")
    out: list[TextSegment | MediaSegment] = []
    pos = 0
    while pos < tokens.size:
        t = int(tokens[pos])
        if 0 <= t < text_size:
            if not out or not isinstance(out[-1], TextSegment):
                out.append(TextSegment([], None))
            out[-1].ids.append(t)
            pos += 1
        elif t in opening:
            segment, pos = _media(tokens, pos, opening[t], vocab, grid, size)
            out.append(segment)
        else:
            names = {i: n for n, i in vocab.specials.items()}
            what = (f"{names[t]} outside a media segment" if t in names
                    else "a media code outside a media segment" if 0 <= t < vocab.size
                    else f"outside the vocabulary (size {vocab.size})")  # fmt: skip
            raise InputError(f"position {pos}: id {t} is {what}")
    for seg in out:
        if isinstance(seg, TextSegment) and text is not None:
            seg.text = text.decode(seg.ids)
    return out
