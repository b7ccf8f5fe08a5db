"""Soak: ``mmtok prep`` of 500 mixed media files, SIGKILLed at random points and resumed.

    python3 benchmarks/soak.py [--files 500] [--bad 10] [--kills 5] [--workers 2] [--seed 0]

Generates ``--files`` small files (images, audio, video, and ``--bad`` deliberately broken
ones: empty, truncated, text renamed), three tiny untrained tokenizers (save_pretrained),
then runs ``python -m mmtok prep`` with ``--workers`` decoding processes:

1. once uninterrupted (the reference);
2. into a second folder, killed with SIGKILL (the prep process only, as the OOM killer would)
   ``--kills`` times at random moments (one during start-up, the others after a random number
   of new shards plus a random part of one shard's time, from the reference's timing), rerun
   each time with the same command, then run to the end. After each kill the decoding
   workers must exit on their own (orphans are counted, then killed).

Memory is sampled from /proc every 20 ms: the prep process's RSS at 25/50/75/100 % of its
shards (while working), its peak (VmHWM, exit included) and the peak sum over it and its
workers. Flat: the uninterrupted run's RSS grows <= 64 MiB from 25 % to 100 %, and no
killed/resumed run peaks over 1.25x the uninterrupted one. At the end the shards are read
with pyarrow alone: items in / items out / duplicates / missing (must be 0 / 0), failures
(must be exactly the bad files), and the folder is compared with the reference (same rows
per shard, vocab.json, failures.jsonl, meta.json totals). Prints PASS or FAIL (exit code 1).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq
import torch
from common import print_table

from mmtok.audio.io import save_audio
from mmtok.audio.tokenizer import audio_tokenizer
from mmtok.image.io import save_image
from mmtok.image.tokenizer import image_tokenizer
from mmtok.video.io import save_video
from mmtok.video.tokenizer import video_tokenizer

REPO = Path(__file__).resolve().parents[1]
RSS_FLAT = 1.25  # a resumed run's peak RSS may exceed the uninterrupted run's by at most 25 %
RSS_GROWTH_MIB = 64  # and the uninterrupted run's RSS may grow this much from 25 % to the end
QUARTERS = (0.25, 0.5, 0.75, 1.0)


# --- inputs ----------------------------------------------------------------------------------
def _good_file(folder: Path, i: int, rng: random.Random, g: torch.Generator) -> Path:
    """One small valid file: 60 % images, 25 % audio, 15 % video, sizes varying."""
    r = rng.random()
    if r < 0.60:
        h, w = rng.choice([(32, 32), (32, 48), (48, 32), (40, 40)])
        base = torch.rand(3, h // 8, w // 8, generator=g) * 2 - 1
        path = folder / f"item{i:04d}.png"
        save_image(path, torch.nn.functional.interpolate(base[None], size=(h, w))[0])
    elif r < 0.85:
        rate = rng.choice([16000, 22050, 44100])
        n = int(rate * rng.uniform(0.1, 0.4))
        t = torch.arange(n) / rate
        wave = 0.3 * torch.sin(2 * math.pi * rng.uniform(100, 2000) * t)
        path = folder / f"item{i:04d}.{rng.choice(['wav', 'flac'])}"
        save_audio(path, (wave + 0.05 * torch.randn(n, generator=g))[None].clamp(-1, 1), rate)
    else:
        frames = torch.rand(3, rng.choice([8, 12, 16]), 4, 4, generator=g) * 2 - 1
        frames = torch.nn.functional.interpolate(frames[None], size=(frames.shape[1], 32, 32))[0]
        path = folder / f"item{i:04d}.mp4"
        save_video(path, frames, fps=8)
    return path


def _bad_file(folder: Path, i: int, kind: int, good: list[Path]) -> Path:
    """A file no reader accepts: empty, truncated, text under a media suffix, random bytes."""
    png = next(p for p in good if p.suffix == ".png")
    mp4 = next(p for p in good if p.suffix == ".mp4")
    makers = [
        (".png", b""),
        (".png", png.read_bytes()[:40]),
        (".mp4", b"this is a text file, not a video\n"),
        (".mp4", mp4.read_bytes()[:300]),
        (".wav", b""),
        (".flac", bytes(random.Random(i).randrange(256) for _ in range(2000))),
    ]
    suffix, payload = makers[kind % len(makers)]
    path = folder / f"item{i:04d}{suffix}"
    path.write_bytes(payload)
    return path


def make_media(root: Path, files: int, bad: int, seed: int) -> tuple[list[Path], list[Path]]:
    """``files`` files in 10 mixed folders; (good paths, bad paths)."""
    rng, g = random.Random(seed), torch.Generator().manual_seed(seed)
    slots = list(range(files))
    bad_slots = set(rng.sample(slots[files // 10 :], bad))  # after some good ones exist
    good, broken = [], []
    for i in slots:
        folder = root / f"part{i % 10}"
        folder.mkdir(parents=True, exist_ok=True)
        if i in bad_slots:
            broken.append(_bad_file(folder, i, len(broken), good))
        else:
            good.append(_good_file(folder, i, rng, g))
    return good, broken


def make_tokenizers(root: Path) -> dict[str, Path]:
    """Tiny untrained tokenizers (one training forward runs the k-means init), saved."""
    torch.manual_seed(0)
    toks = {
        "image": (image_tokenizer(downsample=4, hidden=8, latent_dim=8, codebook_size=64),
                  torch.rand(2, 3, 32, 32)),
        "audio": (audio_tokenizer(hop=32, width=8, latent_dim=16, codebook_size=64),
                  torch.rand(2, 1, 2048)),
        "video": (video_tokenizer(hidden=8, latent_dim=16, codebook_size=64, fps=8),
                  torch.rand(2, 3, 8, 32, 32)),
    }  # fmt: skip
    out = {}
    for modality, (tok, x) in toks.items():
        tok.train()(x * 2 - 1)
        out[modality] = root / f"tiny-{modality}"
        tok.save_pretrained(out[modality])
    return out


# --- one prep process, watched ---------------------------------------------------------------
def _children(pid: int) -> list[int]:
    """Descendants of ``pid`` (from /proc/<pid>/task/*/children)."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                kids = [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
            found += kids
            todo += kids
    return found


def _status_kib(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


@dataclass
class Run:
    label: str
    seconds: float = 0.0
    killed: bool = False
    shards_before: int = 0
    shards_after: int = 0
    peak_main_mib: float = 0.0
    peak_tree_mib: float = 0.0
    first_shard_s: float | None = None
    timeline: list[tuple[int, float]] = field(default_factory=list)  # (shards, RSS MiB)

    def rss_at(self, fraction: float) -> float:
        """The prep process's RSS (MiB) when ``fraction`` of this run's new shards were done."""
        new = self.shards_after - self.shards_before
        done = [rss for shards, rss in self.timeline if shards - self.shards_before
                <= fraction * new]  # fmt: skip
        return done[-1] if done else 0.0

    orphans: int = 0
    code: int | None = None


class Watch(threading.Thread):
    """Samples the prep process tree every 20 ms: peak RSS and the time of the first shard."""

    def __init__(self, proc: subprocess.Popen, record: Run, out: Path) -> None:
        super().__init__(daemon=True)
        self.proc, self.record, self.out, self.t0 = proc, record, out, time.perf_counter()
        self.kids: list[int] = []
        self.stop = threading.Event()

    def run(self) -> None:
        r = self.record
        while not self.stop.is_set() and self.proc.poll() is None:
            self.kids = _children(self.proc.pid)
            hwm = _status_kib(self.proc.pid, "VmHWM")
            tree = _status_kib(self.proc.pid, "VmRSS") + sum(
                _status_kib(k, "VmRSS") for k in self.kids)  # fmt: skip
            rss, shards = _status_kib(self.proc.pid, "VmRSS") / 1024, _shards(self.out)
            r.peak_main_mib = max(r.peak_main_mib, hwm / 1024)
            r.peak_tree_mib = max(r.peak_tree_mib, tree / 1024)
            if rss and not (self.out / "meta.json").exists():  # the work, not the exit
                r.timeline.append((shards, rss))
            if r.first_shard_s is None and shards > r.shards_before:
                r.first_shard_s = time.perf_counter() - self.t0
            time.sleep(0.02)


def _shards(out: Path) -> int:
    return len(list(out.glob("shard-*.parquet"))) if out.is_dir() else 0


def prep_run(cmd: list[str], out: Path, label: str, kill: tuple[int, float] | None) -> Run:
    """Run ``cmd``. ``kill=(shards, delay)``: once ``shards`` shards are on disk, wait
    ``delay`` seconds more and SIGKILL it if it is still running (None: let it finish)."""
    run = Run(label, shards_before=_shards(out))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO),
           os.environ.get("PYTHONPATH")])), "OMP_NUM_THREADS": "1"}  # fmt: skip
    log = out.parent / f"{out.name}.{label.replace(' ', '_')}.log"
    t0 = time.perf_counter()
    with open(log, "w") as err:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err)
    watch = Watch(proc, run, out)
    watch.start()
    if kill is not None:
        shards, delay = kill
        while proc.poll() is None and _shards(out) < shards:
            time.sleep(0.01)
        deadline = time.perf_counter() + delay
        while proc.poll() is None and time.perf_counter() < deadline:
            time.sleep(0.005)
        if proc.poll() is None:
            kids = _children(proc.pid) or watch.kids
            os.kill(proc.pid, signal.SIGKILL)  # the prep process only, as the OOM killer would
            proc.wait()
            run.killed = True
            run.orphans = _reap(kids)
    proc.wait()
    watch.stop.set()
    watch.join()
    run.seconds = time.perf_counter() - t0
    run.code = proc.returncode
    run.shards_after = _shards(out)
    if not run.killed and proc.returncode != 0:
        raise SystemExit(f"{label}: prep failed with code {proc.returncode}:\n"
                         f"{log.read_text()[-3000:]}")  # fmt: skip
    return run


def _reap(pids: list[int], timeout: float = 15.0) -> int:
    """Wait for the killed process's workers to exit on their own; SIGKILL and count the ones
    still alive after ``timeout`` s (orphans)."""
    deadline = time.monotonic() + timeout
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if Path(f"/proc/{p}").exists() and _status_kib(p, "VmRSS")]
        time.sleep(0.1)
    for p in alive:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return len(alive)


# --- checks ----------------------------------------------------------------------------------
def read_output(out: Path) -> tuple[list[dict], list[dict]]:
    """All rows (pyarrow only, no mmtok) and the failures of a prep folder."""
    rows = [r for p in sorted(out.glob("shard-*.parquet")) for r in pq.read_table(p).to_pylist()]
    fails = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    return rows, fails


def compare(ref: Path, out: Path) -> list[str]:
    """Differences between two prep folders (empty: same shards, rows, vocab, totals)."""
    problems = []
    names = sorted(p.name for p in ref.glob("shard-*.parquet"))
    if names != sorted(p.name for p in out.glob("shard-*.parquet")):
        problems.append("different shard files")
    for name in names:
        if not (out / name).exists() or not pq.read_table(ref / name).equals(
            pq.read_table(out / name)
        ):
            problems.append(f"{name}: rows differ")
    for name in ("vocab.json", "failures.jsonl"):
        if (ref / name).read_bytes() != (out / name).read_bytes():
            problems.append(f"{name} differs")
    meta_a, meta_b = (json.loads((d / "meta.json").read_text()) for d in (ref, out))
    meta_a.pop("elapsed_s"), meta_b.pop("elapsed_s")
    if meta_a != meta_b:
        problems.append(f"meta.json differs: {meta_a} != {meta_b}")
    return problems


def count(rows: list[dict], fails: list[dict], good: list[Path], bad: list[Path]) -> dict:
    sources = [r["source"] for r in rows]
    seen = sources + [f["path"] for f in fails]
    inputs = {str(p) for p in good + bad}
    return {
        "items in": len(inputs),
        "items out": len(rows),
        "failures": len(fails),
        "duplicates": len(seen) - len(set(seen)),
        "missing": len(inputs - set(seen)),
        "unexpected": len(set(seen) - inputs),
        "failures == bad files": {f["path"] for f in fails} == {str(p) for p in bad},
        "rows == good files": set(sources) == {str(p) for p in good},
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=500, help="media files, bad ones included")
    ap.add_argument("--bad", type=int, default=10, help="deliberately broken files")
    ap.add_argument("--kills", type=int, default=5)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--shard-size", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--root", help="work folder (default: a new temporary one)")
    args = ap.parse_args()
    root = Path(args.root or tempfile.mkdtemp(prefix="mmtok-soak-"))
    rng = random.Random(args.seed)

    t0 = time.perf_counter()
    good, bad = make_media(root / "media", args.files, args.bad, args.seed)
    toks = make_tokenizers(root)
    kinds = {s: sum(p.suffix == s for p in good) for s in sorted({p.suffix for p in good})}
    print(f"soak: {len(good) + len(bad)} files in {root / 'media'} ({len(good)} good: "
          f"{kinds}; {len(bad)} bad), made in {time.perf_counter() - t0:.1f} s")  # fmt: skip

    def cmd(out: Path) -> list[str]:
        return [sys.executable, "-m", "mmtok", "prep", str(root / "media"), "-o", str(out),
                "--image-tokenizer", str(toks["image"]), "--audio-tokenizer", str(toks["audio"]),
                "--video-tokenizer", str(toks["video"]), "--workers", str(args.workers),
                "--shard-size", str(args.shard_size)]  # fmt: skip

    ref_out, out = root / "uninterrupted", root / "killed"
    ref = prep_run(cmd(ref_out), ref_out, "uninterrupted", None)
    total = ref.shards_after
    startup = ref.first_shard_s or 0.0
    per_shard = max(ref.seconds - startup, 0.1) / max(total - 1, 1)
    runs = [ref]
    kills, startup_kill = 0, rng.randrange(args.kills)  # one kill lands during start-up
    while kills < args.kills and len(runs) < 3 * args.kills:
        done, left = _shards(out), total - _shards(out)
        if kills == startup_kill:  # before any shard: after a random part of the start-up
            plan = (0, rng.uniform(0.2, 0.9) * startup)
        else:  # after a random number of new shards, at a random moment inside the next one
            step = rng.randint(1, max(1, left // (args.kills - kills + 1)))
            plan = (done + step, rng.uniform(0.0, 1.0) * per_shard)
        run = prep_run(cmd(out), out, f"kill {kills + 1}", plan)
        runs.append(run)
        kills += run.killed
    runs.append(prep_run(cmd(out), out, "final resume", None))

    print_table(
        ["run", "seconds", "ended", "shards before", "shards after",
         "RSS MiB at 25/50/75/100 % of its shards", "peak RSS MiB", "peak RSS +workers MiB",
         "orphans"],
        [[r.label, f"{r.seconds:.1f}", "SIGKILL" if r.killed else f"exit {r.code}",
          r.shards_before, r.shards_after,
          " / ".join(f"{r.rss_at(q):.0f}" for q in QUARTERS) if r.first_shard_s else "-",
          f"{r.peak_main_mib:.0f}", f"{r.peak_tree_mib:.0f}", r.orphans] for r in runs],
    )  # fmt: skip
    rows, fails = read_output(out)
    c = count(rows, fails, good, bad)
    print("  ".join(f"{k}: {v}" for k, v in c.items()))
    ref_rows, ref_fails = read_output(ref_out)
    print("uninterrupted:", "  ".join(f"{k}: {v}" for k, v in count(ref_rows, ref_fails, good,
                                                                     bad).items()))  # fmt: skip
    diffs = compare(ref_out, out)
    print("killed+resumed vs uninterrupted:", "identical shards, vocab, failures, totals"
          if not diffs else "; ".join(diffs))  # fmt: skip
    peak = max(r.peak_main_mib for r in runs[1:])
    growth = ref.rss_at(1.0) - ref.rss_at(0.25)
    flat = peak <= RSS_FLAT * ref.peak_main_mib and growth <= RSS_GROWTH_MIB
    print(
        f"peak RSS: uninterrupted {ref.peak_main_mib:.0f} MiB (RSS {growth:+.0f} MiB from 25 % "
        f"to 100 % of its shards), killed/resumed runs max {peak:.0f} MiB -> "
        f"{'flat' if flat else 'GROWS'} (limits: {RSS_FLAT:g}x, +{RSS_GROWTH_MIB} MiB)"
    )
    ok = (c["duplicates"] == 0 and c["missing"] == 0 and c["unexpected"] == 0
          and c["failures == bad files"] and c["rows == good files"] and not diffs and flat
          and kills == args.kills and all(r.orphans == 0 for r in runs))  # fmt: skip
    print(f"{'PASS' if ok else 'FAIL'}: {kills} SIGKILLs, {time.perf_counter() - t0:.0f} s total")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
