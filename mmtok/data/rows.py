"""Decoded samples -> dataset rows: batched media encodes, text ids, the row layout.

Legend: B batch, L flattened length of one level (Q codes per grid position, adjacent).

A row's ``tokens`` are the sample's segments in order: a text segment is the text tokenizer's
ids, unchanged; a media segment is ``<modality> level_0 ... level_n </modality>``, each level's
flattened ids plus their code stream's offset. ``grid`` holds every level's grid of every media
segment, and ``input_size`` every media segment's original size, concatenated in that order;
``source_sample_rate`` / ``source_channels`` hold one entry per media segment: an audio file's
own rate and channel count (what it was before it was read at the tokenizer's rate and
channels), 0 for images and video. ``split`` is the manifest's (``train`` by default) and
``source_rel`` the source path relative to its input root (see ``Item.rel``).
Samples with one media segment of the same modality and shape are encoded in one batch (ids are
batch-invariant, so batching never changes them); the others one media segment at a time.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from mmtok.data.encoders import Encoder, JobTokenizers
from mmtok.data.manifest import Item
from mmtok.media import duration_s


@dataclass
class MediaCodes:
    """The encoded levels of one media segment."""

    encoder: Encoder
    flats: list[np.ndarray]  # per level: int64 [L] codes in [0, K)
    grids: list[tuple[int, ...]]  # per level
    input_size: list[int]
    duration_s: float | None


def batches(decoded: Iterator, batch: int) -> Iterator:
    """``(group, None)`` of consecutive samples to encode together, or ``([], (item, error))``
    for a sample that failed to decode. A group is same-modality, same-shape single-media
    samples (at most ``batch``), or one sample of any other kind."""
    group: list = []
    for item, xs, err in decoded:
        if err is not None:
            yield [], (item, err)
            continue
        single = not item.segments  # its media alone
        if group and (not single or group[0][0].modality != item.modality
                      or group[0][1][0].shape != xs[0].shape or len(group) == batch):  # fmt: skip
            yield group, None
            group = []
        group.append((item, xs))
        if not single:
            yield group, None
            group = []
    if group:
        yield group, None


def _encode(enc: Encoder, xs: list[np.ndarray]) -> list[MediaCodes]:
    """One batched encode per level of same-shape inputs ``[1, C, *S]`` each."""
    batch = torch.from_numpy(np.concatenate(xs))
    per_level = [tok.encode(batch) for tok in enc.levels]
    out = []
    for i, x in enumerate(xs):
        x = torch.from_numpy(x)
        out.append(MediaCodes(enc, [t.flatten()[i].numpy() for t in per_level],
                              [t.grid for t in per_level], list(x.shape[2:]),
                              duration_s(x, enc.spec)))  # fmt: skip
    return out


def encode_group(group: list, tk: JobTokenizers) -> list[dict]:
    """Rows of a group from ``batches`` (in group order)."""
    items = [item for item, _ in group]
    if not items[0].segments:  # same-shape samples that are their media alone
        codes = [[c] for c in _encode(tk.media[items[0].modality], [xs[0] for _, xs in group])]
    else:
        xs, media = group[0][1], items[0].media()
        codes = [[_encode(tk.media[m], [x])[0] for (m, _), x in zip(media, xs, strict=True)]]
    return [make_row(item, c, tk) for item, c in zip(items, codes, strict=True)]


def _media_tokens(m: str, mc: MediaCodes, tk: JobTokenizers) -> list[np.ndarray]:
    sp = tk.vocab.specials
    parts = [np.array([sp[f"<{m}>"]])]
    for level, (tok, flat) in enumerate(zip(mc.encoder.levels, mc.flats, strict=True)):
        offsets = tk.vocab.offsets(tok.fingerprint(), level)  # [Q]; flat holds Q codes a position
        parts.append(flat + np.tile(offsets, flat.size // offsets.size))
    parts.append(np.array([sp[f"</{m}>"]]))
    return parts


def make_row(item: Item, media: list[MediaCodes], tk: JobTokenizers) -> dict:
    """The row of one sample from its media segments' codes (text is tokenized here)."""
    parts, grid, size, seconds, codes = [], [], [], [], iter(media)
    for kind, value in item.parts():
        if kind == "text":
            parts.append(tk.text.encode(value))
            continue
        mc = next(codes)
        parts += _media_tokens(kind, mc, tk)
        grid += [g for level_grid in mc.grids for g in level_grid]
        size += mc.input_size
        seconds.append(mc.duration_s)
    tokens = np.concatenate(parts).astype(tk.vocab.dtype())
    from mmtok.audio.io import audio_info  # header only; torchaudio loads with audio

    sources = [audio_info(path) if m == "audio" else None for m, path in item.media()]
    names = dict.fromkeys(mc.encoder.name for mc in media)  # in order, once each
    timed = [s for s in seconds if s is not None]
    return {
        "key": item.key, "source": item.path, "source_rel": item.rel, "split": item.split,
        "modality": item.modality,
        "tokenizer": ";".join(names), "grid": grid, "input_size": size,
        "duration_s": sum(timed) if timed else None, "num_tokens": int(tokens.size),
        "tokens": tokens,
        "source_sample_rate": [s["sample_rate"] if s else 0 for s in sources],
        "source_channels": [s["channels"] if s else 0 for s in sources],
    }  # fmt: skip
