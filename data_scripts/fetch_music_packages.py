"""Fetch the produced game soundtracks listed in ../shared/TRAINING_MEDIA.md into ``data/music44/``.

    python3 data_scripts/fetch_music_packages.py [--out data/music44] [--extras]
        [--heldout-per-package 2] [--min-seconds 30] [--hf-threshold 2e-6] [--force]

Each Debian package (pinned version; when the pin has left the archive the current version is
fetched and the fallback logged) is fetched with ``apt-get download`` and unpacked with
``dpkg-deb -x`` into a temp dir. The music files are copied byte for byte (no re-encoding) into
``--out/<package>/<path under the package's music folder>``: ``.pk3`` archives (ufoai, nexuiz)
are zip files whose ``.ogg`` members are read with zipfile; symlinks and byte-identical copies
(drascula's per-language folders) are kept once. Every file is decoded in full (soundfile, or
PyAV where soundfile fails); files that do not decode are reported and skipped, files shorter
than ``--min-seconds`` are dropped. The package's copyright file is copied beside its music.

``--out/manifest.jsonl`` gets one row per file: ``path`` (relative to the manifest), ``package``,
``version``, ``licence``, ``duration_s``, ``sample_rate``, ``channels``, ``decoder``,
``hf_energy_frac`` (share of the spectral energy above 11 kHz in five 6 s excerpts, mono mix),
``extra`` (an ``--extras`` package), ``band_limited`` (named as band-limited in
TRAINING_MEDIA.md, or ``hf_energy_frac`` below ``--hf-threshold``) and ``split``: "excluded"
for band-limited files, else "heldout" for whole files (``--heldout-per-package`` tunes per
package, 1 where a package has fewer than 10 files; chosen by sha256 of the name, versions of
one tune such as ``track3`` / ``track3_enhanced`` kept together) or "train". All of this music
is lossy (Vorbis/Opus, ~16-20 kHz low-pass).

Idempotent: ``--out/<package>/.fetched.json`` records a finished package (version, files and
their decode results), so a rerun downloads and decodes nothing and only rewrites the manifest;
``--force`` fetches again. Ends by printing totals per package and the failures.
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from mmtok.fileutil import atomic_path

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "data" / "music44"
RECORD = ".fetched.json"
ARCHIVE_SEP = "!"  # "<archive in the .deb>!<member glob>" reads members of a .pk3 zip
HF_CUTOFF_HZ = 11_000.0


@dataclass(frozen=True)
class Source:
    """One package: where its music is and under which licence.

    package: apt package name; version: the pinned version.
    patterns: globs under the unpacked .deb (``**`` recurses), or ``archive!member-glob``.
    licence: the package's licence; rules: (glob on the output path, licence) overrides, the
    last matching one wins; dep5: take per-file licences from the Debian copyright file.
    """

    package: str
    version: str
    patterns: tuple[str, ...]
    licence: str
    rules: tuple[tuple[str, str], ...] = ()
    dep5: bool = False
    extra: bool = False


LUPUS = "CC-BY-SA-3.0+ OR GPL-2+"
SOURCES = (
    Source(
        "ufoai-music",
        "2.5-2",
        ("usr/share/games/ufoai/base/0music.pk3!music/*.ogg",),
        "GPL-2+",
        dep5=True,
    ),
    Source(
        "warzone2100-music",
        "4.3.3-3",
        ("usr/share/games/warzone2100/music/**/*.opus",),
        "GPL-2+",
        rules=(
            ("albums/legacy_soundtrack/*", LUPUS),
            ("albums/aftermath_soundtrack/*", LUPUS),
            ("albums/aftermath_soundtrack/track3_enhanced.opus", "GPL-2+"),
        ),
    ),
    Source(
        "wesnoth-1.16-music",
        "1:1.16.9-1",
        ("usr/share/games/wesnoth/1.16/data/core/music/*.ogg",),
        "GPL-2+",
    ),
    Source(
        "nexuiz-music",
        "2.5.2-12",
        ("usr/share/games/nexuiz/data/music.pk3!sound/cdtracks/*.ogg",),
        "GPL-2+",
    ),
    Source(
        "singularity-music",
        "007-2",
        ("usr/share/games/singularity/music/**/*.ogg",),
        "CC-BY-SA-3.0",
    ),
    Source(
        "drascula-music",
        "1.0+ds4-2",
        ("usr/share/scummvm/drascula/**/*.ogg",),
        "Drascula-License (BSD-like)",
    ),
    Source("hyperrogue-music", "12.0q-1", ("usr/share/hyperrogue/music/*.ogg",), "CC-BY-SA-3.0"),
    Source(
        "hedgewars-data",
        "1.0.2-6",
        ("usr/share/games/hedgewars/Data/Music/*.ogg",),
        "GPL-2+",
        extra=True,
    ),
    Source(
        "supertux-data",
        "0.6.3-2",
        ("usr/share/games/supertux2/music/**/*.ogg",),
        "GPL-2+",
        extra=True,
    ),
    Source(
        "marsshooter-data",
        "0.7.6-7",
        ("usr/share/games/marsshooter/audio/music/*.ogg",),
        "CC-BY-SA-3.0",
        extra=True,
    ),
    Source(
        "freecol",
        "1.0.0-1",
        ("usr/share/games/freecol/default/resources/music/**/*.ogg",),
        "CC-BY-4.0",
        extra=True,
    ),
    Source(
        "frozen-bubble-data",
        "2.212-11",
        ("usr/share/games/frozen-bubble/snd/*zik*.ogg",),
        "GPL-2",
        extra=True,
    ),
)

# Tracks TRAINING_MEDIA.md names as band-limited (4-11 kHz top): file stems per package.
BAND_LIMITED = {
    "ufoai-music": {
        "Crystan-Battlescape02",
        "Crystan-Battlescape03",
        "Crystan-Geosphere03",
        "PsymongN3",
        "PsymongN5",
        "PsymongO5",
        "PsymongR2",
        "alBasrahM",
        "turinItalyM",
    },
    "warzone2100-music": {"menu", "menu_enhanced", "track19", "track20", "track23", "track25"},
}


# ---------------------------------------------------------------- pure helpers (tested)


def glob_base(pattern: str) -> str:
    """The leading path components of a glob that hold no wildcard ('' if none)."""
    parts = []
    for part in pattern.split("/"):
        if any(c in part for c in "*?["):
            break
        parts.append(part)
    return "/".join(parts[:-1] if len(parts) == len(pattern.split("/")) else parts)


def pk3_members(zf: zipfile.ZipFile, member_glob: str) -> dict[str, str]:
    """{output path: member} for the files of a zip matching member_glob (sorted)."""
    base = glob_base(member_glob)
    out = {}
    for info in sorted(zf.infolist(), key=lambda i: i.filename):
        if not info.is_dir() and fnmatch.fnmatchcase(info.filename, member_glob):
            out[info.filename[len(base) :].lstrip("/")] = info.filename
    return out


def tune_key(path: str) -> str:
    """Group key: one tune's versions share it (track3 / track3_enhanced, frantic-old)."""
    stem = Path(path).stem.lower()
    return re.sub(r"([-_ ]+(enhanced|old|remix|revisited|\d+))*[-_ ]*$", "", stem) or stem


