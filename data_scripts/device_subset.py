"""Pack a small, balanced training subset of the music and photo corpora for a GPU machine.

    python3 data_scripts/device_subset.py [--music data/music44] [--photos data/photos]
        [--out .dev] [--music-mb-per-package 4.2] [--photo-short-side 448]

A lent GPU machine receives at most 64 MiB with the working tree, so the 44.1 kHz presets of
recipes/README.md were trained on this subset, not on the whole corpora (~900 MB):

- music (``OUT/music44x``): per package, train-split tracks in the order of the sha256 of their
  path, each cut to its centred 30 s, mixed to mono and written as Ogg Vorbis (quality 0.7,
  ~98 kbit/s), until ``--music-mb-per-package`` MB; every ``heldout`` track as its centred
  10 s, mono, FLAC. ``excluded`` (band-limited) tracks are skipped.
- photos (``OUT/photos``): train photos resized to ``--photo-short-side`` on the short side,
  held-out photos to 512, JPEG quality 95.

Each folder gets a ``manifest.jsonl`` (path, package, split, source); the recipes read it when
``data/music44`` / ``data/photos`` point there (e.g. symlinks on the GPU machine). Idempotent:
existing output files are rewritten. Ends with totals.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
from collections import defaultdict
from pathlib import Path

import soundfile as sf
from PIL import Image

from mmtok.fileutil import atomic_path


def _rows(manifest: Path) -> list[dict]:
    return [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]


def _excerpt(path: Path, seconds: float) -> tuple:
    """Centred ``seconds`` of ``path`` as a mono float32 array, and its rate."""
    with sf.SoundFile(path) as f:
        rate, n = f.samplerate, f.frames
        length = int(seconds * rate)
        f.seek(max(0, n // 2 - length // 2))
        return f.read(min(length, n), dtype="float32", always_2d=True).mean(axis=1), rate


def _write(dest: Path, data: bytes) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)


def pack_music(src: Path, out: Path, mb_per_package: float) -> list[dict]:
    by_package: dict[str, list[dict]] = defaultdict(list)
    for row in _rows(src / "manifest.jsonl"):
        by_package[row["package"]].append(row)
    rows = []
    for package, items in sorted(by_package.items()):
        used = 0
        for row in sorted(items, key=lambda r: hashlib.sha256(r["path"].encode()).hexdigest()):
            split, buf = row["split"], io.BytesIO()
            if split == "heldout":
                x, rate = _excerpt(src / row["path"], 10)
                sf.write(buf, x, rate, format="FLAC")
                dest = out / Path(row["path"]).with_suffix(".flac")
            elif split == "train" and used <= mb_per_package * 1e6:
                x, rate = _excerpt(src / row["path"], 30)
                sf.write(buf, x, rate, format="OGG", subtype="VORBIS", compression_level=0.3)
                dest = out / Path(row["path"]).with_suffix(".ogg")
                if used + len(buf.getvalue()) > mb_per_package * 1e6:
                    continue
                used += len(buf.getvalue())
            else:
                continue
            _write(dest, buf.getvalue())
            rows.append({"path": str(dest.relative_to(out)), "package": package, "split": split,
                         "source": row["path"]})  # fmt: skip
        print(f"music {package}: {sum(r['package'] == package for r in rows)} files, "
              f"{used / 1e6:.1f} MB train")  # fmt: skip
    return rows


def pack_photos(src: Path, out: Path, short_side: int) -> list[dict]:
    rows = []
    for row in _rows(src / "manifest.jsonl"):
        if row["split"] not in ("train", "heldout"):
            continue
        image = Image.open(src / row["path"]).convert("RGB")
        short = 512 if row["split"] == "heldout" else short_side
        scale = short / min(image.size)
        if scale < 1:
            size = (round(image.width * scale), round(image.height * scale))
            image = image.resize(size, Image.LANCZOS)
        name = str(Path(row["path"]).with_suffix("")).replace(" ", "_") + f"_{short}.jpg"
        buf = io.BytesIO()
        image.save(buf, format="JPEG", quality=95)
        _write(out / name, buf.getvalue())
        rows.append({"path": name, "package": row["package"], "split": row["split"],
                     "source": row["path"]})  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--music", type=Path, default=Path("data/music44"))
    p.add_argument("--photos", type=Path, default=Path("data/photos"))
    p.add_argument("--out", type=Path, default=Path(".dev"))
    p.add_argument("--music-mb-per-package", type=float, default=4.2)
    p.add_argument("--photo-short-side", type=int, default=448)
    args = p.parse_args(argv)
    for name, rows in (
        ("music44x", pack_music(args.music, args.out / "music44x", args.music_mb_per_package)),
        ("photos", pack_photos(args.photos, args.out / "photos", args.photo_short_side)),
    ):
        folder = args.out / name
        _write(folder / "manifest.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode())
        size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**20
        splits = {s: sum(r["split"] == s for r in rows) for s in ("train", "heldout")}
        print(f"{folder}: {splits['train']} train + {splits['heldout']} heldout files, "
              f"{size:.1f} MiB")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
