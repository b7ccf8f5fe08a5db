"""The demo report's explanations and codec rows: what the tokenizer did to a file (one
sentence), what each number means and what good looks like, the doc page to read next, and the
same file through the classical codec at the same bits (``mmtok.codecs``).

Legend: B batch (1 here), C channels, T samples or frames, H, W pixels, Q code streams,
K codebook size; inputs are float tensors in [-1, 1] as the tokenizer sees them.
"""

from __future__ import annotations

import math
from pathlib import Path

from torch import Tensor

from mmtok import codecs
from mmtok.fileutil import atomic_path, make_dir
from mmtok.metrics import mel_distance, psnr, si_snr

DOCS = Path(__file__).resolve().parents[1] / "docs"  # present in a source checkout
IMAGE_FORMATS = {"JPEG": "JPEG", "WEBP": "WebP"}  # Pillow format -> name in the report

MEANING = {
    "image": "PSNR: pixel fidelity in dB, higher is better (above ~30 dB differences are hard "
    "to see, 20-25 dB looks soft and smeared). A codec row is the same image through JPEG or "
    "WebP at the highest quality whose file fits the token bits: the tokens are worth having "
    "where they beat it.",
    "audio": "SI-SNR: waveform match in dB, blind to gain, higher is better (above ~15 dB is "
    "close; neural codecs at a few kbit/s often score low yet sound right, so listen too). Mel "
    "distance: difference of log-mel spectra, the part the ear hears, lower is better (0 = "
    "identical; below ~1 sounds close). The Opus row is the same clip through Opus at the "
    "token bitrate per channel.",
    "video": "PSNR: pixel fidelity over all frames in dB, higher is better (above ~30 dB "
    "differences are hard to see, 20-25 dB looks soft).",
}
CODES_MEANING = (
    " Codes used: the share of the codebook this one file hits; one short file uses few codes,"
    " a healthy tokenizer uses most of them over a dataset."
)


def _rate(hz: int) -> str:
    return f"{hz / 1000:g} kHz"


def summary(tok: object, x: Tensor, ids: Tensor, secs: float | None) -> str:
    """One sentence: what ``tok`` made of input ``x`` (``[1, ...]``) with ids ``[1, Q', *grid]``."""
    k = tok.codebook_size
    bits = ids.numel() * math.log2(k)
    codes = f"{ids.numel():,} tokens of {math.log2(k):g} bits (K={k})"
    if tok.modality == "image":
        h, w = x.shape[-2:]
        grid = "x".join(str(g) for g in ids.shape[2:])
        return (f"{w}x{h} image -> {grid} grid x Q={ids.shape[1]} = {codes}, {bits:,.0f} bits "
                f"({bits / (h * w):.3f} bit/pixel).")  # fmt: skip
    if tok.modality == "audio":
        c = x.shape[1]
        layout = {1: "mono", 2: "stereo"}.get(c, f"{c}-channel")
        return (f"{_rate(tok.sample_rate)} {layout}, {secs:.2f} s -> "
                f"{ids.numel() / secs / c:,.0f} tokens/s per channel ({math.log2(k):g} bits "
                f"each, K={k}), {bits / secs / c / 1000:.1f} kbit/s per channel.")  # fmt: skip
    t, h, w = x.shape[2:]
    return (f"{t} frames of {w}x{h} ({secs:.2f} s) -> grid {list(ids.shape[2:])} x "
            f"Q={ids.shape[1]} = {codes}, {bits / secs / 1000:.1f} kbit/s.")  # fmt: skip


def meaning(modality: str) -> str:
    """What the numbers of a ``modality`` section mean and what good looks like."""
    return MEANING[modality] + CODES_MEANING


def doc_page(modality: str, out: Path) -> str | None:
    """Copy ``docs/<modality>.md`` beside the report (``docs/<modality>.md`` under ``out``) so
    the link is relative and opens from any folder; None when the docs are not installed."""
    src = DOCS / f"{modality}.md"
    if not src.is_file():
        return None
    dest = make_dir(out / "docs", "demo docs folder") / src.name
    with atomic_path(dest) as tmp:
        tmp.write_bytes(src.read_bytes())
    return f"docs/{src.name}"