def heldout_paths(paths: list[str], k: int) -> set[str]:
    """Whole tunes held out: the first k groups (tune_key) in sha256 order of the key."""
    groups: dict[str, list[str]] = {}
    for p in paths:
        groups.setdefault(tune_key(p), []).append(p)
    order = sorted(groups, key=lambda g: hashlib.sha256(g.encode()).hexdigest())
    return {p for g in order[:k] for p in groups[g]}


def heldout_count(n_eligible: int, per_package: int) -> int:
    """per_package tracks, 1 for packages with fewer than 10 eligible files (0 if none)."""
    if n_eligible == 0:
        return 0
    return 1 if n_eligible < 10 else min(per_package, n_eligible - 1)


def hf_energy_fraction(
    x: np.ndarray, sample_rate: int, cutoff_hz: float = HF_CUTOFF_HZ, n_fft: int = 4096
) -> float:
    """Share of spectral energy above cutoff_hz in x ([T] or [T, C], mixed to mono)."""
    mono = x.mean(axis=1) if x.ndim == 2 else x
    if len(mono) < n_fft:
        mono = np.pad(mono, (0, n_fft - len(mono)))
    hop = n_fft // 2
    frames = np.lib.stride_tricks.sliding_window_view(mono, n_fft)[::hop]  # [F, n_fft]
    power = (np.abs(np.fft.rfft(frames * np.hanning(n_fft), axis=1)) ** 2).sum(axis=0)
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    total = float(power.sum())
    return float(power[freqs > cutoff_hz].sum()) / total if total > 0 else 0.0


def keep_duration(duration_s: float, min_seconds: float) -> bool:
    return duration_s >= min_seconds


