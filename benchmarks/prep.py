"""Prep throughput vs pure model encode of the same already-decoded media (issue target:
prep >= 85 % of pure encode with 2 workers).

    python3 benchmarks/prep.py [--files 48] [--size 256] [--preset image-small]

Pure encode: every image is decoded into memory first (untimed), then the tokenizer encodes
them in batches of ``--batch-size``. Prep: ``run_prep`` on the PNG folder with ``--workers``
decoding processes, including decoding, batching, vocabulary offsets and shard writes.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from common import machine_line, print_table, setup_threads, wait_for_idle

from mmtok.checkpoint import load_pretrained
from mmtok.data import PrepJob, run_prep
from mmtok.image.io import load_image, save_image
from mmtok.image.tokenizer import image_tokenizer
from mmtok.presets import list_presets


def _tokenizer(preset: str | None, root: Path) -> str:
    if preset:
        return preset
    if "image-small" in list_presets():
        return "image-small"
    tok = image_tokenizer(downsample=8, hidden=32, latent_dim=32, codebook_size=512)
    tok.train()
    tok(torch.rand(8, 3, 64, 64) * 2 - 1)
    tok.save_pretrained(root / "ck")
    return str(root / "ck")


def _media(root: Path, n: int, size: int) -> list[Path]:
    g = torch.Generator().manual_seed(0)
    (root / "media").mkdir()
    paths = []
    for i in range(n):
        base = torch.rand(3, size // 8, size // 8, generator=g) * 2 - 1  # photo-like smooth
        img = torch.nn.functional.interpolate(base[None], size=(size, size), mode="bilinear")[0]
        paths.append(root / "media" / f"img{i:04d}.png")
        save_image(paths[-1], img)
    return paths


def _pure_encode(name: str, paths: list[Path], batch: int) -> float:
    tok = load_pretrained(name)
    images = [load_image(p) for p in paths]
    start = time.perf_counter()
    for i in range(0, len(images), batch):
        tok.encode(torch.stack(images[i : i + batch]))
    return len(images) / (time.perf_counter() - start)


def _prep(name: str, root: Path, workers: int, batch: int, tag: str) -> float:
    job = PrepJob([str(root / "media")], str(root / f"out-{tag}"), {"image": name},
                  shard_size=64, workers=workers, batch_size=batch)  # fmt: skip
    start = time.perf_counter()
    meta = run_prep(job)
    return meta["files"] / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--files", type=int, default=48)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--preset", default=None)
    args = p.parse_args()
    setup_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        name = _tokenizer(args.preset, root)
        paths = _media(root, args.files, args.size)
        busy = wait_for_idle()
        pure = _pure_encode(name, paths, args.batch_size)
        rows = [["pure encode (decoded in memory)", f"{pure:.2f}", "100 %"]]
        for workers in sorted({0, args.workers}):
            rate = _prep(name, root, workers, args.batch_size, f"w{workers}")
            rows.append([f"mmtok prep, {workers} workers", f"{rate:.2f}", f"{rate / pure:.0%}"])
    print(f"{machine_line()}; tokenizer {name}; {args.files} PNGs {args.size}x{args.size}; "
          f"CPU busy before timing {busy:.0%}")  # fmt: skip
    print_table(["pipeline", "files/s", "of pure encode"], rows)
    print("target: prep with 2 workers >= 85 % of pure encode")


if __name__ == "__main__":
    main()
