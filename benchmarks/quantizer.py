"""Quantizer benchmark: mmtok VectorQuantizer vs vector-quantize-pytorch vs a naive seed layer.

Legend: N vectors per batch, D dim, K codebook size.

    python3 benchmarks/quantizer.py           # full run (a few minutes on 2 threads)
    python3 benchmarks/quantizer.py --quick   # smoke run (small N, one repeat)

One table, measured in one run: train step (forward + backward of ``quantized.sum() + loss``,
train mode, after warmup steps that include the k-means init) and eval encode
(``torch.inference_mode``, eval mode) in vectors/s, ratios vs vector-quantize-pytorch, and an
fp32 matmul floor (``[N, D] @ [D, K]`` into a preallocated output). Then a memory line: eval
encode at a large K in a fresh subprocess, peak extra RSS vs a bound.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from common import (
    fmt_rate,
    machine_line,
    peak_rss_mb,
    print_table,
    quiet_median_time,
    reset_peak_rss,
    rss_mb,
    setup_threads,
    timed_with_load,
    verdict,
    wait_for_idle,
)
from torch import Tensor, nn

THREADS = 2
SIZES = [(64, 1024), (256, 8192)]  # (D, K)
TRAIN_TARGET = 1.5  # mmtok train step >= 1.5x vector-quantize-pytorch
FLOOR_TARGET = 0.70  # mmtok eval encode >= 70 % of the fp32 matmul floor
MEM_BOUND_MB = 256.0
BUSY = []  # CPU share other processes used during each measurement (shared machine)


@dataclass
class Mode:
    n: int  # vectors per batch
    batch: int  # B in [B, N / B, D]
    train_warmup: int
    train_repeats: int
    eval_repeats: int
    mem_k: int
    mem_d: int
    mem_n: int
    idle_wait: float  # seconds to wait for a quiet CPU before each measurement
    tries: int  # re-measure while other processes used > 15 % of the CPUs meanwhile


FULL = Mode(16384, 16, 3, 5, 5, 65536, 64, 65536, 20.0, 2)
QUICK = Mode(4096, 4, 2, 1, 1, 8192, 64, 8192, 0.0, 1)


def timed(fn: Callable[[], object], warmup: int, repeats: int, mode: Mode) -> float:
    """Median seconds of ``fn`` on a quiet CPU (see ``quiet_median_time``; right away when
    ``mode.idle_wait`` is 0); notes the load."""
    if mode.idle_wait > 0:
        seconds, busy = quiet_median_time(
            fn, warmup, repeats, tries=mode.tries, idle_timeout=mode.idle_wait
        )
    else:
        seconds, busy = timed_with_load(fn, warmup, repeats)
    BUSY.append(busy)
    return seconds


class NaiveVQ(nn.Module):
    """Seed-style VQ-VAE layer: learnable uniform codebook, full cdist, codebook + commitment
    loss, straight-through estimator."""

    def __init__(self, dim: int, codebook_size: int, beta: float = 0.25) -> None:
        super().__init__()
        self.beta = beta
        self.embedding = nn.Embedding(codebook_size, dim)
        self.embedding.weight.data.uniform_(-1 / codebook_size, 1 / codebook_size)

    def encode(self, x: Tensor) -> Tensor:
        """Nearest-code ids ``[B, N]`` from the full ``[B * N, K]`` distance matrix."""
        flat = x.reshape(-1, x.shape[-1])
        return torch.cdist(flat, self.embedding.weight).argmin(dim=1).view(x.shape[:-1])

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        ids = self.encode(x)
        q = self.embedding(ids)
        loss = F.mse_loss(q, x.detach()) + self.beta * F.mse_loss(x, q.detach())
        return x + (q - x).detach(), ids, loss


@dataclass
class Layer:
    """A quantizer under test: ``train(x)`` returns (quantized, loss); ``encode(x)`` ids."""

    name: str
    module: nn.Module
    train: Callable[[Tensor], tuple[Tensor, Tensor]]
    encode: Callable[[Tensor], Tensor]


def tuple_layer(name: str, m: nn.Module, encode: Callable[[Tensor], Tensor] | None = None) -> Layer:
    """Layer for modules whose forward returns ``(quantized, ids, loss)``; encode defaults to
    the ids of the forward."""

    def train(x: Tensor) -> tuple[Tensor, Tensor]:
        q, _, loss = m(x)
        return q, loss

    return Layer(name, m, train, encode or (lambda x: m(x)[1]))


def mmtok_layer(d: int, k: int) -> Layer:
    from mmtok.quantization.vq import VectorQuantizer

    m = VectorQuantizer(d, k)  # EMA decay 0.99, k-means init, relative dead-code restarts

    def train(x: Tensor) -> tuple[Tensor, Tensor]:
        out = m(x)
        return out.quantized, out.loss

    return Layer("mmtok VectorQuantizer", m, train, m.encode)


def vqp_layer(d: int, k: int) -> Layer:
    from vector_quantize_pytorch import VectorQuantize

    m = VectorQuantize(
        dim=d, codebook_size=k, decay=0.99, kmeans_init=True, threshold_ema_dead_code=1,
        commitment_weight=0.25, rotation_trick=False, learnable_codebook=False,
    )  # fmt: skip
    return tuple_layer("vector-quantize-pytorch", m)


def naive_layer(d: int, k: int) -> Layer:
    m = NaiveVQ(d, k)
    return tuple_layer("naive seed layer", m, m.encode)


def train_rate(layer: Layer, x: Tensor, mode: Mode) -> float:
    """Train-step vectors/s; the first warmup step runs the k-means init."""
    layer.module.train()
    x = x.detach().requires_grad_(True)

    def step() -> None:
        x.grad = None
        layer.module.zero_grad(set_to_none=True)
        q, loss = layer.train(x)
        (q.sum() + loss.sum()).backward()

    return mode.n / timed(step, mode.train_warmup, mode.train_repeats, mode)


def eval_rate(layer: Layer, x: Tensor, mode: Mode) -> float:
    """Eval-encode vectors/s under ``torch.inference_mode``."""
    layer.module.eval()
    with torch.inference_mode():
        return mode.n / timed(lambda: layer.encode(x), 1, mode.eval_repeats, mode)


def floor_rate(d: int, k: int, mode: Mode) -> float:
    """fp32 ``[N, D] @ [D, K]`` into a preallocated output, as vectors/s."""
    a, b, out = torch.randn(mode.n, d), torch.randn(d, k), torch.empty(mode.n, k)
    with torch.inference_mode():
        return mode.n / timed(lambda: torch.mm(a, b, out=out), 1, mode.eval_repeats, mode)


def size_rows(d: int, k: int, mode: Mode) -> list[list[str]]:
    """Table rows for one (D, K): the three layers and the matmul floor."""
    x = torch.randn(mode.batch, mode.n // mode.batch, d)
    layers = [mmtok_layer(d, k), vqp_layer(d, k), naive_layer(d, k)]
    rates = {ly.name: (train_rate(ly, x, mode), eval_rate(ly, x, mode)) for ly in layers}
    floor = floor_rate(d, k, mode)
    ref_train, ref_eval = rates["vector-quantize-pytorch"]
    size = f"D={d} K={k}"
    rows = []
    for name, (tr, ev) in rates.items():
        targets = ["", ""]
        if name.startswith("mmtok"):
            targets = [
                f">= {TRAIN_TARGET:.1f}x: {verdict(tr / ref_train >= TRAIN_TARGET)}",
                f">= {FLOOR_TARGET:.0%}: {verdict(ev / floor >= FLOOR_TARGET)}",
            ]
        rows.append(
            [size, name, fmt_rate(tr), f"{tr / ref_train:.2f}x", fmt_rate(ev),
             f"{ev / ref_eval:.2f}x", f"{ev / floor:.0%}", *targets]
        )  # fmt: skip
    rows.append([size, "fp32 matmul floor", "-", "-", fmt_rate(floor), "-", "100%", "", ""])
    return rows


HEADERS = [
    "size", "layer", "train vec/s", "train vs vqp", "eval vec/s", "eval vs vqp",
    "eval % floor", "train target", "eval target",
]  # fmt: skip


def mem_child(k: int, d: int, n: int, idle_wait: float, tries: int) -> None:
    """In a fresh process: eval encode of N vectors with mmtok at (D, K); print JSON with the
    peak extra RSS of the first full call and the median time of three more."""
    setup_threads(THREADS)
    from mmtok.quantization.vq import VectorQuantizer

    vq = VectorQuantizer(d, k).eval()
    x = torch.randn(1, n, d)
    with torch.inference_mode():
        vq.encode(x[:, :64])  # load kernels / thread pool outside the measurement
        if idle_wait > 0:
            wait_for_idle(timeout=idle_wait)
        before = rss_mb()
        reset_peak_rss()  # ru_maxrss would include the parent's RSS (inherited over exec)
        vq.encode(x)
        extra = peak_rss_mb() - before
        seconds, busy = quiet_median_time(
            lambda: vq.encode(x), 0, 3, tries=tries, idle_timeout=idle_wait
        )
    print(json.dumps({"extra_mb": extra, "seconds": seconds, "busy": busy}))


def mem_line(mode: Mode) -> str:
    """Run ``mem_child`` in a subprocess and format its result against the bound."""
    k, d, n = mode.mem_k, mode.mem_d, mode.mem_n
    args = [str(v) for v in (k, d, n, mode.idle_wait, mode.tries)]
    cmd = [sys.executable, str(Path(__file__).resolve()), "--mem-child", *args]
    res = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    extra, sec = res["extra_mb"], res["seconds"]
    BUSY.append(res["busy"])
    return (
        f"memory: mmtok eval encode K={k} D={d} N={n} (fresh process): peak extra RSS (VmHWM) "
        f"{extra:.1f} MB (bound {MEM_BOUND_MB:.0f} MB: {verdict(extra <= MEM_BOUND_MB)}), "
        f"time {sec:.2f} s ({fmt_rate(n / sec)} vec/s)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small N, one repeat (smoke run)")
    ap.add_argument("--mem-child", nargs=5, type=float, help=argparse.SUPPRESS)  # K D N wait tries
    args = ap.parse_args()
    if args.mem_child:
        k, d, n, wait, tries = args.mem_child
        return mem_child(int(k), int(d), int(n), wait, int(tries))
    setup_threads(THREADS)
    mode = QUICK if args.quick else FULL
    name = "quick" if args.quick else "full"
    from importlib.metadata import version

    print(f"quantizer benchmark ({name}): N={mode.n}, vector-quantize-pytorch "
          f"{version('vector-quantize-pytorch')}, {machine_line()}")  # fmt: skip
    rows = [r for d, k in SIZES for r in size_rows(d, k, mode)]
    print_table(HEADERS, rows, left=2)
    print(mem_line(mode))
    print(
        f"shared machine: other processes used at most {max(BUSY):.0%} of the CPUs during a "
        f"measurement (each waits up to {mode.idle_wait:.0f} s for < 15 %, {mode.tries} tries)"
    )


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()
