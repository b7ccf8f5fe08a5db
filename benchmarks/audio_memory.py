"""Peak memory of ``mmtok encode`` on long 44.1 kHz stereo files: streamed vs loaded whole.

For each length (default 1, 10 and 30 minutes) a 16-bit 44.1 kHz stereo WAV file of generated
music is written block by block to a temp folder, then encoded in a fresh process each way:

- ``stream``: ``mmtok.audio.stream.encode_file`` (what ``mmtok encode`` runs): read from disk
  in 10 s blocks, resampled block by block when the tokenizer's rate differs, each channel
  coded alone by the mono tokenizer, exact windows as the samples arrive;
- ``whole``: the previous path, ``tok.encode(load_audio(path, rate, "keep").samples[None])``:
  the file is read and resampled whole, then encoded (windowed) from memory;
- ``idle``: the same process that only imports mmtok and loads the tokenizer (the floor).

Each child's peak RSS is ``ru_maxrss`` from ``os.wait4`` (this parent never imports torch, so
the child's figure is its own: Linux carries maxrss over fork + exec). Children leave with
``os._exit`` once they have printed: tearing down the interpreter after torch was imported
raises RSS by ~135 MiB at exit, which is not the encode's memory. Time is the child's
encode wall time; the ``whole`` child also checks that its ids equal the streamed ones.
Target (issue 14): the 30-minute stereo file streams in <= 300 MB peak RSS, flat in the length.

    python3 benchmarks/audio_memory.py                    # 1, 10, 30 min; the default preset
    python3 benchmarks/audio_memory.py --minutes 0.5,2 --preset audio-hop32
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 44100
BLOCK_S = 10.0
TARGET_MB = 300.0
FLAT_TARGET = 1.1  # streamed peak, longest / shortest file
THREADS = 2


def write_music(path: Path, minutes: float, sr: int = SR) -> Path:
    """A stereo 16-bit WAV of ``minutes`` of generated music, written in 10 s blocks."""
    rng = np.random.default_rng(0)
    frames, block = round(minutes * 60 * sr), round(BLOCK_S * sr)
    with sf.SoundFile(str(path), "w", sr, 2, subtype="PCM_16") as f:
        for start in range(0, frames, block):
            t = np.arange(start, min(frames, start + block)) / sr
            left = 0.3 * np.sin(2 * np.pi * 220 * t + 2 * np.sin(2 * np.pi * 3 * t))
            right = 0.3 * np.sin(2 * np.pi * 331 * t) * np.exp(-4 * (t % 0.7))
            x = np.stack([left, right], 1) + 0.03 * rng.standard_normal((t.size, 2))
            f.write(x.clip(-0.99, 0.99).astype(np.float32))
    return path


def child(mode: str, path: str, preset: str, ids_path: str) -> None:
    """In a fresh process: load the tokenizer, encode ``path`` one way, print JSON."""
    import torch

    torch.set_num_threads(THREADS)
    import mmtok
    from mmtok.audio.io import load_audio
    from mmtok.audio.stream import encode_file
    from mmtok.presets import default_preset
    from mmtok.tokens import Tokens

    tok = mmtok.load_tokenizer(preset or default_preset("audio"))
    result = {"tokenizer": tok.name, "sample_rate": tok.sample_rate, "ids_equal": None}
    t0 = time.perf_counter()
    if mode == "stream":
        tokens = encode_file(tok, path, block_s=BLOCK_S)
        tokens.save(ids_path)
    elif mode == "whole":
        tokens = tok.encode(load_audio(path, tok.sample_rate, "keep").samples[None])
    result["seconds"] = time.perf_counter() - t0
    if mode == "whole" and Path(ids_path).exists():
        result["ids_equal"] = torch.equal(tokens.ids, Tokens.load(ids_path).ids)
    print(json.dumps(result))


def run_child(mode: str, path: Path, preset: str, ids_path: Path) -> dict:
    """Run ``child`` in a new process; its JSON plus ``peak_mb`` (its ru_maxrss, MiB)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", mode, str(path),
           "--preset", preset, "--ids", str(ids_path)]  # fmt: skip
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True)
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)  # not proc.wait(): wait4 gives its rusage
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode:
            err.seek(0)
            raise RuntimeError(f"{mode} child failed ({proc.returncode}): {err.read()[-2000:]}")
    return {**json.loads(out.strip().splitlines()[-1]), "peak_mb": usage.ru_maxrss / 1024}


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", default="1,10,30", help="file lengths, comma-separated")
    ap.add_argument("--preset", default="", help="preset or checkpoint (default: the default "
                    "audio preset)")  # fmt: skip
    ap.add_argument("--no-whole", action="store_true", help="skip the load-whole comparison")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)  # mode, path
    ap.add_argument("--ids", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.preset, args.ids)
        sys.stdout.flush()
        os._exit(0)  # skip interpreter teardown: it adds ~135 MiB RSS after the work is done
    minutes = [float(m) for m in args.minutes.split(",")]
    rows, streamed = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        idle = run_child("idle", Path(tmp) / "none.wav", args.preset, Path(tmp) / "none")
        print(f"tokenizer {idle['tokenizer']} ({idle['sample_rate']} Hz, each channel coded "
              f"alone); idle process (imports + tokenizer) {idle['peak_mb']:.0f} MiB")  # fmt: skip
        for m in minutes:
            path = write_music(Path(tmp) / f"music_{m:g}min.wav", m)
            ids = Path(tmp) / f"{m:g}.tokens.safetensors"
            for mode in ("stream",) + (() if args.no_whole else ("whole",)):
                res = run_child(mode, path, args.preset, ids)
                if mode == "stream":
                    streamed[m] = res["peak_mb"]
                same = {None: "", True: "yes", False: "NO"}[res["ids_equal"]]
                rows.append([f"{m:g} min", mode, f"{res['peak_mb']:.0f}",
                             f"{res['peak_mb'] - idle['peak_mb']:.0f}", f"{res['seconds']:.1f}",
                             f"{2 * 60 * m / res['seconds']:.0f}x", same])  # fmt: skip
            path.unlink()
    headers = ["stereo file", "path", "peak RSS MiB", "above idle MiB", "encode s",
               "x real time per channel", "ids == streamed"]  # fmt: skip
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    for r in [headers, ["-" * w for w in widths], *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)))
    lo, hi = min(minutes), max(minutes)
    peak, above = streamed[hi], streamed[hi] - idle["peak_mb"]
    print(f"streamed {hi:g} min peak RSS {peak:.0f} MiB (<= {TARGET_MB:.0f}: "
          f"{verdict(peak <= TARGET_MB)}); above the idle process {above:.0f} MiB "
          f"(<= {TARGET_MB:.0f}: {verdict(above <= TARGET_MB)})")  # fmt: skip
    ratio = streamed[hi] / streamed[lo]
    print(f"streamed peak {hi:g} / {lo:g} min {ratio:.2f}x (<= {FLAT_TARGET}: "
          f"{verdict(ratio <= FLAT_TARGET)})")  # fmt: skip


if __name__ == "__main__":
    main()
