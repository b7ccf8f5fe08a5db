"""Smoke tests: the quantizer and image-quality benchmarks still run (tiny sizes, seconds).

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
