"""``mmtok demo``: tokenize sample media with the bundled presets and write an HTML report.

For each input: original vs reconstruction (images side by side, audio players and
spectrograms, video frame strips and a playable MP4), the token grid, the codebook usage,
bits, bitrate, compression ratio, PSNR / SI-SNR / mel distance and encode/decode timing, the
same file through the classical codec at the same bits (JPEG and WebP, Opus), and a sentence on
what the tokenizer did, what the numbers mean and which doc page to read (``demo_notes``). With
no files it runs on the small CC0 / CC-BY samples shipped in ``mmtok/assets/samples``.
"""

from __future__ import annotations

import html
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from mmtok import demo_notes, demo_plots
from mmtok.errors import InputError, MmtokError
from mmtok.fileutil import atomic_path, make_dir
from mmtok.media import (
    OUTPUT_SUFFIX,
    MediaSpec,
    a_or_an,
    detect_modality,
    duration_s,
    read_media,
    write_media,
)
from mmtok.metrics import mel_distance, psnr, si_snr

SAMPLES = Path(__file__).parent / "assets" / "samples"
RAW_BITS = {"image": 8, "video": 8, "audio": 16}  # bits per raw value of the original


@dataclass
class DemoResult:
    source: str
    modality: str
    preset: str = ""
    error: str = ""
    media: dict[str, str] = field(default_factory=dict)  # role -> file name in the out dir
    stats: dict[str, str] = field(default_factory=dict)
    summary: str = ""  # what the tokenizer did to this file, one sentence
    meaning: str = ""  # what the numbers mean and what good looks like
    doc: str | None = None  # relative link to the modality's doc page beside the report


def sample_files() -> list[Path]:
    return sorted(p for p in SAMPLES.iterdir() if p.suffix.lower() != ".md")


def _default_preset(modality: str) -> str:
    from mmtok.presets import default_preset

    name = default_preset(modality)
    if name is None:
        raise InputError(f"no bundled {modality} preset")
    return name


def _quality(tok: object, x: torch.Tensor, y: torch.Tensor) -> dict[str, str]:
    if tok.modality == "audio":
        return {"SI-SNR": f"{si_snr(x, y):.2f} dB",
                "mel distance": f"{mel_distance(x, y, tok.sample_rate):.3f}"}  # fmt: skip
    return {"PSNR": f"{psnr(x, y):.2f} dB"}


def _codec(tok: object, x: torch.Tensor, bits: float, secs: float | None) -> dict[str, str]:
    """The classical codec rows at the tokens' bits: JPEG / WebP, Opus, H.264."""
    if tok.modality == "image":
        return demo_notes.image_codec_rows(x, bits)
    if tok.modality == "video":
        return demo_notes.video_codec_rows(x, tok.fps, bits)
    if tok.modality == "audio" and secs:
        return demo_notes.audio_codec_rows(x, tok.sample_rate, bits / secs / x.shape[1])
    return {}


def _explain(res: DemoResult, tok: object, x, ids, secs: float | None, out: Path) -> None:
    res.summary = demo_notes.summary(tok, x, ids, secs)
    res.meaning = demo_notes.meaning(tok.modality)
    res.doc = demo_notes.doc_page(tok.modality, out)


def _sizes(tok: object, x: torch.Tensor, ids: torch.Tensor, secs: float | None) -> dict:
    bits = ids.numel() * math.log2(tok.codebook_size)
    raw = x.numel() * RAW_BITS[tok.modality]
    out = {"tokens": f"{ids.numel():,} (grid {list(ids.shape[2:])} x Q={ids.shape[1]})",
           "bits": f"{bits:,.0f}", "compression": f"{raw / bits:,.1f}x vs {RAW_BITS[tok.modality]}"
           "-bit raw"}  # fmt: skip
    if secs:
        out["bitrate"] = f"{bits / secs / 1000:,.2f} kbit/s"
    return out


def _figures(res: DemoResult, tok: object, x, y, ids, out: Path, stem: str) -> None:
    res.media["tokens"] = f"{stem}.tokens.png"
    demo_plots.token_grid(ids[0], tok.codebook_size, out / res.media["tokens"])
    res.media["usage"] = f"{stem}.usage.png"
    used = demo_plots.usage_histogram(ids, tok.codebook_size, out / res.media["usage"])
    res.stats["codes used"] = f"{used:.0%} of {tok.codebook_size}"
    if tok.modality == "audio":
        res.media["spectrogram"] = f"{stem}.spectrogram.png"
        demo_plots.spectrograms(x[0], y[0], tok.sample_rate, out / res.media["spectrogram"])
    if tok.modality == "video":
        res.media["frames"] = f"{stem}.frames.png"
        demo_plots.frame_strip(x[0], y[0], out / res.media["frames"])


