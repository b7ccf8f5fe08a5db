"""Image tokenizers on held-out photos, side by side with JPEG and WebP at the same bits.

    python3 benchmarks/visual_quality.py [MODEL ...] [--manifest data/photos/manifest.jsonl]
        [--usage-scales 512,1024] [--json FILE] [--figure-dir DIR] [--no-speed]

Legend: B batch, K codebook size, Q code streams, N tokens counted for usage.

MODEL: preset names or save_pretrained folders, ``LABEL=FOLDER`` to name a row (default: every
bundled image preset). Photos: the ``heldout`` rows of the manifest
(``data_scripts/fetch_photos.py``; whole files held out of training). Per model:

- quality on the issue's target crops: each photo's short side resized to 256 (antialiased
  bilinear), its centred 256x256 crop, rounded to 8 bits (the reference every coder sees);
  tokens and bits per image (``Q * grid * log2 K``), PSNR (dB) and SSIM (``mmtok.metrics``) of
  the reconstruction rounded to 8 bits, means over the photos;
- codebook usage on many more tokens: every non-overlapping 256x256 crop (grid centred) of each
  photo with its short side resized to each of ``--usage-scales`` (a photo smaller than a scale
  is upscaled), the fewest distinct codes of any stream over all of them as a fraction of K,
  with N and ``1 - exp(-N / K)``, the usage a uniform code distribution would reach with N
  draws (the ceiling a reader should judge the measured usage against);
- the same target crops through JPEG and WebP (Pillow; JPEG ``optimize``, WebP ``method=6``)
  per photo at the highest quality whose whole file fits the token bits (``mmtok.codecs``:
  binary search over quality). Where even the lowest quality is larger, the row says so and
  shows that size and quality;
- encode throughput (``tok.encode``, 256x256 images/s at batch 1 and 16, 2 threads, median of
  3 runs after waiting for idle CPUs; ``load`` is the CPU share other processes used meanwhile).

Prints a table; ``--json FILE`` writes it. ``--figure-dir`` gets one PNG per model: original |
tokenizer | JPEG | WebP at the same bits, for two held-out crops. Targets (issue 15): f8 PSNR
>= 23 dB, f16 PSNR >= 20 dB, both with usage >= 90 % at K >= 4096.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from common import machine_line, print_table, quiet_median_time, setup_threads, verdict
from PIL import Image, ImageDraw
from torch import Tensor

from mmtok.codecs import IMAGE_CODECS, CodecResult, codec_at_bits, to_pil

SIZE = 256  # side of the target crops and of the usage crops
THREADS = 2
SPEED_BATCHES = (1, 16)
USAGE_TARGET = 0.90
MIN_K = 4096  # usage target applies at K >= 4096
PSNR_TARGETS = {8: 23.0, 16: 20.0}  # downsample factor -> PSNR target (dB)
MANIFEST = Path(__file__).resolve().parents[1] / "data" / "photos" / "manifest.jsonl"


# --- pure helpers (tests/test_benchmarks.py) ------------------------------------------------
def expected_usage(n: int, k: int) -> float:
    """Expected fraction of K codes hit at least once by N uniform draws: ``1 - exp(-N / K)``
    (the large-K limit of ``1 - (1 - 1/K) ** N``)."""
    return 1.0 - math.exp(-n / k)


def tiles(x: Tensor, size: int) -> list[Tensor]:
    """Every non-overlapping ``size`` x ``size`` crop of ``x [3, H, W]``, the grid centred."""
    h, w = x.shape[-2:]
    top, left = (h % size) // 2, (w % size) // 2
    rows, cols = range(top, h - size + 1, size), range(left, w - size + 1, size)
    return [x[:, i : i + size, j : j + size] for i in rows for j in cols]


# --- data -----------------------------------------------------------------------------------
def heldout_photos(manifest: Path) -> list[Path]:
    from mmtok.media import SUFFIXES
    from mmtok.train.data import list_files

    return list_files(manifest, "heldout", SUFFIXES["image"])


def eight_bit(x: Tensor) -> Tensor:
    """``x`` rounded to the 8-bit pixels a file would hold (still float in [-1, 1])."""
    from mmtok.image.io import from_uint8, to_uint8

    return from_uint8(to_uint8(x))


def target_crops(files: list[Path]) -> list[Tensor]:
    from mmtok.image.io import load_image

    return [eight_bit(load_image(f, size=SIZE)) for f in files]


def usage_crops(files: list[Path], scales: list[int]) -> list[Tensor]:
    from mmtok.image.io import load_image

    return [eight_bit(t) for f in files for s in scales
            for t in tiles(load_image(f, size=s, crop="none"), SIZE)]  # fmt: skip


# --- measurements ---------------------------------------------------------------------------
def token_bits(tok, shape: tuple[int, ...]) -> tuple[int, float]:  # noqa: ANN001 (Tokenizer)
    """(tokens, bits) of one image of ``shape``: Q ids per grid position, log2 K bits each."""
    n = tok.num_codebooks * math.prod(tok.token_grid(shape))
    return n, n * math.log2(tok.codebook_size)


@torch.no_grad()
def usage(tok, crops: list[Tensor], batch: int = 8) -> tuple[float, int]:  # noqa: ANN001
    """(fewest distinct codes of any stream / K, ids per stream N) over ``crops``."""
    hits = torch.zeros(tok.num_codebooks, tok.codebook_size, dtype=torch.long)
    n = 0
    for i in range(0, len(crops), batch):
        ids = tok.encode(torch.stack(crops[i : i + batch])).ids  # [B, Q, h, w]
        per_stream = ids.transpose(0, 1).reshape(ids.shape[1], -1)  # [Q, B*h*w]
        hits += torch.stack([torch.bincount(r, minlength=tok.codebook_size) for r in per_stream])
        n += per_stream.shape[1]
    return float((hits > 0).sum(1).min()) / tok.codebook_size, n


@torch.no_grad()
def reconstruct(tok, crops: list[Tensor]) -> list[Tensor]:  # noqa: ANN001
    """8-bit reconstructions of ``crops`` (one batch)."""
    return list(eight_bit(tok.decode(tok.encode(torch.stack(crops))).clamp(-1, 1)))


def throughput(tok, batch: int) -> tuple[float, float]:  # noqa: ANN001
    """(images/s of ``tok.encode`` on random 256x256 images at ``batch``, others' CPU share)."""
    x = torch.rand(batch, 3, SIZE, SIZE) * 2 - 1
    with torch.inference_mode():
        seconds, load = quiet_median_time(lambda: tok.encode(x), warmup=1, repeats=3, tries=2,
                                          idle_timeout=30.0)  # fmt: skip
    return batch / seconds, load


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


@dataclass
class Row:
    """One line of the table: a tokenizer, or a codec at that tokenizer's bits."""

    coder: str  # model label, or "JPEG" / "WEBP"
    bits: float  # per 256x256 image (codec rows: mean file bits)
    psnr: float
    ssim: float
    tokens: int | None = None
    codebook_size: int | None = None
    downsample: int | None = None
    usage: float | None = None
    usage_tokens: int | None = None
    usage_uniform: float | None = None
    matched: str = ""  # codec rows: the model whose token bits the codec was given
    quality: str = ""  # codec rows: quality range, "can't fit" notes
    images_per_s: dict[int, float] | None = None
    load: float | None = None  # others' CPU share during the timings
    targets: str = ""


def quality_scores(refs: list[Tensor], recons: list[Tensor]) -> tuple[float, float]:
    from mmtok.metrics import psnr, ssim

    pairs = list(zip(refs, recons, strict=True))
    return mean([psnr(a, b) for a, b in pairs]), mean([ssim(a, b) for a, b in pairs])


def codec_row(fmt: str, refs: list[Tensor], model: Row) -> tuple[Row, list[CodecResult]]:
    results = [codec_at_bits(x, fmt, model.bits) for x in refs]
    p, s = quality_scores(refs, [r.recon for r in results])
    qs = sorted(r.quality for r in results)
    fit = sum(r.fits for r in results)
    note = f"q {qs[0]}-{qs[-1]}" if fit == len(results) else (
        f"can't fit {len(results) - fit}/{len(results)}: lowest q={qs[0]} is larger")  # fmt: skip
    row = Row(fmt, mean([r.bits for r in results]), p, s, matched=model.coder, quality=note)
    return row, results


def target_verdicts(row: Row) -> str:
    """The issue's targets for this model's downsample factor ('' where none applies)."""
    goal = PSNR_TARGETS.get(row.downsample or 0)
    if goal is None:
        return ""
    usage_ok = row.codebook_size >= MIN_K and row.usage >= USAGE_TARGET
    return (f"PSNR >= {goal:.0f}: {verdict(row.psnr >= goal)}; usage >= {USAGE_TARGET:.0%} at "
            f"K >= {MIN_K}: {verdict(usage_ok)}")  # fmt: skip


def score(label: str, tok, refs: list[Tensor], crops: list[Tensor], speed: bool  # noqa: ANN001
          ) -> tuple[list[Row], dict[str, list[CodecResult]]]:  # fmt: skip
    """The model's row and its codec rows; the reconstructions by coder (for the figure)."""
    recons = reconstruct(tok, refs)
    tokens, bits = token_bits(tok, refs[0].shape)
    p, s = quality_scores(refs, recons)
    use, n = usage(tok, crops)
    row = Row(label, bits, p, s, tokens, tok.codebook_size, tok.downsample[0], use, n,
              expected_usage(n, tok.codebook_size))  # fmt: skip
    if speed:
        timed = {b: throughput(tok, b) for b in SPEED_BATCHES}
        row.images_per_s = {b: r for b, (r, _) in timed.items()}
        row.load = max(load for _, load in timed.values())
    row.targets = target_verdicts(row)
    rows = [row]
    by_coder = {"tokenizer": [CodecResult(0, int(bits), True, y) for y in recons]}
    for codec in IMAGE_CODECS:
        codec_line, by_coder[codec] = codec_row(codec, refs, row)
        rows.append(codec_line)
    return rows, by_coder


# --- output ---------------------------------------------------------------------------------
def fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


HEADERS = ["coder", "tokens", "bits", "PSNR dB", "SSIM", "usage", "usage N", "uniform",
           "img/s b1", "img/s b16", "load", "codec quality", "targets"]  # fmt: skip


def table_rows(rows: list[Row]) -> list[list[str]]:
    out = []
    for r in rows:
        speed = r.images_per_s or {}
        coder = f"  {r.coder} at the same bits" if r.matched else r.coder
        out.append([coder, fmt(r.tokens, "d"), f"{r.bits:.0f}", f"{r.psnr:.2f}",
                    f"{r.ssim:.3f}", fmt(r.usage, ".1%"), fmt(r.usage_tokens, "d"),
                    fmt(r.usage_uniform, ".1%"), fmt(speed.get(1), ".2f"),
                    fmt(speed.get(16), ".2f"), fmt(r.load, ".0%"), r.quality,
                    r.targets])  # fmt: skip
    return out


def side_by_side(panels: list[list[tuple[str, Tensor]]], label_h: int = 18) -> Image.Image:
    """Rows of labelled ``[3, H, W]`` panels, one PNG: each panel with its label above it."""
    h, w = panels[0][0][1].shape[-2:]
    cols = max(len(r) for r in panels)
    sheet = Image.new("RGB", (cols * w, len(panels) * (h + label_h)), "white")
    draw = ImageDraw.Draw(sheet)
    for i, row in enumerate(panels):
        for j, (label, x) in enumerate(row):
            top = i * (h + label_h)
            draw.text((j * w + 4, top + 3), label, fill="black")
            sheet.paste(to_pil(x), (j * w, top + label_h))
    return sheet


def write_figure(path: Path, label: str, refs: list[Tensor],
                 recons: dict[str, list[CodecResult]], names: list[str],
                 picks: list[int]) -> None:  # fmt: skip
    """Original | tokenizer | codecs for the held-out photos ``picks``; labels give PSNR and
    the bits of that image (a codec over the token bits says so)."""
    from mmtok.metrics import psnr

    panels = []
    for i in picks:
        row = [(f"original: {names[i]}"[:40], refs[i])]
        for coder, results in recons.items():
            r = results[i]
            name = label[:16] if coder == "tokenizer" else f"{coder} q={r.quality}"
            over = "" if r.fits else " OVER"
            row.append((f"{name} {psnr(refs[i], r.recon):.1f} dB {r.bits} b{over}", r.recon))
        panels.append(row)
    path.parent.mkdir(parents=True, exist_ok=True)
    side_by_side(panels).save(path)


def model_label(spec: str) -> tuple[str, str]:
    """(label, preset or folder) of a MODEL argument: ``LABEL=PATH``, or a preset name, or a
    folder (a trainer's ``.../<run>/final`` is labelled ``<run>``)."""
    if "=" in spec:
        label, name = spec.split("=", 1)
        return label, name
    return (Path(spec).parent.name if Path(spec).name == "final" else spec), spec


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("models", nargs="*", help="presets or checkpoint folders, optionally "
                   "LABEL=PATH (default: every bundled image preset)")  # fmt: skip
    p.add_argument("--manifest", type=Path, default=MANIFEST, help="photos manifest.jsonl")
    p.add_argument("--usage-scales", default="512,1024", help="short sides of the usage crops")
    p.add_argument("--figure-dir", type=Path, help="write a side-by-side PNG per model here")
    p.add_argument("--figure-photos", default="0,6", help="indices of the held-out photos shown")
    p.add_argument("--no-speed", action="store_true", help="skip the throughput timings")
    p.add_argument("--json", type=Path, help="write the table as JSON")
    args = p.parse_args(argv)
    setup_threads(THREADS)
    from mmtok.checkpoint import load_pretrained

    if not args.models:
        from mmtok.presets import PRESETS, list_presets

        args.models = [n for n in list_presets() if PRESETS[n].modality == "image"]
    files = heldout_photos(args.manifest)
    refs = target_crops(files)
    scales = [int(s) for s in args.usage_scales.split(",")]
    crops = usage_crops(files, scales)
    picks = [int(i) for i in args.figure_photos.split(",")]
    rows: list[Row] = []
    for spec in args.models:
        label, name = model_label(spec)
        tok = load_pretrained(name).eval()
        model_rows, recons = score(label, tok, refs, crops, not args.no_speed)
        rows += model_rows
        if args.figure_dir:
            write_figure(args.figure_dir / f"{label}.png", label, refs, recons,
                         [f.name for f in files], picks)  # fmt: skip
        print(f"  done {label}", file=sys.stderr)
    print(f"held-out photos: {len(files)} target crops of {SIZE}x{SIZE} (short side {SIZE}, "
          f"centred); usage on {len(crops)} crops of {SIZE}x{SIZE} at short sides {scales}; "
          f"{args.manifest}; {machine_line()}")  # fmt: skip
    print_table(HEADERS, table_rows(rows), left=1)
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=2))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main())
