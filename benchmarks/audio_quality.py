"""Audio tokenizers on held-out music, side by side with Opus at the same bitrate.

    python3 benchmarks/audio_quality.py [MODEL ...] [--manifest data/music44/manifest.jsonl]
        [--seconds 10] [--max-files 16] [--n-q 1,2,4,8] [--no-opus]

MODEL: preset names or save_pretrained folders (default: every bundled audio preset). Clips:
the centred ``--seconds`` excerpt of each ``heldout`` file of the manifest (fetched by
``data_scripts/fetch_music_packages.py``; whole files held out of training), mixed to mono.
Every model codes the clips at its own sample rate (a stereo file would be coded per channel:
mono numbers are per channel). Per model (and per ``n_q`` for residual VQ):

- kbit/s per channel, SI-SNR and SNR (dB, higher is better), the multi-resolution log-mel
  distance of ``mmtok.metrics.mel_distance`` at the model's rate (lower is better; 0 = equal),
  and codebook usage: the fewest codes used by any codebook stream over all clips, as % of K;
- the same clips through **Opus** (PyAV ``libopus``, CBR, 48 kHz, 20 ms frames) at the same
  bitrate, or at Opus's 6 kbit/s floor when the model's is lower (then Opus has more bits),
  decoded, resampled back and aligned (``mmtok.codecs.opus_roundtrip``).

Prints a table; ``--json FILE`` writes it too. Not a timed test: quality only.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from mmtok.audio.io import ClippingWarning, load_audio
from mmtok.checkpoint import load_pretrained
from mmtok.codecs import opus_bitrate, opus_roundtrip
from mmtok.metrics import mel_distance, si_snr, snr


@dataclass
class Row:
    model: str
    sample_rate: int
    kbps: float
    si_snr: float
    snr: float
    mel: float
    usage: float
    opus_kbps: float | None = None
    opus_si_snr: float | None = None
    opus_mel: float | None = None


def heldout_files(manifest: Path, limit: int) -> list[Path]:
    rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    files = [manifest.parent / r["path"] for r in rows if r.get("split") == "heldout"]
    if not files:
        raise SystemExit(f"{manifest}: no heldout rows (run data_scripts/fetch_music_packages.py)")
    return sorted(files)[:limit]


def excerpt(path: Path, rate: int, seconds: float) -> torch.Tensor:
    """Mono ``[1, T]`` centred excerpt of ``path`` at ``rate``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ClippingWarning)
        x = load_audio(path, rate).samples
    n = int(seconds * rate)
    start = max(0, (x.shape[1] - n) // 2)
    return x[:, start : start + n].contiguous()


def usage(ids: list[torch.Tensor], k: int) -> float:
    """Fewest distinct codes over the streams (ids ``[1, Q, t]`` per clip), as a fraction of K."""
    allids = torch.cat([i.reshape(i.shape[1], -1) for i in ids], dim=1)  # [Q, sum t]
    return min(len(torch.unique(row)) for row in allids) / k


def score(name: str, tok, clips: dict[int, list[torch.Tensor]], n_q: int | None,  # noqa: ANN001
          with_opus: bool) -> Row:  # fmt: skip
    rate = tok.sample_rate
    xs = clips.setdefault(rate, [])
    ids, s, p, m = [], [], [], []
    with torch.no_grad():
        for x in xs:
            t = tok.encode(x[None], n_q=n_q)
            y = tok.decode(t).clamp(-1, 1)[0]
            ids.append(t.ids)
            s.append(si_snr(x, y))
            p.append(snr(x, y))
            m.append(mel_distance(x[None], y[None], rate))
    bits = tok.bitrate(n_q)
    row = Row(name if n_q is None else f"{name} n_q={n_q}", rate, bits / 1000, float(np.mean(s)),
              float(np.mean(p)), float(np.mean(m)), usage(ids, tok.codebook_size))  # fmt: skip
    if with_opus:
        ob = opus_bitrate(bits)
        zs = [opus_roundtrip(x, rate, ob) for x in xs]
        row.opus_kbps = ob / 1000
        row.opus_si_snr = float(np.mean([si_snr(x, z) for x, z in zip(xs, zs, strict=True)]))
        row.opus_mel = float(np.mean([mel_distance(x[None], z[None], rate)
                                      for x, z in zip(xs, zs, strict=True)]))  # fmt: skip
    return row


def fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("models", nargs="*", help="presets or checkpoint folders")
    p.add_argument("--manifest", type=Path, default=Path("data/music44/manifest.jsonl"))
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--max-files", type=int, default=16)
    p.add_argument("--n-q", default="1,2,4,8", help="n_q values for residual-VQ models")
    p.add_argument("--no-opus", action="store_true")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    torch.set_num_threads(2)
    if not args.models:
        from mmtok.presets import PRESETS, list_presets

        args.models = [n for n in list_presets() if PRESETS[n].modality == "audio"]
    files = heldout_files(args.manifest, args.max_files)
    rows: list[Row] = []
    clip_cache: dict[int, list[torch.Tensor]] = {}
    for name in args.models:
        tok = load_pretrained(name).eval()
        if tok.sample_rate not in clip_cache:
            clip_cache[tok.sample_rate] = [excerpt(f, tok.sample_rate, args.seconds) for f in files]
        label = Path(name).parent.name if Path(name).name == "final" else str(name)
        qs = [int(q) for q in args.n_q.split(",")] if tok.num_codebooks > 1 else [None]
        for q in qs:
            if q is not None and q > tok.num_codebooks:
                continue
            rows.append(score(label, tok, clip_cache, q, not args.no_opus))
            print(f"  done {rows[-1].model}", file=sys.stderr)
    secs = args.seconds * len(files)
    print(f"held-out music: {len(files)} files x {args.seconds:g} s centred excerpts (mono), "
          f"{secs:.0f} s; {args.manifest}")  # fmt: skip
    head = (f"{'model':34} {'rate':>6} {'kbit/s':>7} {'SI-SNR':>7} {'SNR':>6} {'mel':>6} "
            f"{'usage':>6} | {'Opus kb':>7} {'SI-SNR':>7} {'mel':>6}")  # fmt: skip
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r.model:34} {r.sample_rate:>6} {r.kbps:>7.2f} {r.si_snr:>7.2f} {r.snr:>6.2f} "
              f"{r.mel:>6.3f} {r.usage:>6.1%} | {fmt(r.opus_kbps, '>7.2f')} "
              f"{fmt(r.opus_si_snr, '>7.2f')} {fmt(r.opus_mel, '>6.3f')}")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