def run_one(path: Path, out: Path, preset: str | None) -> DemoResult:
    """Encode + decode one file; failures are recorded in the result, not raised."""
    res = DemoResult(str(path), "?")
    try:
        from mmtok.checkpoint import load_pretrained

        res.modality = detect_modality(path)
        res.preset = preset or _default_preset(res.modality)
        tok = load_pretrained(res.preset)
        if tok.modality != res.modality:
            raise InputError(
                f"{res.preset!r} is {a_or_an(tok.modality)} tokenizer, {path} is "
                f"{a_or_an(res.modality)} file"
            )
        x = read_media(path, tok)
        t0 = time.perf_counter()
        tokens = tok.encode(x)
        t1 = time.perf_counter()
        y = tok.decode(tokens)
        t2 = time.perf_counter()
        stem, suffix = path.stem, OUTPUT_SUFFIX[res.modality]
        res.media["original"], res.media["reconstruction"] = (
            f"{stem}.orig{suffix}",
            f"{stem}.recon{suffix}",
        )
        write_media(out / res.media["original"], x, tok)
        write_media(out / res.media["reconstruction"], y, tok)
        secs = duration_s(x, MediaSpec.of(tok))
        y = y.clamp(-1, 1)
        res.stats.update(_quality(tok, x, y))
        bits = tokens.ids.numel() * math.log2(tok.codebook_size)
        res.stats.update(_codec(tok, x, bits, secs))
        res.stats.update(_sizes(tok, x, tokens.ids, secs))
        res.stats["encode"] = f"{(t1 - t0) * 1000:,.1f} ms"
        res.stats["decode"] = f"{(t2 - t1) * 1000:,.1f} ms"
        if secs:
            res.stats["encode speed"] = f"{secs / (t1 - t0):,.1f}x real time"
        _figures(res, tok, x, y, tokens.ids, out, stem)
        _explain(res, tok, x, tokens.ids, secs, out)
        note = demo_notes.source_note(path, tok, x)
        res.summary = f"{res.summary} {note}".strip()
    except MmtokError as e:
        res.error = str(e)
    return res


def _media_html(res: DemoResult) -> str:
    m, parts = res.media, []
    for role in ("original", "reconstruction"):
        if role not in m:
            continue
        src = html.escape(m[role])
        tag = {
            "image": f'<img src="{src}">',
            "audio": f'<audio controls src="{src}"></audio>',
            "video": f'<video controls loop src="{src}" width="256"></video>',
        }[res.modality]
        parts.append(f"<figure>{tag}<figcaption>{role}</figcaption></figure>")
    for role in ("frames", "spectrogram", "tokens", "usage"):
        if role in m:
            parts.append(f'<figure><img src="{html.escape(m[role])}"><figcaption>{role}'
                         "</figcaption></figure>")  # fmt: skip
    return "".join(parts)


def _notes_html(res: DemoResult) -> str:
    """The section's sentence, what its numbers mean, and its doc page."""
    page = f"docs/{res.modality}.md in the mmtok repository"
    doc = (f'<a href="{html.escape(res.doc)}">{html.escape(page)}</a> (a copy sits beside '
           "this report)" if res.doc else html.escape(page))  # fmt: skip
    return (
        f"<p class=summary>{html.escape(res.summary)}</p><p class=meaning>"
        f"{html.escape(res.meaning)} More: {doc}.</p>"
    )


def render(results: list[DemoResult]) -> str:
    """The report page; every link is relative to the report's folder."""
    sections = []
    for r in results:
        name, preset = html.escape(Path(r.source).name), html.escape(r.preset)
        head = f"<h2>{name} <small>{r.modality} · {preset}</small></h2>"
        if r.error:
            sections.append(f"{head}<p class=err>skipped: {html.escape(r.error)}</p>")
            continue
        rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
                       for k, v in r.stats.items())  # fmt: skip
        sections.append(f"{head}{_notes_html(r)}<table>{rows}</table>"
                        f"<div class=media>{_media_html(r)}</div>")  # fmt: skip
    style = ("body{font-family:sans-serif;max-width:1100px;margin:auto}figure{display:inline-block;"
             "margin:6px;vertical-align:top}img{max-width:520px}th{text-align:left;padding-right:"
             "1em}.err{color:#a00}.meaning{color:#444;font-size:90%}")  # fmt: skip
    return (f"<!doctype html><html><head><meta charset=utf-8><title>mmtok demo</title>"
            f"<style>{style}</style></head><body><h1>mmtok demo</h1>{''.join(sections)}"
            "</body></html>")  # fmt: skip


def run_demo(files: list[str | os.PathLike], out_dir: str | os.PathLike,
             preset: str | None = None) -> Path:  # fmt: skip
    """Run the demo on ``files`` (default: the bundled samples); returns report.html's path."""
    out = make_dir(out_dir, "demo output folder")
    paths = [Path(f) for f in files] or sample_files()
    results = [run_one(p, out, preset) for p in paths]
    report = out / "report.html"
    with atomic_path(report) as tmp:
        tmp.write_text(render(results))
    return report
