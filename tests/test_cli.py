"""The ``mmtok`` command as a user drives it: outputs never replace a user's file."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import torch

from mmtok.cli import main
from mmtok.image.io import load_image, save_image


@pytest.fixture
def photo(tmp_path) -> Path:
    path = tmp_path / "photo.png"
    save_image(path, torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1)
    return path


def _run(capsys, *args: str | Path) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def _encode(capsys, ckpt, *args):
    return _run(capsys, "encode", *args, "--preset", ckpt)


def test_encode_onto_its_input_is_refused(capsys, tiny_image_ckpt, photo):
    before = photo.read_bytes()
    code, _, err = _encode(capsys, tiny_image_ckpt, photo, "-o", photo)
    assert code == 2 and ".tokens.safetensors" in err and len(err.strip().splitlines()) == 1
    assert photo.read_bytes() == before


@pytest.mark.parametrize("link", [os.symlink, os.link], ids=["symlink", "hardlink"])
def test_encode_onto_a_link_to_its_input_is_refused(capsys, tiny_image_ckpt, photo, link):
    before = photo.read_bytes()
    alias = photo.parent / "alias.tokens.safetensors"
    link(photo, alias)
    code, _, err = _encode(capsys, tiny_image_ckpt, photo, "-o", alias, "--overwrite")
    assert code == 2 and "is the input file" in err, err
    assert photo.read_bytes() == before and alias.read_bytes() == before


@pytest.mark.parametrize("name", ["x.png", "x.safetensors", "x.tokens"])
def test_encode_output_suffix_must_be_a_token_file(capsys, tiny_image_ckpt, photo, name):
    code, _, err = _encode(capsys, tiny_image_ckpt, photo, "-o", photo.parent / name)
    assert code == 2 and "'*.tokens.safetensors'" in err and name in err, err
    assert not (photo.parent / name).exists()


def test_encode_keeps_an_existing_output_unless_overwrite(capsys, tiny_image_ckpt, photo):
    dest = photo.parent / "photo.tokens.safetensors"
    dest.write_bytes(b"precious")
    code, _, err = _encode(capsys, tiny_image_ckpt, photo, "-o", dest)
    assert code == 2 and "--overwrite" in err and dest.read_bytes() == b"precious"
    code, out, err = _encode(capsys, tiny_image_ckpt, photo, "-o", dest, "--overwrite")
    assert code == 0 and dest.read_bytes() != b"precious", err
    assert [p.name for p in photo.parent.iterdir() if p.name.startswith(".")] == []


def test_encode_into_a_folder_keeps_existing_files(capsys, tiny_image_ckpt, photo):
    folder = photo.parent / "out"
    folder.mkdir()
    (folder / "photo.tokens.safetensors").write_bytes(b"precious")
    code, _, err = _encode(capsys, tiny_image_ckpt, photo, "-o", folder)
    assert code == 2 and "--overwrite" in err
    assert (folder / "photo.tokens.safetensors").read_bytes() == b"precious"


def test_encode_several_inputs_need_a_folder(capsys, tiny_image_ckpt, photo):
    code, _, err = _encode(capsys, tiny_image_ckpt, photo, photo, "-o",
                           photo.parent / "all.tokens.safetensors")  # fmt: skip
    assert code == 2 and "folder" in err and not (photo.parent / "all.tokens.safetensors").exists()


def test_decode_keeps_existing_outputs_and_its_inputs(capsys, tiny_image_ckpt, photo):
    tokens = photo.parent / "photo.tokens.safetensors"
    assert _encode(capsys, tiny_image_ckpt, photo, "-o", tokens)[0] == 0
    before = photo.read_bytes()
    code, _, err = _run(capsys, "decode", tokens, "-o", photo)
    assert code == 2 and "--overwrite" in err and photo.read_bytes() == before
    code, _, err = _run(capsys, "decode", tokens, "-o", tokens, "--overwrite")
    assert code == 2 and "is the input file" in err
    assert _run(capsys, "decode", tokens, "-o", photo, "--overwrite")[0] == 0
    assert photo.read_bytes() != before and load_image(photo).shape == (3, 16, 16)


def test_same_stem_in_one_run_is_not_overwritten(capsys, tiny_image_ckpt, photo):
    other = photo.parent / "b" / "photo.png"
    other.parent.mkdir()
    other.write_bytes(photo.read_bytes())
    out = photo.parent / "out"
    code, _, err = _encode(capsys, tiny_image_ckpt, photo, other, "-o", out, "--overwrite")
    assert code == 1 and "already written" in err, err
    assert (out / "photo.tokens.safetensors").exists()


def _batch(folder: Path, photo: Path) -> list[Path]:
    """a.png, bad.png (text), c.png in ``folder``."""
    folder.mkdir()
    files = [folder / n for n in ("a.png", "bad.png", "c.png")]
    for f in files:
        f.write_bytes(photo.read_bytes())
    files[1].write_text("not an image")
    return files


def test_encode_batch_reports_a_bad_file_and_goes_on(capsys, tiny_image_ckpt, photo):
    files = _batch(photo.parent / "in", photo)
    out = photo.parent / "out"
    code, stdout, err = _encode(capsys, tiny_image_ckpt, *files, "-o", out)
    assert code == 1
    assert sorted(p.name for p in out.iterdir()) == ["a.tokens.safetensors", "c.tokens.safetensors"]
    errors = [line for line in err.splitlines() if "error" in line]
    assert len(errors) == 1 and "bad.png" in errors[0], err
    assert stdout.strip().splitlines()[-1] == "3 files: 2 encoded, 1 failed"


def test_decode_batch_reports_a_bad_file_and_goes_on(capsys, tiny_image_ckpt, photo):
    files = _batch(photo.parent / "in", photo)
    out = photo.parent / "tok"
    assert _encode(capsys, tiny_image_ckpt, *files, "-o", out)[0] == 1
    tokens = sorted(out.iterdir())
    tokens.insert(1, files[1])  # not a token file
    code, stdout, err = _run(capsys, "decode", *tokens, "-o", photo.parent / "back")
    assert code == 1 and "bad.png" in err
    assert sorted(p.name for p in (photo.parent / "back").iterdir()) == ["a.png", "c.png"]
    assert stdout.strip().splitlines()[-1] == "3 files: 2 decoded, 1 failed"


def test_batch_all_good_exits_zero(capsys, tiny_image_ckpt, photo):
    files = _batch(photo.parent / "in", photo)
    files[1].write_bytes(photo.read_bytes())
    code, stdout, err = _encode(capsys, tiny_image_ckpt, *files, "-o", photo.parent / "out")
    assert code == 0 and stdout.strip().splitlines()[-1] == "3 files: 3 encoded, 0 failed", err


def test_version():
    import subprocess
    import sys

    import mmtok

    r = subprocess.run([sys.executable, "-m", "mmtok", "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == f"mmtok {mmtok.__version__}", r.stderr


def _readme_row(name: str) -> str:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    (row,) = [line for line in readme.splitlines() if line.startswith(f"| `{name}`")]
    return row


def test_info_without_a_name_lists_the_presets(capsys):
    from mmtok.presets import PRESETS, list_presets

    code, out, _ = _run(capsys, "info")
    lines = out.strip().splitlines()[1:]
    assert code == 0 and len(lines) == len(list_presets()) >= 5
    for name, line in zip(sorted(list_presets()), sorted(lines), strict=True):
        preset = PRESETS[name]
        assert line.split()[0] == name and preset.rate in line and preset.quality in line
        assert preset.pick in line
        # the held-out numbers are README's (one text, two places: this keeps them equal)
        for number in re.findall(r"-?\d+\.\d+", preset.quality):
            assert number in _readme_row(name), (name, number)
    assert sum("(default " in line for line in lines) == 3


@pytest.mark.parametrize(
    "command, needles",
    [
        ("encode", ["image-f8", "music44-hop32", "video-small", "--overwrite"]),
        ("decode", ["audio-hop128", "--overwrite"]),
        ("info", ["audio-hop8", "video-small"]),
        ("prep", ["(default: 256)", "(default: parquet)", "(default: 8)", "named: image-f8)",
                  "named: music44-hop8,music44-hop32,music44-hop128)", "audio-hop8"]),
        ("demo", ["(default: mmtok-demo)", "image-f8"]),
    ],
)  # fmt: skip
def test_help_shows_defaults_and_preset_names(capsys, command, needles):
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    help_text = " ".join(capsys.readouterr().out.split()).replace("- ", "-")
    assert e.value.code == 0
    assert [n for n in needles if n not in help_text] == []
    assert "(default: None)" not in help_text and "(default: False)" not in help_text


def test_modality_mismatch_message_reads_well(capsys, tiny_image_ckpt, tmp_path):
    import numpy as np
    import soundfile

    soundfile.write(tmp_path / "tone.wav", np.zeros(800, dtype=np.float32), 8000)
    code, _, err = _encode(capsys, tiny_image_ckpt, tmp_path / "tone.wav", "-o", tmp_path)
    assert code == 2 and "is an audio file, but" in err and "is an image tokenizer" in err, err


def test_a_or_an():
    from mmtok.media import a_or_an

    assert [a_or_an(w) for w in ("image", "audio", "video")] == ["an image", "an audio", "a video"]
