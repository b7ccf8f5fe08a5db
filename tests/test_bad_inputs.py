"""Bad-input battery: exact error type, the message names the file/argument, no partial output,
and the CLI prints one line and exits non-zero."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from mmtok.audio.io import load_audio, save_audio
from mmtok.checkpoint import load_pretrained
from mmtok.data import PrepJob, run_prep
from mmtok.errors import CheckpointError, ConfigError, InputError
from mmtok.image.io import load_image, save_image
from mmtok.image.tokenizer import image_tokenizer
from mmtok.video.io import load_video, save_video

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    torch.manual_seed(0)
    tok = image_tokenizer(downsample=4, hidden=8, latent_dim=8, codebook_size=16)
    tok.train()
    tok(torch.rand(2, 3, 16, 16) * 2 - 1)
    tok.save_pretrained(d / "ck")
    save_image(d / "ok.png", torch.rand(3, 16, 16) * 2 - 1)
    (d / "trunc.png").write_bytes((d / "ok.png").read_bytes()[:60])
    (d / "zero.png").write_bytes(b"")
    save_audio(d / "ok.wav", np.sin(np.linspace(0, 100, 8000))[None] * 0.5, 8000)
    (d / "trunc.wav").write_bytes((d / "ok.wav").read_bytes()[:1000])
    (d / "zero.wav").write_bytes(b"")
    (d / "text.wav").write_text("RIFF? no, just text")
    sf.write(d / "nan.wav", np.array([0.0, np.nan, 0.1], dtype=np.float32), 8000, "FLOAT")
    save_video(d / "ok.mp4", torch.rand(3, 8, 32, 32) * 2 - 1, 8)
    (d / "trunc.mp4").write_bytes((d / "ok.mp4").read_bytes()[:300])
    (d / "zero.mp4").write_bytes(b"")
    (d / "text.mp4").write_text("this is not a video")
    return d


def _no_leftovers(folder: Path, before: set[str]) -> None:
    assert set(os.listdir(folder)) == before, "partial output left behind"


def _raises(exc, needle, fn, *args, **kw):
    with pytest.raises(exc) as e:
        fn(*args, **kw)
    assert needle in str(e.value), f"{needle!r} not in {e.value}"


FILE_CASES = [  # (loader, file, expected type)
    ("image", "trunc.png"), ("image", "zero.png"), ("image", "text.mp4"),
    ("audio", "trunc.wav"), ("audio", "zero.wav"), ("audio", "text.wav"), ("audio", "nan.wav"),
    ("video", "trunc.mp4"), ("video", "zero.mp4"), ("video", "text.mp4"),
]  # fmt: skip
LOADERS = {
    "image": lambda p: load_image(p),
    "audio": lambda p: load_audio(p, 8000),
    "video": lambda p: load_video(p),
}


@pytest.mark.parametrize("modality, name", FILE_CASES)
def test_bad_media_files(files, modality, name):
    _raises(InputError, name, LOADERS[modality], files / name)


@pytest.mark.parametrize("rate", [0, -5, 10_000_000])
def test_absurd_sample_rate(files, rate):
    _raises(InputError, "ok.wav", load_audio, files / "ok.wav", rate)


@pytest.fixture(scope="module")
def tok(files):
    return load_pretrained(files / "ck")


@pytest.mark.parametrize(
    "x, needle",
    [
        (torch.full((1, 3, 8, 8), float("nan")), "NaN"),
        (torch.full((1, 3, 8, 8), float("inf")), "NaN/inf"),
        (torch.rand(3, 8, 8), "expected [B, 3"),
        (torch.rand(1, 1, 8, 8), "expected [B, 3"),
        (torch.zeros(1, 3, 8, 8, dtype=torch.uint8), "float"),
    ],
)
def test_bad_tensors(tok, x, needle):
    _raises(InputError, needle, tok.encode, x)


@pytest.mark.parametrize("value", [-1, 16])
def test_ids_out_of_range(tok, value):
    _raises(InputError, "[0, 16)", tok.decode, torch.full((1, 1, 2, 2), value))


def test_ids_from_another_tokenizer(tok, files, tmp_path):
    tokens = tok.encode(torch.rand(1, 3, 8, 8) * 2 - 1)
    other = image_tokenizer(downsample=4, hidden=8, latent_dim=8, codebook_size=16).eval()
    _raises(InputError, "made by tokenizer", other.decode, tokens)


def _copy_ckpt(files, tmp_path):
    import shutil

    shutil.copytree(files / "ck", tmp_path / "ck")
    return tmp_path / "ck"


def test_checkpoint_flipped_byte(files, tmp_path):
    ck = _copy_ckpt(files, tmp_path)
    data = bytearray((ck / "model.safetensors").read_bytes())
    data[len(data) // 2] ^= 1
    (ck / "model.safetensors").write_bytes(bytes(data))
    _raises(CheckpointError, "model.safetensors", load_pretrained, ck)


def test_checkpoint_unknown_config_key(files, tmp_path):
    ck = _copy_ckpt(files, tmp_path)
    cfg = json.loads((ck / "config.json").read_text())
    cfg["model"]["args"]["encoder"]["args"]["hiden"] = 3
    (ck / "config.json").write_text(json.dumps(cfg))
    _raises(CheckpointError, "hiden", load_pretrained, ck)


def test_pickle_passed_as_weights(files, tmp_path):
    ck = _copy_ckpt(files, tmp_path)
    (ck / "model.safetensors").write_bytes(pickle.dumps({"a": 1}))
    _raises(CheckpointError, "model.safetensors", load_pretrained, ck)


def test_recipe_with_misspelt_key(tmp_path):
    from mmtok.train.config import load_config

    (tmp_path / "r.yaml").write_text(
        f"base: {ROOT / 'recipes' / 'base.yaml'}\ntrian:\n  steps: 3\n"
    )
    _raises(ConfigError, "trian", load_config, tmp_path / "r.yaml", [])


def test_manifest_line_not_json(files, tmp_path):
    (tmp_path / "m.jsonl").write_text('{"path": "ok.png"}\n{oops\n')
    job = PrepJob([str(tmp_path / "m.jsonl")], str(tmp_path / "out"), {"image": str(files / "ck")})
    _raises(InputError, "m.jsonl:2", run_prep, job)


def test_shard_key_with_dotdot(files, tmp_path):
    (tmp_path / "m.jsonl").write_text(json.dumps({"path": "ok.png", "key": "../x"}) + "\n")
    job = PrepJob([str(tmp_path / "m.jsonl")], str(tmp_path / "out"), {"image": str(files / "ck")})
    _raises(InputError, "../x", run_prep, job)


def test_output_path_under_a_file(tmp_path):
    (tmp_path / "file.txt").write_text("x")
    target = tmp_path / "file.txt" / "x.png"
    _raises(InputError, str(target), save_image, target, torch.zeros(3, 4, 4))
    r = _cli("demo", "-o", str(tmp_path / "file.txt" / "out"))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_output_path_not_writable(files, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("running as a user that ignores permissions")
        _raises(InputError, str(ro), save_image, ro / "x.png", torch.zeros(3, 4, 4))
    finally:
        ro.chmod(0o700)


@pytest.mark.parametrize(
    "saver, name",
    [
        (lambda p: save_image(p, torch.zeros(2, 2)), "x.png"),
        (lambda p: save_audio(p, np.zeros((1, 10)), 0), "x.wav"),
        (lambda p: save_video(p, torch.zeros(3, 2, 8), 8), "x.mp4"),
    ],
)
def test_failed_writes_leave_nothing(tmp_path, saver, name):
    before = set(os.listdir(tmp_path))
    with pytest.raises(InputError):
        saver(tmp_path / name)
    _no_leftovers(tmp_path, before)


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "mmtok", *args], capture_output=True, text=True)


@pytest.mark.parametrize("name", ["trunc.png", "zero.png", "text.mp4", "trunc.mp4"])
def test_cli_one_line_error(files, tmp_path, name):
    before = set(os.listdir(tmp_path))
    r = _cli("encode", str(files / name), "-o", str(tmp_path / "t.tokens.safetensors"),
             "--preset", str(files / "ck"))  # fmt: skip
    assert r.returncode != 0 and "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and name in lines[0], r.stderr
    _no_leftovers(tmp_path, before)


def test_cli_recipe_error_one_line(tmp_path):
    (tmp_path / "r.yaml").write_text(f"base: {ROOT / 'recipes' / 'base.yaml'}\ntrian: 1\n")
    r = _cli("train", str(tmp_path / "r.yaml"))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "trian" in r.stderr
