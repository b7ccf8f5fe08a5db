"""Fetch real music for the audio tokenizers: the Sonic Pi sample pack (CC0, FLAC, 44.1 kHz).

Source: Debian package ``sonic-pi-samples`` (165 FLAC one-shots and loops: drums, bass,
ambient, guitar, ...), fetched with ``apt-get download`` and unpacked with ``dpkg-deb -x``;
the package's ``buffers/rand-stream.wav`` (noise, not music) is skipped. The FLAC files are
copied into ``--out`` (default ``data/music/`` in the repo) with the package's copyright file, and
``manifest.jsonl`` is written there: one row per file with ``path`` (relative to the
manifest), ``duration_s``, ``sample_rate``, ``channels`` and ``split`` ("train" or
"holdout"; a file is held out when the hash of its name falls in the first
``--holdout-frac`` of the hash range, so the split never depends on what else is present).

Idempotent: once all files are in place (marker ``.fetched``), a re-run skips the download
and only rewrites the manifest; ``--force`` downloads again. Ends by printing totals.

    python3 data_scripts/fetch_music.py [--out data/music] [--holdout-frac 0.1] [--force]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mmtok.audio.io import audio_info
from mmtok.errors import InputError
from mmtok.fileutil import atomic_path

PACKAGE = "sonic-pi-samples"
SAMPLES_DIR = "usr/share/sonic-pi/samples"
COPYRIGHT = f"usr/share/doc/{PACKAGE}/copyright"
MARKER = ".fetched"
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "data" / "music"


def holdout_split(name: str, frac: float) -> str:
    """'holdout' for about ``frac`` of names, chosen by a hash of the name; else 'train'."""
    h = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") / 2**64
    return "holdout" if h < frac else "train"


def download(out: Path) -> int:
    """apt-get download + dpkg-deb -x into a temp dir; copy the FLACs into ``out``."""
    with tempfile.TemporaryDirectory(prefix="fetch_music.") as tmp_name:
        tmp = Path(tmp_name)
        subprocess.run(["apt-get", "download", PACKAGE], cwd=tmp, check=True)
        deb = next(tmp.glob(f"{PACKAGE}_*.deb"))
        subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp / "root")], check=True)
        flacs = sorted((tmp / "root" / SAMPLES_DIR).glob("*.flac"))
        if not flacs:
            raise SystemExit(f"no FLAC files in {deb.name} under {SAMPLES_DIR}")
        for src in flacs:
            with atomic_path(out / src.name) as dst:  # never a half-copied file
                shutil.copyfile(src, dst)
        with atomic_path(out / "COPYRIGHT") as dst:
            shutil.copyfile(tmp / "root" / COPYRIGHT, dst)
        print(f"copied {len(flacs)} FLAC files from {deb.name} into {out}")
    return len(flacs)


def manifest_rows(out: Path, frac: float) -> tuple[list[dict], list[str]]:
    """One row per FLAC in ``out`` (sorted), and the files audio_info refused."""
    rows, failures = [], []
    for path in sorted(out.glob("*.flac")):
        try:
            info = audio_info(path)
        except InputError as e:
            print(f"FAILED {e}", file=sys.stderr)
            failures.append(path.name)
            continue
        rows.append(
            {
                "path": path.name,
                "duration_s": round(info["duration_s"], 6),
                "sample_rate": info["sample_rate"],
                "channels": info["channels"],
                "split": holdout_split(path.name, frac),
            }
        )
    return rows, failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    parser.add_argument(
        "--holdout-frac", type=float, default=0.1, help="fraction held out (by name hash)"
    )
    parser.add_argument("--force", action="store_true", help="download even if present")
    args = parser.parse_args(argv)
    if not 0.0 <= args.holdout_frac < 1.0:
        parser.error(f"--holdout-frac must be in [0, 1), got {args.holdout_frac}")
    t0 = time.monotonic()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    if (out / MARKER).exists() and not args.force:
        print(f"{out / MARKER} present: skipping the download")
    else:
        download(out)
        (out / MARKER).write_text(f"{PACKAGE}\n")
    rows, failures = manifest_rows(out, args.holdout_frac)
    with atomic_path(out / "manifest.jsonl") as tmp:
        tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    seconds = sum(r["duration_s"] for r in rows)
    held = sum(r["split"] == "holdout" for r in rows)
    print(
        f"files {len(rows)}  seconds {seconds:.1f} ({seconds / 60:.1f} min)  "
        f"held-out {held}  failures {len(failures)}  elapsed {time.monotonic() - t0:.1f} s  "
        f"manifest {out / 'manifest.jsonl'}"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
