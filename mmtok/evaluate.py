"""``mmtok eval``: score tokenizers side by side on the same media (issue 17).

Legend: B batch (1 here), Q code streams, K codebook size; tensors float in [-1, 1].

Per tokenizer, over the items of its modality in a folder or manifest (``--limit`` each):
quality means (image / video: PSNR, SSIM; audio: SI-SNR, SNR, mel distance), codebook usage
and perplexity over the whole set per code stream, tokens and bits per item (and per second
for audio / video), encode and decode throughput. ``codec=True`` adds, per tokenizer, the
classical codec at the same bits on the same items (``mmtok.codecs``: JPEG and WebP for
images, Opus for audio; none for video yet). Bad files are recorded and skipped.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from mmtok import codecs
from mmtok.errors import InputError, MmtokError
from mmtok.fileutil import atomic_path
from mmtok.media import MediaSpec, duration_s, read_media
from mmtok.metrics import mel_distance, psnr, si_snr, snr, ssim


@dataclass
class Score:
    """One row: a tokenizer, or a codec at that tokenizer's bits (``matched`` names it)."""

    coder: str
    modality: str
    items: int = 0
    quality: dict[str, float] = field(default_factory=dict)  # metric -> mean over items
    bits_per_item: float = 0.0
    tokens_per_item: float | None = None
    tokens_per_s: float | None = None
    kbps: float | None = None  # audio / video: kbit/s (audio: per channel)
    usage: list[float] | None = None  # per stream: distinct codes used / K
    perplexity: list[float] | None = None  # per stream: exp(entropy of code counts)
    encode_per_s: float | None = None  # items/s
    decode_per_s: float | None = None
    matched: str = ""
    note: str = ""


def quality(modality: str, x: Tensor, y: Tensor, sample_rate: int | None) -> dict[str, float]:
    """Quality of ``y`` against ``x`` (``[1, ...]``) for ``modality``."""
    if modality == "audio":
        return {"SI-SNR": si_snr(x, y), "SNR": snr(x, y), "mel": mel_distance(x, y, sample_rate)}
    out = {"PSNR": psnr(x, y)}
    if min(x.shape[-2:]) >= 11:  # SSIM's window
        out["SSIM"] = ssim(x, y)
    return out


CodecScores = dict[str, tuple[dict[str, float], float, bool]]


def _codec_quality(modality: str, x: Tensor, bits: float, secs: float | None,
                   rate: int | None) -> CodecScores:  # fmt: skip
    """codec name -> (quality, bits used, fits) of ``x`` at ``bits``."""
    if modality == "image":
        out = {}
        for fmt in codecs.IMAGE_CODECS:
            r = codecs.codec_at_bits(x[0], fmt, bits)
            out[fmt] = (quality("image", x, r.recon[None], None), float(r.bits), r.fits)
        return out
    if modality == "audio" and secs:
        r = codecs.opus_at_bitrate(x[0], rate, bits / secs / x.shape[1])
        q = quality("audio", x, r.recon[None], rate)
        return {"Opus": (q, r.bitrate * secs * x.shape[1], not r.clamped)}
    return {}


@dataclass
class _Acc:
    """Running sums over the items of one tokenizer."""

    quality: dict[str, list[float]] = field(default_factory=dict)
    codec: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    tokens: int = 0
    bits: float = 0.0
    seconds: float = 0.0
    enc: float = 0.0
    dec: float = 0.0
    counts: Tensor | None = None  # [Q, K]

    def add(self, into: dict[str, list[float]], values: dict[str, float]) -> None:
        for k, v in values.items():
            into.setdefault(k, []).append(v)


def _mean(d: dict[str, list[float]]) -> dict[str, float]:
    return {k: sum(v) / len(v) for k, v in d.items()}


def _usage(counts: Tensor) -> tuple[list[float], list[float]]:
    """Per stream of ``counts [Q, K]``: (fraction of codes used, perplexity)."""
    p = counts.double() / counts.sum(1, keepdim=True).clamp_min(1)
    ent = -(p * p.clamp_min(1e-30).log()).sum(1)
    return (counts > 0).double().mean(1).tolist(), ent.exp().tolist()


