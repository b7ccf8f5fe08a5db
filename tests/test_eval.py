"""`mmtok eval` on generated media with tiny checkpoints: the table, the JSON, the codec rows
at the same bits, and a bad file reported and skipped."""

from __future__ import annotations

import json
import math

import pytest
import torch

from mmtok.cli import main
from mmtok.evaluate import evaluate


def _media(root):
    from mmtok.audio.io import save_audio
    from mmtok.image.io import save_image

    g = torch.Generator().manual_seed(0)
    root.mkdir()
    for i in range(2):
        save_image(root / f"img{i}.png", torch.rand(3, 32, 40, generator=g) * 2 - 1)
    (root / "broken.png").write_bytes(b"not a png")
    t = torch.arange(11025) / 22050
    save_audio(root / "tone.wav", 0.5 * torch.sin(2 * math.pi * 440 * t)[None], 22050)
    return root


def test_eval_cli_table_json_and_bad_file(tmp_path, tiny_image_ckpt, tiny_audio_ckpt, capsys):
    data = _media(tmp_path / "media")
    code = main(["eval", str(tiny_image_ckpt), str(tiny_audio_ckpt), "--data", str(data),
                 "--codec", "--out", str(tmp_path / "out")])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 1 and "skipped" in err and "broken.png" in err  # reported, the rest scored
    assert "JPEG at" in out and "Opus at" in out and "SI-SNR" in out and "PSNR" in out
    doc = json.loads((tmp_path / "out" / "eval.json").read_text())
    rows = {r["coder"]: r for r in doc["rows"]}
    assert [f["path"].endswith("broken.png") for f in doc["failures"]] == [True]
    img, aud = rows[str(tiny_image_ckpt)], rows[str(tiny_audio_ckpt)]
    assert img["items"] == 2 and aud["items"] == 1
    assert img["tokens_per_item"] == 8 * 10 and img["bits_per_item"] == 80 * 5  # 32x40 / 4, K=32
    assert aud["tokens_per_s"] == pytest.approx(22050 / 8, rel=0.01)
    assert aud["kbps"] == pytest.approx(22050 / 8 * 4 / 1000, rel=0.01)
    assert 0 < img["usage"][0] <= 1 and 1 <= img["perplexity"][0] <= 32
    assert set(img["quality"]) == {"PSNR", "SSIM"}
    assert set(aud["quality"]) == {"SI-SNR", "SNR", "mel"}
    assert rows["JPEG"]["matched"] == str(tiny_image_ckpt) and "over" in rows["JPEG"]["note"]
    opus = rows["Opus"]  # 11 kbit/s tokens: above Opus's floor, so at the token bitrate
    assert opus["kbps"] == pytest.approx(aud["kbps"], rel=0.01) and opus["note"] == ""
    assert opus["matched"] == str(tiny_audio_ckpt) and opus["quality"]["SI-SNR"] > 5


def test_eval_usage_counts_against_brute_force(tmp_path, tiny_image_ckpt):
    from mmtok.checkpoint import load_pretrained
    from mmtok.media import read_media

    data = _media(tmp_path / "media")
    (data / "broken.png").unlink()
    (data / "tone.wav").unlink()
    rows, failures = evaluate([str(tiny_image_ckpt)], data)
    tok = load_pretrained(str(tiny_image_ckpt))
    ids = torch.cat([tok.encode(read_media(data / f"img{i}.png", tok)).ids.flatten()
                     for i in range(2)])  # fmt: skip
    assert not failures and rows[0].usage == [len(torch.unique(ids)) / 32]
    p = torch.bincount(ids, minlength=32).double() / ids.numel()
    ppl = math.exp(-sum(float(q * q.log()) for q in p if q > 0))
    assert rows[0].perplexity == [pytest.approx(ppl)]


def test_eval_refusals(tmp_path, tiny_image_ckpt, capsys):
    data = _media(tmp_path / "media")
    assert main(["eval", str(tiny_image_ckpt), "--data", str(data), "--limit", "0"]) == 2
    assert main(["eval", str(tiny_image_ckpt), "--data", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert "--limit" in err and "does not exist" in err and "Traceback" not in err
