"""Image quality benchmark: the same tokenizer trained with three quantizers at equal bits.

Legend: B batch, c crop size, K codebook size (equal bits: log2 K per token for every layer).

    python3 benchmarks/image_quality.py           # full run, seeds 0, 1, 2 (~20 minutes, 1 thread)
    python3 benchmarks/image_quality.py --seeds 0 # one seed (~7 minutes)
    python3 benchmarks/image_quality.py --quick   # smoke run (a few steps, small images)

One table, measured in one run on 1 thread (quality, not speed, is compared): the mean over
the seeds (each seed draws other initial weights and other crops) with the per-seed values;
held-out usage of one run moves by a few points from seed to seed, so the targets are judged
on the mean. The network is
``ImageTokenizer`` (the ``image_tokenizer`` encoder/decoder: 4x downsampling, 32 hidden
channels, 64-dim latents) with an injected quantizer, built from the same seed, so the three
runs start from identical encoder/decoder weights, see the same batches (seeded random c x c
crops of the train split of ``data/images/manifest.jsonl``, from
``python3 data_scripts/fetch_images.py``) and take the same AdamW steps (warmup + cosine, grad
clip, loss l1 + l2 + the quantizer's loss, as the image-small recipe). Quantizers, all K codes:

- mmtok ``VectorQuantizer`` with its defaults (EMA 0.99, k-means init, dead-code restarts
  under a quarter of the uniform share);
- a seed-style layer (``NaiveVQ`` of ``benchmarks/quantizer.py``: codebook initialised
  uniformly in [-1/K, 1/K], learned by the codebook loss, commitment 0.25, no restarts, no
  k-means);
- vector-quantize-pytorch ``VectorQuantize`` with its defaults (EMA decay 0.8, random init,
  no dead-code expiry, commitment 1.0, rotation trick).

Held-out: the manifest's held-out images, short side resized and centre-cropped to
``eval_size``, encoded whole in eval mode: mean PSNR (dB, images in [-1, 1]) and codebook usage
(% of the K codes hit at least once over all held-out tokens). Targets: mmtok usage >= 90 %,
mmtok PSNR >= seed-style PSNR + 2 dB.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from common import machine_line, print_table, setup_threads, verdict
from torch import Tensor, nn

THREADS = 1  # small convs: on a shared 2-core machine 2 OpenMP threads stall on each other
MANIFEST = Path(__file__).resolve().parents[1] / "data" / "images" / "manifest.jsonl"
USAGE_TARGET = 0.90  # mmtok: >= 90 % of the codes used on the held-out set
PSNR_MARGIN = 2.0  # mmtok PSNR >= seed-style + 2 dB
KINDS = ("mmtok", "seed", "vqp")
NAMES = {
    "mmtok": "mmtok VectorQuantizer (defaults)",
    "seed": "seed-style (uniform init, learned codebook)",
    "vqp": "vector-quantize-pytorch VectorQuantize (defaults)",
}


@dataclass
class Setup:
    """What every run shares: network size, data, schedule."""

    steps: int
    batch: int  # B crops per step
    crop: int  # c, training crop side
    resize: int  # short side of the training images before cropping
    eval_size: int  # held-out images: short side resized + centre crop
    eval_max: int  # number of held-out images (0: all)
    codebook_size: int = 512  # K
    downsample: int = 4
    hidden: int = 32
    latent_dim: int = 64
    lr: float = 1e-3
    warmup: int = 100
    seed: int = 0


FULL = Setup(steps=4000, batch=16, crop=32, resize=256, eval_size=256, eval_max=0)
QUICK = Setup(steps=6, batch=4, crop=32, resize=64, eval_size=64, eval_max=2, warmup=2)


def quantizer_class() -> type:
    """``PeerQuantizer`` (defined on first use so the module imports without mmtok on the path)."""
    from mmtok.quantization import Quantizer, QuantizerOutput

    class PeerQuantizer(Quantizer):
        """A peer layer behind mmtok's ``Quantizer`` interface: ``[B, N, D]`` -> ids ``[B, N, 1]``.

        Args:
            kind: "seed" (``NaiveVQ``) or "vqp" (vector-quantize-pytorch ``VectorQuantize``).
            dim: D, latent size.
            codebook_size: K.
        """

        num_codebooks = 1

        def __init__(self, kind: str, dim: int, codebook_size: int) -> None:
            super().__init__()
            self.kind, self.dim, self.codebook_size = kind, dim, codebook_size
            if kind == "seed":
                from quantizer import NaiveVQ

                self.vq = NaiveVQ(dim, codebook_size)
            elif kind == "vqp":
                from vector_quantize_pytorch import VectorQuantize

                self.vq = VectorQuantize(dim=dim, codebook_size=codebook_size)
            else:
                raise ValueError(f"kind must be seed|vqp, got {kind!r}")

        def forward(self, x: Tensor, n_q: int | None = None) -> QuantizerOutput:
            quantized, ids, loss = self.vq(x)  # [B, N, D], [B, N], scalar (or [1])
            return QuantizerOutput(quantized, ids.long().unsqueeze(-1), loss.sum())

        def encode(self, x: Tensor, n_q: int | None = None) -> Tensor:
            return self.forward(x, n_q).ids

        def reset_usage(self) -> None:
            """The peers keep no usage histogram (evaluate counts ids itself)."""

        def usage_histograms(self) -> dict[str, Tensor]:
            return {}

        def decode_ids(self, ids: Tensor) -> Tensor:
            if self.kind == "seed":
                return self.vq.embedding(ids[..., 0])
            return self.vq.get_output_from_indices(ids[..., 0])

    return PeerQuantizer


def build_tokenizer(kind: str, s: Setup) -> nn.Module:
    """The image tokenizer with quantizer ``kind``; encoder/decoder weights depend on the seed
    only (they are built before the quantizer, from the same RNG state)."""
    from mmtok.image.model import ImageDecoder, ImageEncoder
    from mmtok.image.tokenizer import ImageTokenizer
    from mmtok.quantization import VectorQuantizer

    torch.manual_seed(s.seed)
    n = int(math.log2(s.downsample))
    kw = dict(latent_dim=s.latent_dim, hidden=s.hidden, downsample=s.downsample,
              channel_mult=tuple(min(2**i, 2) for i in range(n)), res_blocks=1)  # fmt: skip
    encoder, decoder = ImageEncoder(**kw), ImageDecoder(**kw)
    torch.manual_seed(s.seed + 1)
    if kind == "mmtok":
        quantizer = VectorQuantizer(s.latent_dim, s.codebook_size)
    else:
        quantizer = quantizer_class()(kind, s.latent_dim, s.codebook_size)
    return ImageTokenizer(encoder, quantizer, decoder)


def load_data(s: Setup, manifest: Path = MANIFEST) -> tuple[object, list[Tensor]]:
    """(train crops dataset keyed by (epoch, index), held-out images ``[3, H, W]``) of the
    ``train`` / ``heldout`` splits of ``manifest``."""
    from mmtok.image.io import load_image
    from mmtok.train.data import list_files
    from mmtok.train.image import SUFFIXES, ImageCrops

    train = ImageCrops(list_files(manifest, "train", SUFFIXES), s.crop, s.resize, seed=s.seed)
    files = list_files(manifest, "heldout", SUFFIXES)
    files = files[: s.eval_max] if s.eval_max else files
    return train, [load_image(f, size=s.eval_size) for f in files]


def batch(train: object, step: int, s: Setup) -> Tensor:
    """Crops ``[B, 3, c, c]`` of step ``step``: the same for every quantizer."""
    g = torch.Generator().manual_seed(s.seed * 1_000_003 + step)
    idx = torch.randint(len(train), (s.batch,), generator=g).tolist()
    return torch.stack([train[(step, i)] for i in idx])


def lr_at(step: int, s: Setup) -> float:
    """Linear warmup, then cosine to 10 % (the recipes' schedule)."""
    if step < s.warmup:
        return s.lr * (step + 1) / s.warmup
    progress = (step - s.warmup) / max(1, s.steps - s.warmup)
    return s.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def train(tok: nn.Module, data: object, s: Setup) -> float:
    """``s.steps`` AdamW steps on l1 + l2 + quantizer loss; returns seconds."""
    opt = torch.optim.AdamW(tok.parameters(), lr=s.lr, betas=(0.9, 0.99), weight_decay=0.0)
    tok.train()
    t0 = time.perf_counter()
    for step in range(s.steps):
        x = batch(data, step, s)
        for group in opt.param_groups:
            group["lr"] = lr_at(step, s)
        out = tok(x)
        loss = F.l1_loss(out.recon, x) + F.mse_loss(out.recon, x) + out.quant.loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(tok.parameters(), 1.0)
        opt.step()
    return time.perf_counter() - t0


@torch.no_grad()
def evaluate(tok: nn.Module, images: list[Tensor]) -> tuple[float, int]:
    """(mean held-out PSNR in dB, number of distinct codes over all held-out tokens)."""
    from mmtok.metrics import psnr
    from mmtok.tokenizer import eval_mode

    scores, hits = [], torch.zeros(tok.codebook_size, dtype=torch.long)
    with eval_mode(tok):
        for x in images:
            out = tok(x[None])
            scores.append(psnr(x, out.recon.clamp(-1, 1)[0]))
            hits += torch.bincount(out.quant.ids.flatten(), minlength=tok.codebook_size)
    return sum(scores) / len(scores), int((hits > 0).sum())


def run(kind: str, data: object, images: list[Tensor], s: Setup) -> dict[str, float]:
    """Train and evaluate one quantizer; PSNR, used codes, usage fraction, seconds."""
    tok = build_tokenizer(kind, s)
    seconds = train(tok, data, s)
    value, used = evaluate(tok, images)
    return {"psnr": value, "used": used, "usage": used / s.codebook_size, "seconds": seconds}


def mean_results(runs: list[dict[str, float]]) -> dict[str, float]:
    """Mean of each metric over the runs (one per seed)."""
    return {key: sum(r[key] for r in runs) / len(runs) for key in runs[0]}


def table_rows(per_seed: dict[str, list[dict[str, float]]], s: Setup) -> list[list[str]]:
    """One row per quantizer: mean PSNR, vs the seed layer, mean usage, usage of each seed,
    train time, targets (on the means)."""
    results = {kind: mean_results(runs) for kind, runs in per_seed.items()}
    seed_psnr = results["seed"]["psnr"]
    rows = []
    for kind, r in results.items():
        targets = ["", ""]
        if kind == "mmtok":
            targets = [
                f">= seed + {PSNR_MARGIN:.0f} dB: {verdict(r['psnr'] >= seed_psnr + PSNR_MARGIN)}",
                f">= {USAGE_TARGET:.0%}: {verdict(r['usage'] >= USAGE_TARGET)}",
            ]
        each = " / ".join(f"{run['usage']:.1%}" for run in per_seed[kind])
        rows.append(
            [NAMES[kind], f"{r['psnr']:.2f}", f"{r['psnr'] - seed_psnr:+.2f}",
             f"{r['usage']:.1%}", each, f"{r['used']:.0f}/{s.codebook_size}",
             f"{r['seconds']:.0f}", *targets]
        )  # fmt: skip
    return rows


HEADERS = ["quantizer", "PSNR dB", "vs seed dB", "usage", "usage per seed", "codes", "train s",
           "PSNR target", "usage target"]  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a few steps on small images (smoke)")
    ap.add_argument("--steps", type=int, help="training steps per quantizer (default: the mode's)")
    ap.add_argument("--manifest", type=Path, default=MANIFEST, help="images manifest.jsonl")
    ap.add_argument("--seeds", help="comma-separated seeds of the weights and the crops "
                    "(default: 0,1,2; --quick: 0)")  # fmt: skip
    args = ap.parse_args()
    setup_threads(THREADS)
    s = QUICK if args.quick else FULL
    if args.steps:
        s.steps = args.steps
    seeds = [int(v) for v in (args.seeds or ("0" if args.quick else "0,1,2")).split(",")]
    from importlib.metadata import version

    print(f"image quality benchmark ({'quick' if args.quick else 'full'}): {s.steps} steps x "
          f"{s.batch} crops of {s.crop}px, downsample {s.downsample}, K={s.codebook_size} "
          f"({math.log2(s.codebook_size):.0f} bits/token), held-out images at {s.eval_size}px, "
          f"seeds {seeds}, vector-quantize-pytorch {version('vector-quantize-pytorch')}, "
          f"{machine_line()}")  # fmt: skip
    per_seed: dict[str, list[dict[str, float]]] = {kind: [] for kind in KINDS}
    for seed in seeds:
        setup = replace(s, seed=seed)
        data, images = load_data(setup, args.manifest)
        for kind in KINDS:
            per_seed[kind].append(run(kind, data, images, setup))
    print_table(HEADERS, table_rows(per_seed, s), left=1)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()