def dep5_licences(text: str) -> list[tuple[list[str], str]]:
    """[(file patterns, licence)] from a machine-readable Debian copyright file, in order."""
    stanzas = []
    for block in re.split(r"\n\s*\n", text):
        fields = re.findall(r"^([A-Za-z-]+):((?:.*)(?:\n[ \t].*)*)", block, flags=re.M)
        d = {k: v for k, v in fields}
        if "Files" in d and "License" in d:
            stanzas.append((d["Files"].split(), d["License"].strip().splitlines()[0].strip()))
    return stanzas


def dep5_licence(stanzas: list[tuple[list[str], str]], path: str) -> str | None:
    """The licence of the last stanza whose pattern matches path or a tail of it."""
    found = None
    for patterns, licence in stanzas:
        if any(
            fnmatch.fnmatchcase(path, p) or fnmatch.fnmatchcase(path, "*/" + p) for p in patterns
        ):
            found = licence
    return found


# ---------------------------------------------------------------- fetching and decoding


def apt_download(package: str, version: str, dest: Path) -> tuple[Path, str]:
    """Download package=version (or the current version, logged); return (deb, version)."""
    run = subprocess.run(
        ["apt-get", "download", f"{package}={version}"], cwd=dest, capture_output=True, text=True
    )
    if run.returncode != 0:
        print(
            f"  {package}={version} not available ({run.stderr.strip().splitlines()[-1:]}); "
            "falling back to the current version"
        )
        subprocess.run(["apt-get", "download", package], cwd=dest, check=True, capture_output=True)
    (deb,) = dest.glob(f"{package}_*.deb")
    got = subprocess.run(
        ["dpkg-deb", "-f", str(deb), "Version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    if got != version:
        print(f"  NOTE {package}: pinned {version}, fetched {got}")
    return deb, got


def stage_files(root: Path, patterns: tuple[str, ...], stage: Path) -> dict[str, Path]:
    """{output path: real file} for every pattern; pk3 members are extracted into stage."""
    files: dict[str, Path] = {}
    for pattern in patterns:
        if ARCHIVE_SEP in pattern:
            archive, member_glob = pattern.split(ARCHIVE_SEP)
            with zipfile.ZipFile(root / archive) as zf:
                for rel, member in pk3_members(zf, member_glob).items():
                    target = stage / rel
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with zf.open(member) as src, open(target, "wb") as dst:
                        shutil.copyfileobj(src, dst)
                    files[rel] = target
            continue
        base = root / glob_base(pattern)
        for path in sorted(root.glob(pattern)):
            if path.is_file() and not path.is_symlink():
                files[path.relative_to(base).as_posix()] = path
    return files


def drop_duplicates(files: dict[str, Path]) -> tuple[dict[str, Path], list[str]]:
    """Keep the first of byte-identical files (sorted by path); return (kept, dropped)."""
    seen, kept, dups = set(), {}, []
    for rel in sorted(files):
        digest = hashlib.sha256(files[rel].read_bytes()).hexdigest()
        if digest in seen:
            dups.append(rel)
        else:
            seen.add(digest)
            kept[rel] = files[rel]
    return kept, dups


def decode_soundfile(path: Path) -> tuple[int, int, int, np.ndarray]:
    """(frames, rate, channels, excerpts [T, C]) decoding the whole file with soundfile."""
    info = sf.info(str(path))
    frames = sum(len(b) for b in sf.blocks(str(path), blocksize=1 << 16, dtype="float32"))
    if frames == 0:
        raise RuntimeError("no audio frames")
    return frames, info.samplerate, info.channels, _excerpts_sf(path, frames, info.samplerate)


def _excerpts_sf(path: Path, frames: int, rate: int, n: int = 5, seconds: float = 6.0):
    length = min(frames, int(seconds * rate))
    starts = [int((frames - length) * (i + 0.5) / n) for i in range(n)]
    return np.concatenate(
        [
            sf.read(str(path), frames=length, start=s, dtype="float32", always_2d=True)[0]
            for s in starts
        ]
    )


def decode_pyav(path: Path) -> tuple[int, int, int, np.ndarray]:
    """Same as decode_soundfile, with PyAV (for what libsndfile cannot read)."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        chunks = [f.to_ndarray() for f in container.decode(stream)]
        rate, channels = stream.rate, stream.channels
    # packed formats come as [1, T * C] interleaved, planar ones as [C, T]
    data = np.concatenate(
        [c.reshape(-1, channels).T if c.shape[0] == 1 and channels > 1 else c for c in chunks],
        axis=1,
    ).T.astype("float32")  # [T, C]
    if len(data) == 0:
        raise RuntimeError("no audio frames")
    length, n = min(len(data), int(6.0 * rate)), 5
    starts = [int((len(data) - length) * (i + 0.5) / n) for i in range(n)]
    return len(data), rate, channels, np.concatenate([data[s : s + length] for s in starts])


def analyse(path: Path) -> dict:
    """Decode path fully; its duration, rate, channels, decoder and hf energy share."""
    errors = []
    for name, decode in (("soundfile", decode_soundfile), ("pyav", decode_pyav)):
        try:
            frames, rate, channels, excerpts = decode(path)
        except Exception as e:  # noqa: BLE001 - any decoder error means "try the next one"
            errors.append(f"{name}: {e}")
            continue
        return {
            "duration_s": round(frames / rate, 3),
            "sample_rate": rate,
            "channels": channels,
            "decoder": name,
            "hf_energy_frac": float(f"{hf_energy_fraction(excerpts, rate):.3g}"),
        }
    raise RuntimeError("; ".join(errors))


def dep5_prefix(pattern: str) -> str:
    """How a copyright file names the folder of pattern's files: the source tree has the
    archive's folder and the member folder (ufoai: base/music/X.ogg), else the deb's folder."""
    if ARCHIVE_SEP in pattern:
        archive, member_glob = pattern.split(ARCHIVE_SEP)
        return f"{Path(archive).parent.name}/{glob_base(member_glob)}".rstrip("/")
    return glob_base(pattern)


def licence_of(source: Source, rel: str, stanzas) -> str:
    """rel's licence: the package's, the copyright file's stanza, then source.rules."""
    licence = source.licence
    if stanzas:
        licence = dep5_licence(stanzas, f"{dep5_prefix(source.patterns[0])}/{rel}") or licence
    for pattern, rule in source.rules:
        if fnmatch.fnmatchcase(rel, pattern):
            licence = rule
    return licence


def fetch_package(source: Source, out: Path, min_seconds: float) -> dict:
    """Download, unpack, check and copy one package's music; return its record."""
    pkg_dir = out / source.package
    with tempfile.TemporaryDirectory(prefix="fetch_music_packages.") as tmp_name:
        tmp = Path(tmp_name)
        deb, version = apt_download(source.package, source.version, tmp)
        subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp / "root")], check=True)
        copyright_file = tmp / "root" / "usr/share/doc" / source.package / "copyright"
        stanzas = dep5_licences(copyright_file.read_text()) if source.dep5 else []
        files, dups = drop_duplicates(stage_files(tmp / "root", source.patterns, tmp / "pk3"))
        rows, failures, short = [], [], []
        for rel, src in files.items():
            try:
                info = analyse(src)
            except RuntimeError as e:
                failures.append(f"{source.package}/{rel}: {e}")
                print(f"  FAILED {source.package}/{rel}: {e}", file=sys.stderr)
                continue
            if not keep_duration(info["duration_s"], min_seconds):
                short.append(f"{rel} ({info['duration_s']:.1f} s)")
                continue
            dst = pkg_dir / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(dst) as tmp_dst:
                shutil.copyfile(src, tmp_dst)
            rows.append(
                {
                    "path": f"{source.package}/{rel}",
                    "package": source.package,
                    "version": version,
                    "licence": licence_of(source, rel, stanzas),
                    **info,
                }
            )
        pkg_dir.mkdir(parents=True, exist_ok=True)
        if copyright_file.exists():
            shutil.copyfile(copyright_file, pkg_dir / "COPYRIGHT")
    return {
        "package": source.package,
        "pinned": source.version,
        "version": version,
        "rows": rows,
        "failures": failures,
        "short": short,
        "duplicates": dups,
    }


