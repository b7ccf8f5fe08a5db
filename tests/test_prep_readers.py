"""Prep output is readable without mmtok: HF ``datasets`` and pyarrow (Parquet shards) and
``webdataset`` (tar shards), in a subprocess that never imports mmtok, give the same rows as
mmtok's own reader."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from mmtok.data import PrepJob, run_prep
from mmtok.data.shards import read_rows
from mmtok.image.io import save_image

pytest.importorskip("datasets")
pytest.importorskip("webdataset")

READER = """
import glob, json, sys
import pyarrow.parquet as pq
import webdataset as wds
from datasets import load_dataset

parquet, tar = sys.argv[1], sys.argv[2]
files = sorted(glob.glob(parquet + "/shard-*.parquet"))
ds = load_dataset("parquet", data_files=files, split="train")
table = pq.read_table(files)
urls = sorted(glob.glob(tar + "/shard-*.tar"))
web = {s["__key__"]: (s["json"], s["tokens.npy"].tolist())
       for s in wds.WebDataset(urls, shardshuffle=False).decode()}
assert "mmtok" not in sys.modules, "a reader imported mmtok"
print(json.dumps({
    "datasets": {r["key"]: r for r in ds},
    "pyarrow": {r["key"]: r for r in table.to_pylist()},
    "webdataset": {k: {**meta, "tokens": tokens} for k, (meta, tokens) in web.items()},
    "dtype": str(ds.features["tokens"].feature.dtype),
}))
"""


def test_datasets_pyarrow_webdataset_read_prep_output_without_mmtok(tmp_path, tiny_image_ckpt):
    g = torch.Generator().manual_seed(0)
    (tmp_path / "media").mkdir()
    for i in range(5):
        save_image(tmp_path / "media" / f"img{i}.png", torch.rand(3, 16, 12 + 4 * i, generator=g))
    (tmp_path / "media" / "bad.png").write_text("not an image")
    tokenizers = {"image": str(tiny_image_ckpt)}
    for fmt in ("parquet", "webdataset"):
        job = PrepJob([str(tmp_path / "media")], str(tmp_path / fmt), tokenizers, fmt=fmt,
                      shard_size=2, workers=0)  # fmt: skip
        assert run_prep(job)["failures"] == 1
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1",
           "HF_DATASETS_OFFLINE": "1"}  # fmt: skip
    env.pop("PYTHONPATH", None)
    proc = subprocess.run([sys.executable, "-c", READER, str(tmp_path / "parquet"),
                           str(tmp_path / "webdataset")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])

    shards = sorted((tmp_path / "parquet").glob("shard-*"))
    rows = {r["key"]: r for p in shards for r in read_rows(p)}
    assert len(rows) == 5 and got["dtype"] == "uint8"
    for reader in ("datasets", "pyarrow", "webdataset"):
        assert got[reader].keys() == rows.keys(), reader
        for key, row in rows.items():
            other = got[reader][key]
            assert other["tokens"] == np.asarray(row["tokens"]).tolist(), (reader, key)
            for col in ("source", "modality", "tokenizer", "grid", "input_size", "num_tokens"):
                assert other[col] == (list(row[col]) if col in ("grid", "input_size")
                                      else row[col]), (reader, key, col)  # fmt: skip
