"""``mmtok prep`` as a user drives it: refusals create nothing, say what differs, and a job
that produced nothing fails."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mmtok.cli import main
from mmtok.image.io import save_image
from mmtok.image.tokenizer import image_tokenizer


@pytest.fixture
def media(tmp_path) -> Path:
    root = tmp_path / "media"
    root.mkdir()
    g = torch.Generator().manual_seed(0)
    for i in range(3):
        save_image(root / f"img{i}.png", torch.rand(3, 16, 16, generator=g) * 2 - 1)
    return root


def _prep(capsys, ckpt, *args: str | Path) -> tuple[int, str, str]:
    argv = ["prep", *map(str, args), "--image-tokenizer", str(ckpt), "--workers", "0"]
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def _last_line(err: str) -> str:
    return err.strip().splitlines()[-1]


def test_missing_input_creates_nothing(capsys, tiny_image_ckpt, media, tmp_path):
    code, _, err = _prep(capsys, tiny_image_ckpt, media, tmp_path / "nope", "-o", tmp_path / "o")
    assert code == 2 and "nope" in err and "does not exist" in err, err
    assert not (tmp_path / "o").exists()


def test_bad_tokenizer_creates_nothing(capsys, media, tmp_path):
    code, _, err = _prep(capsys, tmp_path / "no-ckpt", media, "-o", tmp_path / "o")
    assert code == 2 and "no-ckpt" in err
    assert not (tmp_path / "o").exists()


def test_all_files_failed_is_a_failure(capsys, tiny_image_ckpt, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in ("a.png", "b.png"):
        (bad / name).write_text("not an image")
    code, _, err = _prep(capsys, tiny_image_ckpt, bad, "-o", tmp_path / "o")
    last = _last_line(err)
    assert code == 2 and "produced nothing" in last and "all 2 files failed" in last, err
    failures = (tmp_path / "o" / "failures.jsonl").read_text().splitlines()
    assert len(failures) == 2 and "failures.jsonl" in last


def test_some_files_failed_is_a_success(capsys, tiny_image_ckpt, media, tmp_path):
    (media / "broken.png").write_text("not an image")
    code, out, err = _prep(capsys, tiny_image_ckpt, media, "-o", tmp_path / "o")
    assert code == 0 and "files 3  failures 1" in out, err


@pytest.mark.parametrize(
    "change, needle",
    [
        (["--shard-size", "2"], "shard size (256 before, 2 now)"),
        (["--format", "webdataset"], "format (parquet before, webdataset now)"),
        ("add-file", "inputs (3 files before, 4 now)"),
        ("rename-file", "inputs (3 files as before, but other paths"),
        ("other-tokenizer", "tokenizers ("),
    ],
)
def test_different_job_names_what_differs(capsys, tiny_image_ckpt, media, tmp_path, change,
                                          needle):  # fmt: skip
    out = tmp_path / "o"
    assert _prep(capsys, tiny_image_ckpt, media, "-o", out)[0] == 0
    ckpt, extra = tiny_image_ckpt, []
    if change == "add-file":
        (media / "img9.png").write_bytes((media / "img0.png").read_bytes())
    elif change == "rename-file":
        (media / "img0.png").rename(media / "img7.png")
    elif change == "other-tokenizer":
        ckpt = tmp_path / "other"
        image_tokenizer(downsample=4, hidden=8, latent_dim=8, codebook_size=32).save_pretrained(
            ckpt
        )
    else:
        extra = change
    code, _, err = _prep(capsys, ckpt, media, "-o", out, *extra)
    last = _last_line(err)
    assert code == 2 and "different prep job" in last and needle in last, err
    differing = [d for d in ("inputs", "tokenizers", "shard size", "format") if f"{d} (" in last]
    assert len(differing) == 1, last  # only what changed is named


def test_same_job_resumes(capsys, tiny_image_ckpt, media, tmp_path):
    out = tmp_path / "o"
    assert _prep(capsys, tiny_image_ckpt, media, "-o", out)[0] == 0
    assert _prep(capsys, tiny_image_ckpt, media, "-o", out)[0] == 0
    assert json.loads((out / "meta.json").read_text())["files"] == 3
