"""Encode throughput of the bundled presets: items/s at batch 1 / 8 / 64 on one device.

    python3 benchmarks/encode_throughput.py [--device cuda] [--batches 1,8,64] [PRESET ...]

Items: a 256x256 image, a 10 s clip at the preset's sample rate (mono), a 16-frame clip at the
preset's size (64x64 for video-small). Random inputs in [-1, 1] (speed does not depend on
content). fp32, eval mode, ``Tokenizer.encode`` (the path users run), median of 5 timed runs
after 2 warm-ups, with ``torch.cuda.synchronize`` on a GPU. Also checks on that device that
the ids of a batch equal the ids of each item alone (batch invariance) and prints the device
name, so a table says which card it came from. Not a timed test.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from mmtok.checkpoint import load_pretrained
from mmtok.presets import PRESETS, list_presets


def item(tok, generator: torch.Generator) -> torch.Tensor:  # noqa: ANN001 (Tokenizer)
    """One input ``[C, *S]`` of the tokenizer's modality."""
    if tok.modality == "image":
        shape = (3, 256, 256)
    elif tok.modality == "audio":
        shape = (tok.channels, 10 * tok.sample_rate)
    else:
        shape = (3, tok.clip_frames, 64, 64)
    return torch.rand(shape, generator=generator) * 2 - 1


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def items_per_second(tok, x: torch.Tensor, device: torch.device) -> float:  # noqa: ANN001
    for _ in range(2):
        tok.encode(x)
    sync(device)
    times = []
    for _ in range(5):
        start = time.perf_counter()
        tok.encode(x)
        sync(device)
        times.append(time.perf_counter() - start)
    return x.shape[0] / statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("presets", nargs="*")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batches", default="1,8,64")
    p.add_argument("--threads", type=int, default=2, help="CPU threads (on a CPU device)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    names = args.presets or list_presets()
    batches = [int(b) for b in args.batches.split(",")]
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device: {card}; torch {torch.__version__}")
    print(f"{'preset':16} {'item':22} " + " ".join(f"{f'b={b}':>10}" for b in batches)
          + "  batch-invariant")  # fmt: skip
    g = torch.Generator().manual_seed(0)
    for name in names:
        tok = load_pretrained(name).to(device).eval()
        one = item(tok, g)
        rates = []
        for b in batches:
            x = one[None].expand(b, *one.shape).contiguous().to(device)
            rates.append(items_per_second(tok, x, device))
        pair = torch.stack([one, item(tok, g)]).to(device)
        together = tok.encode(pair).ids
        alone = torch.cat([tok.encode(pair[i : i + 1]).ids for i in range(2)])
        desc = f"{PRESETS[name].modality} {list(one.shape)}"
        print(f"{name:16} {desc:22} " + " ".join(f"{r:>10.1f}" for r in rates)
              + f"  {bool(torch.equal(together, alone))}")  # fmt: skip
    print("items/s (median of 5 runs after 2 warm-ups), fp32, Tokenizer.encode")
    return 0


if __name__ == "__main__":
    sys.exit(main())