@torch.no_grad()
def _one(tok: object, path: str, acc: _Acc, with_codec: bool) -> None:
    x = read_media(path, tok)
    t0 = time.perf_counter()
    tokens = tok.encode(x)
    t1 = time.perf_counter()
    y = tok.decode(tokens).clamp(-1, 1)
    acc.enc, acc.dec = acc.enc + t1 - t0, acc.dec + time.perf_counter() - t1
    ids, rate = tokens.ids, getattr(tok, "sample_rate", None)
    bits = ids.numel() * math.log2(tok.codebook_size)
    secs = duration_s(x, MediaSpec.of(tok))
    streams = ids.transpose(0, 1).reshape(ids.shape[1], -1)  # [C*Q, B*grid]
    counts = torch.stack([torch.bincount(r, minlength=tok.codebook_size) for r in streams])
    counts = counts.reshape(-1, tok.num_codebooks, tok.codebook_size).sum(0)  # channels merged
    acc.counts = counts if acc.counts is None else acc.counts + counts
    acc.add(acc.quality, quality(tok.modality, x, y, rate))
    acc.tokens += ids.numel()
    acc.bits += bits
    acc.seconds += (secs or 0.0) * (x.shape[1] if tok.modality == "audio" else 1)  # per channel
    if with_codec:
        for name, (q, b, fits) in _codec_quality(tok.modality, x, bits, secs, rate).items():
            acc.add(acc.codec.setdefault(name, {}), {**q, "bits": b, "fits": float(fits)})


def _rows(label: str, modality: str, n: int, acc: _Acc) -> list[Score]:
    use, ppl = _usage(acc.counts)
    row = Score(label, modality, n, _mean(acc.quality), acc.bits / n, acc.tokens / n,
                usage=use, perplexity=ppl, encode_per_s=n / max(acc.enc, 1e-9),
                decode_per_s=n / max(acc.dec, 1e-9))  # fmt: skip
    if acc.seconds:
        row.tokens_per_s, row.kbps = acc.tokens / acc.seconds, acc.bits / acc.seconds / 1000
    rows = [row]
    for name, values in acc.codec.items():
        m = _mean(values)
        bits, fits = m.pop("bits"), m.pop("fits")
        note = "" if fits == 1 else f"over the token bits on {1 - fits:.0%} of items"
        rows.append(Score(name, modality, n, m, bits, matched=label, note=note,
                          kbps=bits / acc.seconds / 1000 if acc.seconds else None))  # fmt: skip
    return rows


def evaluate(names: list[str], data: str | Path, limit: int | None = None,
             codec: bool = False) -> tuple[list[Score], list[tuple[str, str]]]:  # fmt: skip
    """Score each tokenizer (preset or checkpoint folder) on the items of its modality in
    ``data``; returns (rows, failures as (path, message)). InputError when a tokenizer has
    no items of its modality, or none of them could be read."""
    from mmtok.checkpoint import load_pretrained
    from mmtok.data.manifest import collect

    if limit is not None and limit < 1:
        raise InputError(f"--limit: expected a positive number of files, got {limit}")
    items = collect([data])
    rows: list[Score] = []
    failures: list[tuple[str, str]] = []
    for name in names:
        tok = load_pretrained(name).eval()
        paths = [it.path for it in items if it.modality == tok.modality][:limit]
        if not paths:
            raise InputError(f"{str(data)!r} has no {tok.modality} files for {name!r}")
        acc, n = _Acc(), 0
        for p in paths:
            try:
                _one(tok, p, acc, codec)
                n += 1
            except (MmtokError, OSError) as e:
                failures.append((p, str(e)))
        if not n:
            raise InputError(f"{name!r}: none of the {len(paths)} {tok.modality} files could "
                             f"be read (first: {failures[-1][1]})")  # fmt: skip
        rows += _rows(name, tok.modality, n, acc)
    return rows, failures


def _fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def table(rows: list[Score]) -> str:
    """The rows as a plain-text table."""
    metrics = list(dict.fromkeys(k for r in rows for k in r.quality))
    head = ["coder", "items", *metrics, "bits/item", "tok/item", "tok/s", "kbit/s", "usage",
            "perplexity", "enc/s", "dec/s", "note"]  # fmt: skip
    lines = [head]
    for r in rows:
        coder = f"  {r.coder} at {r.matched}'s bits" if r.matched else r.coder
        lines.append([coder, str(r.items), *[_fmt(r.quality.get(m), ".3f") for m in metrics],
                      f"{r.bits_per_item:,.0f}", _fmt(r.tokens_per_item, ",.0f"),
                      _fmt(r.tokens_per_s, ",.0f"), _fmt(r.kbps, ".2f"),
                      "-" if r.usage is None else " ".join(f"{u:.0%}" for u in r.usage),
                      "-" if r.perplexity is None else " ".join(f"{p:.0f}" for p in r.perplexity),
                      _fmt(r.encode_per_s, ".1f"), _fmt(r.decode_per_s, ".1f"),
                      r.note])  # fmt: skip
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
                     for line in lines)  # fmt: skip


def write_json(path: Path, rows: list[Score], failures: list[tuple[str, str]]) -> None:
    """``{"rows": [...], "failures": [{"path", "error"}]}``, written atomically."""
    doc = {"rows": [asdict(r) for r in rows],
           "failures": [{"path": p, "error": e} for p, e in failures]}  # fmt: skip
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(doc, indent=2))