def image_codec_rows(x: Tensor, bits: float) -> dict[str, str]:
    """``x [1, 3, H, W]`` through JPEG and WebP at ``bits``: report rows, PSNR of each."""
    rows = {}
    for fmt, name in IMAGE_FORMATS.items():
        r = codecs.codec_at_bits(x[0], fmt, bits)
        p = psnr(x[0], r.recon)
        rows[f"{name} at the same bits"] = (
            f"PSNR {p:.2f} dB (quality {r.quality}, {r.bits:,} bits)" if r.fits else
            f"{name} cannot go this small (smallest: {r.bits:,} bits, quality {r.quality}, "
            f"PSNR {p:.2f} dB)"
        )  # fmt: skip
    return rows


def video_codec_rows(x: Tensor, fps: float, bits: float) -> dict[str, str]:
    """``x [1, 3, T, H, W]`` through H.264 (libx264, MP4) at ``bits``: a report row with PSNR."""
    r = codecs.h264_at_bits(x[0], fps, bits)
    p = psnr(x[0], r.recon)
    crf = codecs.H264_CRF[1] - r.quality
    return {"H.264 at the same bits": (
        f"PSNR {p:.2f} dB (CRF {crf}, {r.bits:,} bits)" if r.fits else
        f"H.264 cannot go this small (smallest: {r.bits:,} bits at CRF {crf}, PSNR {p:.2f} dB)"
    )}  # fmt: skip


def audio_codec_rows(x: Tensor, sample_rate: int, bits_per_s: float) -> dict[str, str]:
    """``x [1, C, T]`` through Opus at ``bits_per_s`` per channel (its 6 kbit/s floor when
    lower, said so): report rows with SI-SNR and mel distance."""
    r = codecs.opus_at_bitrate(x[0], sample_rate, bits_per_s)
    z = r.recon[None]
    scores = (f"SI-SNR {si_snr(x, z):.2f} dB, mel distance "
              f"{mel_distance(x, z, sample_rate):.3f}")  # fmt: skip
    kbps = f"{r.bitrate / 1000:.1f} kbit/s per channel"
    if r.clamped == "floor":
        label = f"Opus at its {codecs.OPUS_FLOOR // 1000} kbit/s floor"
        return {label: f"{scores} ({kbps}: Opus cannot go as low as the tokens' "
                f"{bits_per_s / 1000:.1f}, so it has more bits)"}  # fmt: skip
    if r.clamped == "ceiling":
        return {f"Opus at its {codecs.OPUS_CEILING // 1000} kbit/s ceiling": f"{scores} ({kbps})"}
    return {"Opus at the same bitrate": f"{scores} ({kbps})"}


def source_note(path: Path, tok: object, x: Tensor) -> str:
    """A sentence when the tokenizer's input differs from the file (audio resampled or mixed
    down, video re-timed or resized), so the reader knows the players show what was coded;
    "" when the input is the file as stored."""
    changes = []
    if tok.modality == "audio":
        from mmtok.audio.io import audio_info

        info = audio_info(path)
        if info["sample_rate"] != tok.sample_rate:
            changes.append(f"resampled from {info['sample_rate']} Hz to {tok.sample_rate} Hz")
        if info["channels"] != x.shape[1]:
            changes.append(f"mixed from {info['channels']} channels to {x.shape[1]}")
    elif tok.modality == "video":
        from mmtok.video.io import video_info

        info = video_info(path)
        if abs(info.fps - tok.fps) > 1e-3:
            changes.append(f"re-timed from {info.fps:g} fps to {tok.fps:g} fps")
        if (info.height, info.width) != tuple(x.shape[-2:]):
            changes.append(f"resized from {info.width}x{info.height} to "
                           f"{x.shape[-1]}x{x.shape[-2]}")  # fmt: skip
    if not changes:
        return ""
    return (f"Before tokenizing, the original was {' and '.join(changes)}; the players and "
            "numbers compare against that version.")
