"""Smoke tests: the quantizer, image-quality and visual-quality benchmarks still run (tiny
sizes, seconds), and the visual-quality benchmark's pure helpers (expected uniform usage, usage
crops) against brute force and closed forms; the codec bit matching is in tests/test_codecs.py.

Timings and quality numbers are not checked here, only that every building block runs and
the tables come out with a verdict.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest
import torch

from tests.gen_media import smooth_image

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

quantizer = pytest.importorskip("quantizer")
image_quality = pytest.importorskip("image_quality")
pytest.importorskip("vector_quantize_pytorch")


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny ops on a shared machine: one thread avoids OpenMP stalls (seconds -> ms)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_quantizer_benchmark_rows(capsys):
    mode = dataclasses.replace(quantizer.QUICK, n=256, batch=2, train_warmup=1, idle_wait=0.0)
    rows = quantizer.size_rows(8, 32, mode)
    assert [r[1] for r in rows] == ["mmtok VectorQuantizer", "vector-quantize-pytorch",
                                    "naive seed layer", "fp32 matmul floor"]  # fmt: skip
    assert all(len(r) == len(quantizer.HEADERS) for r in rows)
    assert rows[0][-2].endswith(("PASS", "FAIL")) and rows[0][-1].endswith(("PASS", "FAIL"))
    quantizer.mem_child(64, 8, 256, 0.0, 1)
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["seconds"] > 0 and res["extra_mb"] < quantizer.MEM_BOUND_MB


def _tiny_manifest(root: Path) -> Path:
    from mmtok.image.io import save_image

    rows = []
    for i, split in enumerate(["train", "train", "heldout"]):
        save_image(root / f"img{i}.png", torch.rand(3, 40, 48) * 2 - 1)
        rows.append(json.dumps({"path": f"img{i}.png", "split": split}))
    (root / "manifest.jsonl").write_text("\n".join(rows) + "\n")
    return root / "manifest.jsonl"


def test_image_quality_benchmark_runs(tmp_path, capsys):
    s = dataclasses.replace(image_quality.QUICK, steps=2, batch=2, crop=16, resize=32,
                            eval_size=32, codebook_size=16, hidden=8, latent_dim=8)  # fmt: skip
    data, images = image_quality.load_data(s, _tiny_manifest(tmp_path))
    assert len(images) == 1 and images[0].shape == (3, 32, 32)
    results = {k: image_quality.run(k, data, images, s) for k in image_quality.KINDS}
    for r in results.values():
        assert 1 <= r["used"] <= s.codebook_size and r["psnr"] > 0
    other = dict(results["mmtok"], usage=results["mmtok"]["usage"] + 0.5)  # a second "seed"
    per_seed = {k: [r] for k, r in results.items()} | {"mmtok": [results["mmtok"], other]}
    rows = image_quality.table_rows(per_seed, s)
    image_quality.print_table(image_quality.HEADERS, rows)
    out = capsys.readouterr().out
    assert "mmtok VectorQuantizer" in out and ("PASS" in out or "FAIL" in out)
    mean_usage = results["mmtok"]["usage"] + 0.25  # the mean over the two runs is reported
    assert f"{mean_usage:.1%}" in rows[0] and " / " in rows[0][4]


def test_expected_usage_matches_uniform_draws():
    visual_quality = pytest.importorskip("visual_quality")
    assert visual_quality.expected_usage(0, 16384) == 0.0
    assert visual_quality.expected_usage(16384, 16384) == pytest.approx(1 - 1 / 2.718281828459045)
    g = torch.Generator().manual_seed(0)
    for n, k in [(1000, 4096), (4096, 4096), (54784, 16384)]:
        runs = [len(torch.unique(torch.randint(k, (n,), generator=g))) / k for _ in range(8)]
        assert sum(runs) / len(runs) == pytest.approx(visual_quality.expected_usage(n, k), abs=0.01)


def test_tiles_are_every_non_overlapping_centred_crop():
    visual_quality = pytest.importorskip("visual_quality")
    x = torch.arange(3 * 70 * 100, dtype=torch.float32).reshape(3, 70, 100)
    crops = visual_quality.tiles(x, 32)  # 2 x 3 crops, grid offset (3, 2)
    assert len(crops) == 6 and all(c.shape == (3, 32, 32) for c in crops)
    assert torch.equal(crops[0], x[:, 3:35, 2:34]) and torch.equal(crops[-1], x[:, 35:67, 66:98])


def test_visual_quality_rows_and_figure(tmp_path):
    """score() on a tiny f8 tokenizer: a model row with targets and a row per codec; figure."""
    visual_quality = pytest.importorskip("visual_quality")
    from PIL import Image

    from mmtok.image.tokenizer import image_tokenizer

    torch.manual_seed(0)
    tok = image_tokenizer(downsample=8, hidden=8, latent_dim=8, codebook_size=16)
    tok.train()
    refs = [
        visual_quality.eight_bit(smooth_image(64)),
        visual_quality.eight_bit(-smooth_image(64)),
    ]
    tok(torch.stack(refs))  # one training forward initialises the codebook
    rows, recons = visual_quality.score("tiny", tok, refs, refs, speed=False)
    model, jpeg, webp = rows
    assert (model.tokens, model.bits, model.downsample) == (64, 256, 8)
    assert model.usage_tokens == 128 and 0 < model.usage <= 1 and "PSNR >= 23" in model.targets
    assert "can't fit" in jpeg.quality and "can't fit" in webp.quality  # no file is 32 bytes
    assert jpeg.bits > model.bits and webp.bits > model.bits  # shown at their lowest quality
    assert set(recons) == {"tokenizer", "JPEG", "WEBP"} and len(recons["JPEG"]) == 2
    table = visual_quality.table_rows(rows)
    assert all(len(r) == len(visual_quality.HEADERS) for r in table)
    path = tmp_path / "fig.png"
    visual_quality.write_figure(path, "tiny", refs, recons, ["a.jpg", "b.jpg"], [0, 1])
    with Image.open(path) as im:
        assert im.size == (4 * 64, 2 * (64 + 18))
    assert visual_quality.model_label("runs/image_f8/final") == ("image_f8", "runs/image_f8/final")
    assert visual_quality.model_label("f8=runs/a/final") == ("f8", "runs/a/final")
    assert visual_quality.model_label("image-f8") == ("image-f8", "image-f8")
