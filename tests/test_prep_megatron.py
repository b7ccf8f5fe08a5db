"""``--format megatron``: Megatron-LM / NeMo indexed shards (.bin + .idx), read back with
megatron-core's own ``IndexedDataset`` in a process that never imports mmtok."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mmtok.cli import main
from mmtok.data import TokenSequenceDataset
from mmtok.data.shards import WRITERS, read_rows
from mmtok.image.io import save_image

READER = """
import json, sys
from megatron.core.datasets.indexed_dataset import IndexedDataset

out = {}
for prefix in sys.argv[1:]:
    ds = IndexedDataset(prefix)
    out[prefix] = {"dtype": ds.index.dtype.__name__, "docs": ds.document_indices.tolist(),
                   "seqs": [ds[i].tolist() for i in range(len(ds))]}
assert "mmtok" not in sys.modules, "the reader imported mmtok"
print(json.dumps(out))
"""


def _megatron_read(prefixes: list[Path], cwd: Path) -> dict:
    if importlib.util.find_spec("megatron") is None:
        pytest.skip("megatron-core is not installed (it is in the dev extra)")
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    env.pop("PYTHONPATH", None)
    proc = subprocess.run([sys.executable, "-W", "ignore", "-c", READER, *map(str, prefixes)],
                          cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=180)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {Path(k): v for k, v in json.loads(proc.stdout.strip().splitlines()[-1]).items()}


@pytest.fixture
def media(tmp_path) -> Path:
    root = tmp_path / "media"
    root.mkdir()
    g = torch.Generator().manual_seed(0)
    for i in range(5):
        save_image(root / f"img{i}.png", torch.rand(3, 16, 8 + 4 * i, generator=g) * 2 - 1)
    (root / "bad.png").write_text("not an image")
    return root


def _prep(media: Path, out: Path, ckpt: Path, fmt: str) -> None:
    assert main(["prep", str(media), "-o", str(out), "--image-tokenizer", str(ckpt),
                 "--workers", "0", "--shard-size", "2", "--format", fmt]) == 0  # fmt: skip


def test_megatron_shards_read_by_megatron_core(tmp_path, media, tiny_image_ckpt):
    _prep(media, tmp_path / "pq", tiny_image_ckpt, "parquet")
    _prep(media, tmp_path / "mg", tiny_image_ckpt, "megatron")
    pq_shards = sorted((tmp_path / "pq").glob("shard-*.parquet"))
    idx = sorted((tmp_path / "mg").glob("shard-*.idx"))
    assert [p.stem for p in idx] == [p.stem for p in pq_shards] == [
        "shard-00000", "shard-00001", "shard-00002"
    ]  # fmt: skip
    got = _megatron_read([p.with_suffix("") for p in idx], tmp_path)
    for p, ref in zip(idx, pq_shards, strict=True):
        rows = read_rows(ref)
        shard = got[p.with_suffix("")]
        assert shard["dtype"] == "uint16"  # the vocabulary (42 ids) fits: Megatron's choice
        assert shard["docs"] == list(range(len(rows) + 1))  # one document per row
        assert shard["seqs"] == [r["tokens"].tolist() for r in rows]
        mine = read_rows(p)  # mmtok's own reader: tokens + the sidecar's fields
        assert [{**r, "tokens": r["tokens"].tolist()} for r in mine] == [
            {**r, "tokens": r["tokens"].tolist()} for r in rows
        ]
    a = TokenSequenceDataset(tmp_path / "mg", block_size=8)
    b = TokenSequenceDataset(tmp_path / "pq", block_size=8)
    assert torch.equal(a.stream, b.stream)


def test_int32_when_ids_pass_uint16_and_empty_shard(tmp_path):
    rng = np.random.default_rng(0)
    rows = [{"key": f"k{i}", "source": "s", "source_rel": "s", "split": "train",
             "modality": "image", "tokenizer": "t", "grid": [n], "input_size": [n],
             "duration_s": None, "source_sample_rate": [0], "source_channels": [0], "num_tokens": n,
             "tokens": rng.integers(0, 70_000, n).astype(np.uint32)}
            for i, n in enumerate((5, 1, 9))]  # fmt: skip
    WRITERS["megatron"](tmp_path / "big.idx", rows, np.dtype(np.uint32))
    WRITERS["megatron"](tmp_path / "empty.idx", [], np.dtype(np.uint16))
    got = _megatron_read([tmp_path / "big", tmp_path / "empty"], tmp_path)
    big = got[tmp_path / "big"]
    assert big["dtype"] == "int32" and max(map(max, big["seqs"])) >= 65_536
    assert big["seqs"] == [r["tokens"].tolist() for r in rows]
    assert got[tmp_path / "empty"] == {"dtype": "uint16", "docs": [0], "seqs": []}


def test_a_shard_without_its_idx_is_written_again(tmp_path, media, tiny_image_ckpt):
    out = tmp_path / "mg"
    _prep(media, out, tiny_image_ckpt, "megatron")
    before = {p.name: p.read_bytes() for p in sorted(out.glob("shard-*"))}
    (out / "shard-00001.idx").unlink()  # killed after the .bin, before the .idx
    (out / "shard-00001.bin").write_bytes(b"half")
    _prep(media, out, tiny_image_ckpt, "megatron")
    assert {p.name: p.read_bytes() for p in sorted(out.glob("shard-*"))} == before
