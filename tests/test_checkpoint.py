"""Checkpoints: strict, hash-checked, typed errors naming the path; the CLI's one-line errors."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys

import pytest
import torch

from mmtok.checkpoint import load_pretrained
from mmtok.errors import CheckpointError, InputError
from mmtok.image.io import save_image
from mmtok.image.tokenizer import ImageTokenizer, image_tokenizer


@pytest.fixture()
def ckpt(tmp_path):
    torch.manual_seed(0)
    tok = image_tokenizer(downsample=4, hidden=8, latent_dim=8, codebook_size=16)
    tok.train()
    tok(torch.rand(2, 3, 16, 16) * 2 - 1)
    tok.save_pretrained(tmp_path / "ck")
    return tmp_path / "ck"


def test_round_trip_config_and_state(ckpt):
    cfg = json.loads((ckpt / "config.json").read_text())
    assert cfg["format_version"] == 1 and cfg["model"]["class"] == "ImageTokenizer"
    tok = ImageTokenizer.from_pretrained(ckpt)
    assert not tok.training and bool(tok.quantizer.codebook.initialized)


def _flip_byte(path, offset=-10):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "damage, match",
    [
        (lambda p: _flip_byte(p / "model.safetensors"), "sha256"),
        (
            lambda p: (p / "model.safetensors").write_bytes(
                (p / "model.safetensors").read_bytes()[:100]
            ),
            "sha256",
        ),  # fmt: skip
        (lambda p: (p / "model.safetensors").unlink(), "no model.safetensors"),
        (lambda p: (p / "config.json").write_text("{not json"), "not valid JSON"),
        (lambda p: (p / "config.json").unlink(), "no config.json"),
    ],
)
def test_damaged_checkpoint_raises_checkpoint_error(ckpt, damage, match):
    damage(ckpt)
    with pytest.raises(CheckpointError, match=match) as e:
        load_pretrained(ckpt)
    assert str(ckpt) in str(e.value)


def _edit_config(ckpt, fn):
    cfg = json.loads((ckpt / "config.json").read_text())
    fn(cfg)
    (ckpt / "config.json").write_text(json.dumps(cfg))


def test_unknown_config_key(ckpt):
    _edit_config(ckpt, lambda c: c["model"]["args"]["quantizer"]["args"].update(bogus=1))
    with pytest.raises(CheckpointError, match="bogus"):
        load_pretrained(ckpt)


def test_config_weights_mismatch_is_strict(ckpt):
    _edit_config(ckpt, lambda c: c["model"]["args"]["quantizer"]["args"].update(codebook_size=8))
    with pytest.raises(CheckpointError, match="does not match"):
        load_pretrained(ckpt)


def test_pickle_as_weights_is_refused(ckpt):
    (ckpt / "model.safetensors").write_bytes(pickle.dumps({"w": torch.zeros(2)}))
    _edit_config(ckpt, lambda c: c.pop("weights_sha256"))
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        load_pretrained(ckpt)


def test_missing_path_or_preset():
    with pytest.raises(CheckpointError, match="neither a checkpoint folder nor a preset"):
        load_pretrained("/nonexistent/ckpt")


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "mmtok", *args], capture_output=True, text=True)


def test_cli_encode_decode_info(ckpt, tmp_path):
    save_image(tmp_path / "a.png", torch.rand(3, 19, 22) * 2 - 1)
    r = _cli("encode", str(tmp_path / "a.png"), "-o", str(tmp_path / "a.tokens.safetensors"),
             "--preset", str(ckpt))  # fmt: skip
    assert r.returncode == 0, r.stderr
    r = _cli("decode", str(tmp_path / "a.tokens.safetensors"), "-o", str(tmp_path / "b.png"))
    assert r.returncode == 0, r.stderr
    from mmtok.image.io import load_image

    assert load_image(tmp_path / "b.png").shape == (3, 19, 22)
    r = _cli("info", str(ckpt))
    assert r.returncode == 0 and "K=16" in r.stdout


@pytest.mark.parametrize(
    "args, needle",
    [
        (["encode", "/nonexistent.png", "-o", "/tmp/x", "--preset", "CKPT"], "/nonexistent.png"),
        (["encode", "FILE_TXT", "-o", "/tmp/x", "--preset", "CKPT"], "notes.txt"),
        (["decode", "FILE_TXT", "-o", "/tmp/x.png"], "notes.txt"),
        (["info", "/no/such/dir"], "/no/such/dir"),
    ],
)
def test_cli_errors_are_one_line(ckpt, tmp_path, args, needle):
    (tmp_path / "notes.txt").write_text("hello")
    args = [a.replace("CKPT", str(ckpt)).replace("FILE_TXT", str(tmp_path / "notes.txt"))
            for a in args]  # fmt: skip
    r = _cli(*args)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in r.stderr


def test_decode_refuses_ids_out_of_range(ckpt):
    tok = ImageTokenizer.from_pretrained(ckpt)
    with pytest.raises(InputError, match=r"\[0, 16\)"):
        tok.decode(torch.full((1, 1, 2, 2), 16))
    with pytest.raises(InputError, match="NaN"):
        tok.encode(torch.full((1, 3, 8, 8), float("nan")))
    with pytest.raises(InputError, match="expected"):
        tok.encode(torch.rand(1, 4, 8, 8))