def load_record(source: Source, out: Path) -> dict | None:
    """The package's record if it is complete (same pin, every file present)."""
    path = out / source.package / RECORD
    if not path.exists():
        return None
    record = json.loads(path.read_text())
    if record.get("pinned") != source.version:
        return None
    if not all((out / r["path"]).is_file() for r in record["rows"]):
        return None
    return record


# ---------------------------------------------------------------- manifest and totals


def assign_splits(rows: list[dict], per_package: int, hf_threshold: float) -> None:
    """Set band_limited and split ('excluded' / 'heldout' / 'train') on every row in place."""
    by_package: dict[str, list[dict]] = {}
    for r in rows:
        stem = Path(r["path"]).stem
        r["band_limited"] = (
            stem in BAND_LIMITED.get(r["package"], ()) or r["hf_energy_frac"] < hf_threshold
        )
        by_package.setdefault(r["package"], []).append(r)
    for group in by_package.values():
        eligible = [r["path"] for r in group if not r["band_limited"]]
        held = heldout_paths(eligible, heldout_count(len(eligible), per_package))
        for r in group:
            r["split"] = (
                "excluded" if r["band_limited"] else "heldout" if r["path"] in held else "train"
            )


def print_totals(records: list[dict], rows: list[dict]) -> None:
    header = (
        f"{'package':22} {'version':12} {'files':>5} {'hours':>6} {'train':>5} "
        f"{'heldout':>7} {'excl':>4} {'train h':>7} {'<30s':>4} {'dups':>4} {'fail':>4}"
    )
    print(header)
    tot = np.zeros(9)
    for rec in records:
        pr = [r for r in rows if r["package"] == rec["package"]]
        n = [sum(r["split"] == s for r in pr) for s in ("train", "heldout", "excluded")]
        hours = sum(r["duration_s"] for r in pr) / 3600
        train_h = sum(r["duration_s"] for r in pr if r["split"] == "train") / 3600
        vals = [
            len(pr),
            hours,
            *n,
            train_h,
            len(rec["short"]),
            len(rec["duplicates"]),
            len(rec["failures"]),
        ]
        tot += vals
        print(
            f"{rec['package']:22} {rec['version']:12} {vals[0]:5d} {hours:6.2f} {n[0]:5d} "
            f"{n[1]:7d} {n[2]:4d} {train_h:7.2f} {vals[6]:4d} {vals[7]:4d} {vals[8]:4d}"
        )
    print(
        f"{'TOTAL':22} {'':12} {int(tot[0]):5d} {tot[1]:6.2f} {int(tot[2]):5d} "
        f"{int(tot[3]):7d} {int(tot[4]):4d} {tot[5]:7.2f} {int(tot[6]):4d} {int(tot[7]):4d} "
        f"{int(tot[8]):4d}"
    )
    held = sorted(r["path"] for r in rows if r["split"] == "heldout")
    print(f"heldout: {', '.join(held)}")
    excluded = sorted(
        f"{r['path']} (hf {r['hf_energy_frac']:.2g})" for r in rows if r["split"] == "excluded"
    )
    print(f"excluded (band-limited): {', '.join(excluded) or 'none'}")
    for rec in records:
        for line in rec["failures"]:
            print(f"failure: {line}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    parser.add_argument("--extras", action="store_true", help="also the extra packages")
    parser.add_argument(
        "--heldout-per-package",
        type=int,
        default=2,
        help="whole tracks held out per package (1 below 10 files)",
    )
    parser.add_argument("--min-seconds", type=float, default=30.0, help="drop shorter files")
    parser.add_argument(
        "--hf-threshold",
        type=float,
        default=2e-6,
        help="band-limited when the energy share above 11 kHz is below this",
    )
    parser.add_argument("--force", action="store_true", help="download even if present")
    args = parser.parse_args(argv)
    if args.heldout_per_package < 1:
        parser.error("--heldout-per-package must be >= 1")
    start = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    records = []
    for source in SOURCES:
        if source.extra and not args.extras:
            continue
        record = None if args.force else load_record(source, args.out)
        if record is None:
            print(f"fetching {source.package}={source.version}")
            record = fetch_package(source, args.out, args.min_seconds)
            with atomic_path(args.out / source.package / RECORD) as tmp:
                tmp.write_text(json.dumps(record, indent=1))
        else:
            print(f"{source.package}: {len(record['rows'])} files present, not fetching")
        records.append(record)
    extras = {s.package for s in SOURCES if s.extra}
    rows = [{**r, "extra": r["package"] in extras} for rec in records for r in rec["rows"]]
    assign_splits(rows, args.heldout_per_package, args.hf_threshold)
    with atomic_path(args.out / "manifest.jsonl") as tmp:
        tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    print_totals(records, rows)
    n_fail = sum(len(rec["failures"]) for rec in records)
    print(
        f"files {len(rows)}  hours {sum(r['duration_s'] for r in rows) / 3600:.2f}  "
        f"failures {n_fail}  elapsed {time.perf_counter() - start:.1f} s  "
        f"manifest {args.out / 'manifest.jsonl'}"
    )
    return 1 if n_fail else 0


if __name__ == "__main__":
    sys.exit(main())
