"""Fast unit tests of the pure helpers in data_scripts/fetch_music_packages.py and
data_scripts/fetch_photos.py (no network, no apt, no pip)."""

from __future__ import annotations

import importlib.util
import io
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "data_scripts"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look the module up while the class is built
    spec.loader.exec_module(module)
    return module


music = _load("fetch_music_packages")
photos = _load("fetch_photos")


def _zip(members: dict[str, bytes]) -> zipfile.ZipFile:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        zf.writestr("music/", b"")  # a directory entry, as in the real pk3 files
    return zipfile.ZipFile(io.BytesIO(buf.getvalue()))


def test_pk3_members_picks_matching_files_relative_to_the_glob_base():
    zf = _zip(
        {
            "music/a.ogg": b"A",
            "music/b.ogg": b"B",
            "music/readme.txt": b"",
            "sound/cdtracks/c.ogg": b"C",
        }
    )
    assert music.pk3_members(zf, "music/*.ogg") == {"a.ogg": "music/a.ogg", "b.ogg": "music/b.ogg"}
    assert music.pk3_members(zf, "sound/cdtracks/*.ogg") == {"c.ogg": "sound/cdtracks/c.ogg"}


def test_stage_files_reads_pk3_members_and_skips_symlinks(tmp_path):
    root = tmp_path / "root"
    (root / "game/audio").mkdir(parents=True)
    (root / "game/de").mkdir()
    (root / "game/audio/t1.ogg").write_bytes(b"one")
    (root / "game/de/t1.ogg").symlink_to("../audio/t1.ogg")
    (root / "game/copy").mkdir()
    (root / "game/copy/t1.ogg").write_bytes(b"one")  # byte-identical: a duplicate
    with zipfile.ZipFile(root / "game/music.pk3", "w") as zf:
        zf.writestr("music/x.ogg", b"pk3 member")
    files = music.stage_files(
        root, ("game/**/*.ogg", "game/music.pk3!music/*.ogg"), tmp_path / "stage"
    )
    assert sorted(files) == ["audio/t1.ogg", "copy/t1.ogg", "x.ogg"]
    assert files["x.ogg"].read_bytes() == b"pk3 member"
    kept, dups = music.drop_duplicates(files)
    assert sorted(kept) == ["audio/t1.ogg", "x.ogg"] and dups == ["copy/t1.ogg"]


def test_heldout_is_deterministic_whole_tunes_and_order_free():
    paths = [f"pkg/track{i}.ogg" for i in range(1, 20)] + ["pkg/track3_enhanced.ogg"]
    held = music.heldout_paths(paths, 2)
    assert held == music.heldout_paths(list(reversed(paths)), 2)
    assert len({music.tune_key(p) for p in held}) == 2
    if "pkg/track3.ogg" in held or "pkg/track3_enhanced.ogg" in held:  # versions stay together
        assert {"pkg/track3.ogg", "pkg/track3_enhanced.ogg"} <= held
    assert music.heldout_count(0, 2) == 0
    assert music.heldout_count(5, 2) == 1
    assert music.heldout_count(40, 2) == 2


def test_assign_splits_excludes_band_limited_and_holds_out_at_least_one():
    rows = [{"path": f"p/t{i}.ogg", "package": "p", "hf_energy_frac": 1e-3} for i in range(4)]
    rows.append({"path": "p/dull.ogg", "package": "p", "hf_energy_frac": 1e-9})
    rows.append(
        {"path": "ufoai-music/PsymongN3.ogg", "package": "ufoai-music", "hf_energy_frac": 1e-3}
    )
    rows.append({"path": "ufoai-music/ufo1.ogg", "package": "ufoai-music", "hf_energy_frac": 1e-3})
    music.assign_splits(rows, per_package=2, hf_threshold=1e-5)
    split = {r["path"]: r["split"] for r in rows}
    assert split["p/dull.ogg"] == "excluded"
    assert split["ufoai-music/PsymongN3.ogg"] == "excluded"  # named in TRAINING_MEDIA.md
    assert split["ufoai-music/ufo1.ogg"] == "heldout"
    assert sum(split[f"p/t{i}.ogg"] == "heldout" for i in range(4)) == 1


def _lowpassed_noise(rate: int, cutoff_hz: float, seconds: float = 3.0) -> np.ndarray:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((int(rate * seconds), 2)).astype("float32")
    spec = np.fft.rfft(x, axis=0)
    spec[np.fft.rfftfreq(len(x), 1 / rate) > cutoff_hz] = 0
    return np.fft.irfft(spec, n=len(x), axis=0)


@pytest.mark.parametrize("rate", [44100, 48000])
def test_band_limit_detector_separates_lowpassed_from_full_band_noise(rate):
    full = music.hf_energy_fraction(_lowpassed_noise(rate, rate / 2), rate)
    lossy = music.hf_energy_fraction(_lowpassed_noise(rate, 16000), rate)
    dull = music.hf_energy_fraction(_lowpassed_noise(rate, 8000), rate)
    assert full > 0.4  # white noise: (Nyquist - 11 kHz) / Nyquist of the energy
    assert 0.05 < lossy < full  # a 16 kHz low-pass (all of this music) is not band-limited
    assert dull < 2e-6  # an 8 kHz top is
    assert music.hf_energy_fraction(np.zeros(100), rate) == 0.0


def test_duration_filter():
    assert not music.keep_duration(29.9, 30.0)
    assert music.keep_duration(30.0, 30.0)


def test_dep5_licences_last_matching_stanza_wins():
    text = (
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n"
        "Files: *\nCopyright: team\nLicense: GPL-2+\n\n"
        "Files:\n base/music/a.ogg\n base/music/b*.ogg\nCopyright:\n someone\n"
        "License: CC-BY-3.0\n\n"
        "License: CC-BY-3.0\n full text\n"
    )
    stanzas = music.dep5_licences(text)
    assert music.dep5_licence(stanzas, "base/music/a.ogg") == "CC-BY-3.0"
    assert music.dep5_licence(stanzas, "base/music/b2.ogg") == "CC-BY-3.0"
    assert music.dep5_licence(stanzas, "base/music/c.ogg") == "GPL-2+"


def test_photo_heldout_whole_files_only_for_packages_with_four_or_more():
    names = [f"img{i}.jpg" for i in range(6)]
    held = photos.heldout_names(names)
    assert len(held) == 2 and held <= set(names)
    assert held == photos.heldout_names(list(reversed(names)))
    assert photos.heldout_names(names[:3]) == set()


def test_photo_wheel_member_selection():
    zf = _zip(
        {
            "psychopy/demos/a/images/lake.jpg": b"",
            "psychopy/demos/a/images/x.png": b"",
            "other/lake.jpg": b"",
        }
    )
    assert photos.wheel_members(zf, ("*/images/lake.jpg",)) == ["psychopy/demos/a/images/lake.jpg"]


def test_photo_licence_by_name_ignores_wildcard_stanzas():
    stanzas = [(["16.04/a_by_X.jpg"], "CC-BY-4.0"), (["debian/*", "README.md"], "Expat")]
    assert photos.licence_by_name(stanzas, "a_by_X.jpg", "GPL") == "CC-BY-4.0"
    assert photos.licence_by_name(stanzas, "b.jpg", "GPL") == "GPL"
