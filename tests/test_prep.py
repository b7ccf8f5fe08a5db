"""Dataset prep: vocabulary, shards readable without mmtok, failures, resume after a kill."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from mmtok.data import PrepJob, TokenSequenceDataset, run_prep
from mmtok.data.shards import read_rows
from mmtok.data.vocab import SPECIALS
from mmtok.errors import InputError
from mmtok.image.io import save_image


@pytest.fixture(scope="module")
def ckpt(tiny_image_ckpt):
    return tiny_image_ckpt


def _media(root: Path, n: int = 7, size: int = 16) -> Path:
    g = torch.Generator().manual_seed(0)
    (root / "sub").mkdir(parents=True)
    for i in range(n):
        hw = (size, size) if i % 3 else (size + 4, size - 4)
        save_image(root / ("sub" if i % 2 else ".") / f"img{i}.png",
                   torch.rand(3, *hw, generator=g) * 2 - 1)  # fmt: skip
    (root / "broken.png").write_text("not an image")
    return root


def _prep(media, out, ckpt, **kw):
    job = PrepJob([str(media)], str(out), {"image": str(ckpt)}, **kw)
    return run_prep(job)


def test_rows_vocab_and_tokens_match_tokenizer(tmp_path, ckpt):
    from mmtok.checkpoint import load_pretrained
    from mmtok.image.io import load_image

    media = _media(tmp_path / "media")
    meta = _prep(media, tmp_path / "out", ckpt, shard_size=3, workers=0)
    assert meta["files"] == 7 and meta["failures"] == 1 and meta["shards"] == 3
    vocab = json.loads((tmp_path / "out" / "vocab.json").read_text())
    (rng,) = vocab["ranges"]
    assert rng["offset"] == len(SPECIALS) and rng["size"] == 32 and vocab["dtype"] == "uint8"
    # readable with plain pyarrow: no mmtok import needed for the format
    table = pq.read_table(sorted((tmp_path / "out").glob("shard-*.parquet"))[0])
    assert table.schema.field("tokens").type.value_type.bit_width == 8
    tok = load_pretrained(ckpt)
    for row in table.to_pylist():
        ids = tok.encode(load_image(row["source"]).unsqueeze(0)).flatten()[0].numpy()
        expected = [vocab["specials"]["<image>"], *(ids + rng["offset"]),
                    vocab["specials"]["</image>"]]  # fmt: skip
        assert row["tokens"] == expected and row["num_tokens"] == len(expected)
    failures = (tmp_path / "out" / "failures.jsonl").read_text().splitlines()
    assert len(failures) == 1 and "broken.png" in json.loads(failures[0])["error"]


def _all_rows(out: Path):
    rows = [r for p in sorted(out.glob("shard-*")) for r in read_rows(p)]
    return {r["key"]: np.asarray(r["tokens"]).tolist() for r in rows}, [r["key"] for r in rows]


def test_workers_and_batching_do_not_change_output(tmp_path, ckpt):
    media = _media(tmp_path / "media")
    _prep(media, tmp_path / "a", ckpt, workers=0, batch_size=1)
    _prep(media, tmp_path / "b", ckpt, workers=2, batch_size=4)
    assert _all_rows(tmp_path / "a") == _all_rows(tmp_path / "b")


def test_webdataset_shards_read_with_webdataset(tmp_path, ckpt):
    import webdataset as wds

    media = _media(tmp_path / "media")
    _prep(media, tmp_path / "wds", ckpt, fmt="webdataset", shard_size=4, workers=0)
    _prep(media, tmp_path / "pq", ckpt, shard_size=4, workers=0)
    urls = [str(p) for p in sorted((tmp_path / "wds").glob("shard-*.tar"))]
    got = {
        s["__key__"]: s["tokens.npy"].tolist()
        for s in wds.WebDataset(urls, shardshuffle=False).decode()
    }
    assert got == _all_rows(tmp_path / "pq")[0]


def test_resume_after_kill_matches_uninterrupted(tmp_path, ckpt):
    media = _media(tmp_path / "media", n=40, size=96)
    _prep(media, tmp_path / "ref", ckpt, shard_size=1, workers=0, batch_size=1)
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "mmtok", "prep", str(media), "-o", str(out), "--image-tokenizer",
           str(ckpt), "--shard-size", "1", "--workers", "0", "--batch-size", "1"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while proc.poll() is None and len(list(out.glob("shard-*.parquet"))) < 3:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = len(list(out.glob("shard-*.parquet")))
    assert 0 < partial < 41, "the run must be killed partway"
    assert subprocess.run(cmd, capture_output=True).returncode == 0
    rows, keys = _all_rows(out)
    ref_rows, ref_keys = _all_rows(tmp_path / "ref")
    assert keys == ref_keys and rows == ref_rows  # no duplicates, nothing missing
    assert json.loads((out / "meta.json").read_text())["files"] == 40


def test_changed_job_in_same_folder_is_refused(tmp_path, ckpt):
    media = _media(tmp_path / "media")
    _prep(media, tmp_path / "out", ckpt, shard_size=3, workers=0)
    with pytest.raises(InputError, match="different prep job"):
        _prep(media, tmp_path / "out", ckpt, shard_size=2, workers=0)


def test_bad_manifest_and_keys(tmp_path, ckpt):
    (tmp_path / "m.jsonl").write_text('{"path": "a.png"}\nnot json\n')
    with pytest.raises(InputError, match=r"m.jsonl:2"):
        run_prep(PrepJob([str(tmp_path / "m.jsonl")], str(tmp_path / "o"), {"image": str(ckpt)}))
    (tmp_path / "k.jsonl").write_text('{"path": "a.png", "key": "../evil"}\n')
    with pytest.raises(InputError, match="not safe"):
        run_prep(PrepJob([str(tmp_path / "k.jsonl")], str(tmp_path / "o"), {"image": str(ckpt)}))


def test_token_sequence_dataset(tmp_path, ckpt):
    media = _media(tmp_path / "media")
    _prep(media, tmp_path / "out", ckpt, workers=0)
    ds = TokenSequenceDataset(tmp_path / "out", block_size=10)
    rows, _ = _all_rows(tmp_path / "out")
    eos = SPECIALS.index("<eos>")
    stream = [t for k in sorted(rows) for t in rows[k] + [eos]]
    assert len(ds) == (len(stream) - 1) // 10
    x, y = ds[1]
    assert x.tolist() == stream[10:20] and y.tolist() == stream[11:21]
    loader = torch.utils.data.DataLoader(ds, batch_size=4)
    assert next(iter(loader))[0].shape == (4, 10)


@pytest.mark.parametrize("given", ["folder", "list"])
def test_multilevel_audio_folder_gives_one_range_per_level(tmp_path, given):
    """A MultiLevelAudioTokenizer folder (hop*/ levels) or a comma-separated list of level
    folders (hop 32 named first) as --audio-tokenizer: each row holds every level's ids,
    shifted by that level's offset, in the wrapper's (hop) order."""
    from mmtok.audio.io import load_audio, save_audio
    from mmtok.audio.tokenizer import multilevel_audio_tokenizer

    torch.manual_seed(0)
    levels = multilevel_audio_tokenizer((8, 32), {"width": 4, "latent_dim": 8, "codebook_size": 16})
    for level in levels.levels:
        level.train()(torch.rand(2, 1, 1024) * 2 - 1)  # k-means init
    levels.save_pretrained(tmp_path / "levels")
    media = tmp_path / "media"
    media.mkdir()
    g = torch.Generator().manual_seed(1)
    for i, n in enumerate((700, 1500)):
        save_audio(media / f"clip{i}.wav", torch.rand(1, n, generator=g) - 0.5, 22050)
    name = str(tmp_path / "levels")
    if given == "list":
        name = f"{tmp_path / 'levels' / 'hop32'},{tmp_path / 'levels' / 'hop8'}"
    run_prep(PrepJob([str(media)], str(tmp_path / "out"), {"audio": name}, workers=0))
    vocab = json.loads((tmp_path / "out" / "vocab.json").read_text())
    ranges = vocab["ranges"]
    assert [r["level"] for r in ranges] == [0, 1]
    assert ranges[1]["offset"] == ranges[0]["offset"] + 16
    rows = [r for p in sorted((tmp_path / "out").glob("shard-*")) for r in read_rows(p)]
    assert len(rows) == 2
    for row in rows:
        x = load_audio(row["source"], 22050).samples[None]
        ids = [t.encode(x).flatten()[0].numpy() + r["offset"]
               for t, r in zip(levels.levels, ranges, strict=True)]  # fmt: skip
        expected = [vocab["specials"]["<audio>"], *ids[0], *ids[1], vocab["specials"]["</audio>"]]
        assert np.asarray(row["tokens"]).tolist() == expected
