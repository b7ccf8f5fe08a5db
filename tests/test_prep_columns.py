"""Every shard format carries what decoding and selecting need: the manifest's ``split``, the
source path relative to its input root, and each media segment's own sample rate and channel
count; Parquet columns are read back with pyarrow alone (and filtered by split)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from mmtok.audio.io import save_audio
from mmtok.data import PrepJob, run_prep
from mmtok.data.shards import read_rows
from mmtok.image.io import save_image

EXPECTED = {  # key -> (split, source_rel, source_sample_rate, source_channels)
    "media__sub__img0_png": ("train", "sub/img0.png", [0], [0]),
    "media__song_wav": ("train", "song.wav", [44100], [2]),
    "val_img": ("val", "sub/img0.png", [0], [0]),
    "val_song": ("val", "song.wav", [44100], [2]),
}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("columns")
    media = root / "media"
    (media / "sub").mkdir(parents=True)
    g = torch.Generator().manual_seed(0)
    save_image(media / "sub" / "img0.png", torch.rand(3, 16, 12, generator=g) * 2 - 1)
    save_audio(media / "song.wav", torch.rand(2, 1500, generator=g) - 0.5, 44100)  # stereo
    lines = [{"path": "sub/img0.png", "split": "val", "key": "val_img"},
             {"path": "song.wav", "split": "val", "key": "val_song"}]  # fmt: skip
    (media / "val.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return root, [str(media), str(media / "val.jsonl")]


@pytest.mark.parametrize("fmt", ["parquet", "webdataset", "megatron"])
def test_split_source_rel_rate_and_channels_in_every_format(inputs, fmt, tiny_image_ckpt,
                                                           tiny_audio_ckpt):  # fmt: skip
    root, paths = inputs
    tokenizers = {"image": str(tiny_image_ckpt), "audio": str(tiny_audio_ckpt)}
    run_prep(PrepJob(paths, str(root / fmt), tokenizers, fmt=fmt, workers=0))
    rows = {r["key"]: r for p in sorted((root / fmt).glob("shard-*.*")) if p.suffix != ".bin"
            and not p.name.endswith(".rows.jsonl") for r in read_rows(p)}  # fmt: skip
    got = {k: (r["split"], r["source_rel"], r["source_sample_rate"], r["source_channels"])
           for k, r in rows.items()}  # fmt: skip
    assert got == EXPECTED


READER = """
import glob, json, sys
import pyarrow.parquet as pq
files = sorted(glob.glob(sys.argv[1] + "/shard-*.parquet"))
val = pq.read_table(files, filters=[("split", "==", "val")],
                    columns=["key", "split", "source_rel", "source_sample_rate",
                             "source_channels"])
assert "mmtok" not in sys.modules
print(json.dumps(val.to_pylist()))
"""


def test_parquet_columns_and_split_filter_with_pyarrow_alone(inputs, tiny_image_ckpt,
                                                             tiny_audio_ckpt):  # fmt: skip
    root, paths = inputs
    out = root / "pa"
    tokenizers = {"image": str(tiny_image_ckpt), "audio": str(tiny_audio_ckpt)}
    run_prep(PrepJob(paths, str(out), tokenizers, workers=0))
    schema = pq.read_schema(out / "shard-00000.parquet")
    assert schema.field("source_sample_rate").type.value_type == pa.int32()
    assert schema.field("source_channels").type.value_type == pa.int32()
    assert schema.field("split").type == schema.field("source_rel").type == pa.string()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-c", READER, str(out)], capture_output=True,
                          text=True, env=env, cwd=root, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    got = {r["key"]: (r["split"], r["source_rel"], r["source_sample_rate"],
                      r["source_channels"]) for r in json.loads(proc.stdout)}  # fmt: skip
    assert got == {k: v for k, v in EXPECTED.items() if v[0] == "val"}
