"""Video tokenizer benchmark: clips/s, encoder FLOP efficiency, streaming memory.

Legend: B batch (clips per call), clip = 16 frames x 64 x 64 (4x4x4 downsample -> 4x16x16
tokens). The model is the bundled ``video-small`` preset when present, else the default factory
config ``video_tokenizer()`` with random weights; ``--model`` names another preset or folder.

    python3 benchmarks/video.py                  # full run (~2 minutes on 2 threads)
    python3 benchmarks/video.py --quick          # smoke run (one repeat, short videos)
    python3 benchmarks/video.py --model factory  # video_tokenizer() with random weights

One table, measured in one run on 2 threads:
- encode (``tok.encode``: pad, encoder, codebook search) and decode (``tok.decode``) clips/s at
  batch 1 and 4;
- encoder GFLOP/s: FLOPs of one encoder forward counted with ``FlopCounterMode`` (convs and
  matmuls; SDPA on CPU is not counted, < 0.2 % of the total) over the median wall time of the
  encoder forward under ``torch.inference_mode``, as a fraction of the fp32 matmul floor
  (``[1024, 1024] @ [1024, 1024]`` into a preallocated output) measured in the same run;
- peak RSS of a fresh process tokenizing a synthetic 256x256 video (PyAV, libx264) clip by clip
  from a stream (``mmtok.video.io.iter_clips``), for a short and a 4x longer video: flat in
  the video length is the target.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import torch
from common import (
    machine_line,
    median_time,
    peak_rss_mb,
    print_table,
    rss_mb,
    setup_threads,
    verdict,
    wait_for_idle,
)
from torch.utils.flop_counter import FlopCounterMode

THREADS = 2
CLIP = (16, 64, 64)  # frames, height, width of one benchmark clip
FLOOR_TARGET = 0.40  # encoder GFLOP/s >= 40 % of the fp32 matmul floor
RSS_TARGET = 1.10  # peak RSS of the long video <= 1.1x that of the short one
SOURCE_FPS = 24  # frame rate of the synthetic video files
BUSY: list[float] = []


@dataclass
class Mode:
    repeats: int
    short_s: int  # length of the short synthetic video, seconds
    long_s: int  # ... of the long one (the 1 minute)
    sample_fps: float  # the tokenizer's fps for the memory run (clips are sampled at it)


FULL = Mode(5, 15, 60, 8.0)
QUICK = Mode(1, 4, 16, 4.0)


def quiet() -> None:
    """Wait for other processes to leave the CPUs idle; remember how busy they were."""
    BUSY.append(wait_for_idle())


def floor_gflops(repeats: int) -> float:
    """fp32 ``[1024, 1024] @ [1024, 1024]`` into a preallocated output, GFLOP/s."""
    n = 1024
    a, b, out = torch.randn(n, n), torch.randn(n, n), torch.empty(n, n)
    quiet()
    with torch.inference_mode():
        return 2 * n**3 / median_time(lambda: torch.mm(a, b, out=out), 2, repeats) / 1e9


def encoder_flops(tok: torch.nn.Module, x: torch.Tensor) -> int:
    """FLOPs of one encoder forward (autograd on, so convs go through aten.convolution)."""
    with FlopCounterMode(display=False) as counter:
        tok.encoder(x)
    return counter.get_total_flops()


def speed_rows(tok: torch.nn.Module, floor: float, repeats: int) -> list[list[str]]:
    """Encode / decode clips/s and encoder efficiency at batch 1 and 4."""
    rows = []
    for b in (1, 4):
        x = torch.rand(b, 3, *CLIP) * 2 - 1
        flops = encoder_flops(tok, x)
        tokens = tok.encode(x)
        quiet()
        enc = median_time(lambda x=x: tok.encode(x), 1, repeats)
        dec = median_time(lambda t=tokens: tok.decode(t), 1, repeats)
        with torch.inference_mode():
            fwd = median_time(lambda x=x: tok.encoder(x), 1, repeats)
        gflops = flops / fwd / 1e9
        target = f">= {FLOOR_TARGET:.0%}: {verdict(gflops / floor >= FLOOR_TARGET)}"
        rows += [
            ["encode", b, f"{b / enc:.1f} clips/s", f"{enc * 1e3:.0f} ms/call", ""],
            ["decode", b, f"{b / dec:.1f} clips/s", f"{dec * 1e3:.0f} ms/call", ""],
            ["encoder GFLOP/s", b, f"{gflops:.1f}", f"{gflops / floor:.0%} of floor", target],
        ]
    rows.append(["fp32 matmul floor", "-", f"{floor:.1f} GFLOP/s", "100%", ""])
    return rows


def write_video(path: Path, seconds: int, size: int = 256) -> None:
    """Synthetic MP4 (libx264 ultrafast): a moving colour gradient with a square, streamed to
    the encoder frame by frame."""
    import av
    import numpy as np

    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=Fraction(SOURCE_FPS))
        stream.width, stream.height, stream.pix_fmt = size, size, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "23"}
        for i in range(seconds * SOURCE_FPS):
            rgb = np.stack([(xx + 3 * i) % 256, (yy + 2 * i) % 256, (xx + yy + i) % 256], -1)
            c = (5 * i) % (size - 48)
            rgb[c : c + 48, c : c + 48] = 255
            frame = av.VideoFrame.from_ndarray(rgb.astype(np.uint8), format="rgb24")
            out.mux(stream.encode(frame))
        out.mux(stream.encode())


def default_model() -> str:
    """``video-small`` when bundled, else ``factory`` (``video_tokenizer()``, random weights)."""
    from mmtok.presets import list_presets

    return "video-small" if "video-small" in list_presets() else "factory"


def load_model(name: str) -> torch.nn.Module:
    """``factory``: ``video_tokenizer()`` with random weights; else a preset or folder."""
    if name == "factory":
        from mmtok.video.tokenizer import video_tokenizer

        return video_tokenizer().eval()
    from mmtok.checkpoint import load_pretrained

    return load_pretrained(name)


def mem_child(model: str, path: str, fps: float) -> None:
    """In a fresh process: tokenize ``path`` clip by clip from a stream at ``fps``; print JSON."""
    setup_threads(THREADS)
    from mmtok.video.io import iter_clips

    tok = load_model(model)
    start_rss = rss_mb()
    t0, ids, frames = time.perf_counter(), [], 0
    for clip in iter_clips(path, tok.clip_frames, fps=fps):
        # the last clip without its padding frames: ids == one encode of the whole video
        ids.append(tok.encode(clip.frames[None, :, : clip.n_real]).ids)
        frames += clip.n_real
    tokens = torch.cat(ids, dim=2)
    result = {"peak_mb": peak_rss_mb(), "start_mb": start_rss, "clips": len(ids),
              "frames": frames, "grid": list(tokens.shape[2:]),
              "seconds": time.perf_counter() - t0}  # fmt: skip
    print(json.dumps(result))


def memory_rows(mode: Mode, model: str) -> list[list[str]]:
    """Peak RSS for the short and the long synthetic video, each in a fresh process."""
    rows, peaks = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for seconds in (mode.short_s, mode.long_s):
            path = Path(tmp) / f"synthetic_{seconds}s.mp4"
            write_video(path, seconds)
            quiet()
            cmd = [sys.executable, str(Path(__file__).resolve()), "--mem-child", model,
                   str(path), str(mode.sample_fps)]  # fmt: skip
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            res = json.loads(out.strip().splitlines()[-1])
            peaks.append(res["peak_mb"])
            detail = (f"{res['clips']} clips, {res['frames']} frames, grid {res['grid']}, "
                      f"{res['clips'] / res['seconds']:.2f} clips/s")  # fmt: skip
            rows.append([f"peak RSS {seconds} s video", 1, f"{res['peak_mb']:.0f} MiB", detail, ""])
    ratio = peaks[1] / peaks[0]
    target = f"<= {RSS_TARGET:.2f}x: {verdict(ratio <= RSS_TARGET)}"
    rows.append([f"peak RSS {mode.long_s} s / {mode.short_s} s", "-", f"{ratio:.2f}x", "", target])
    return rows


HEADERS = ["measure", "batch", "value", "detail", "target"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one repeat, short videos (smoke run)")
    ap.add_argument("--model", help="preset name, checkpoint folder or 'factory' "
                    "(default: video-small if bundled, else factory)")  # fmt: skip
    ap.add_argument("--mem-child", nargs=3, help=argparse.SUPPRESS)  # model, path, fps
    args = ap.parse_args()
    if args.mem_child:
        return mem_child(args.mem_child[0], args.mem_child[1], float(args.mem_child[2]))
    setup_threads(THREADS)
    mode = QUICK if args.quick else FULL
    model = args.model or default_model()
    tok = load_model(model)
    n_params = sum(p.numel() for p in tok.parameters()) / 1e6
    label = "video_tokenizer() (random weights)" if model == "factory" else model
    print(f"video benchmark ({'quick' if args.quick else 'full'}): {label} "
          f"({n_params:.1f}M params), clip {'x'.join(map(str, CLIP))} -> "
          f"{'x'.join(map(str, tok.token_grid(CLIP)))} tokens, {machine_line()}")  # fmt: skip
    floor = floor_gflops(mode.repeats)
    rows = speed_rows(tok, floor, mode.repeats)
    rows += memory_rows(mode, model)
    print_table(HEADERS, rows, left=1)
    how = "iter_clips stream, fresh process each (ru_maxrss)"
    print(f"memory: 256x256 synthetic video ({SOURCE_FPS} fps source) sampled at "
          f"{mode.sample_fps:g} fps, {how}")  # fmt: skip
    print(f"other processes' CPU use before measurements: max {max(BUSY):.0%} (waited for < 15%)")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()
