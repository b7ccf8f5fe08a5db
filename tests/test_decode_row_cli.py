"""``mmtok decode-row SHARD --index N -o DIR``: a row's text and media written as files equal
encode -> decode of the same source files; nothing is overwritten without --overwrite."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from mmtok.audio.io import save_audio
from mmtok.checkpoint import load_pretrained
from mmtok.cli import main
from mmtok.data import PrepJob, run_prep
from mmtok.data.shards import read_rows
from mmtok.image.io import load_image, save_image
from mmtok.media import read_media, write_media
from tests.test_prep_text import CORPUS, build_text_tokenizer

pytest.importorskip("tokenizers")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, tiny_image_ckpt, tiny_audio_ckpt):
    """A document (text, image, text, stereo 44.1 kHz audio) prepped in two formats."""
    root = tmp_path_factory.mktemp("decoderow")
    g = torch.Generator().manual_seed(3)
    save_image(root / "a.png", torch.rand(3, 16, 12, generator=g) * 2 - 1)
    save_audio(root / "b.wav", torch.rand(2, 1500, generator=g) - 0.5, 44100)
    doc = {"key": "doc", "segments": [{"text": CORPUS[0]}, {"image": "a.png"},
                                      {"text": CORPUS[1]}, {"audio": "b.wav"}]}  # fmt: skip
    (root / "m.jsonl").write_text(json.dumps(doc) + "\n")
    text = build_text_tokenizer(root / "text")
    tokenizers = {"image": str(tiny_image_ckpt), "audio": str(tiny_audio_ckpt)}
    for fmt in ("parquet", "megatron"):
        run_prep(PrepJob([str(root / "m.jsonl")], str(root / fmt), tokenizers, fmt=fmt,
                         workers=0, text_tokenizer=str(text)))  # fmt: skip
    return root


@pytest.mark.parametrize("shard", ["parquet/shard-00000.parquet", "megatron/shard-00000.idx"])
def test_files_equal_encode_decode_of_the_sources(dataset, shard, tiny_image_ckpt,
                                                  tiny_audio_ckpt, tmp_path):  # fmt: skip
    out = tmp_path / "row"
    assert main(["decode-row", str(dataset / shard), "--index", "0", "-o", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["doc.1.png", "doc.3.wav", "doc.txt"]
    assert (out / "doc.txt").read_text() == (f"{CORPUS[0]}\n[image: doc.1.png]\n{CORPUS[1]}\n"
                                             "[audio: doc.3.wav]\n")  # fmt: skip
    image = load_pretrained(tiny_image_ckpt)
    x = load_image(dataset / "a.png")[None]
    save_image(tmp_path / "want.png", image.decode(image.encode(x))[0])
    assert torch.equal(load_image(out / "doc.1.png"), load_image(tmp_path / "want.png"))
    audio = load_pretrained(tiny_audio_ckpt)
    y = read_media(dataset / "b.wav", audio)  # mixed to mono at 22.05 kHz, as prep reads it
    write_media(tmp_path / "want.wav", audio.decode(audio.encode(y)), audio, 44100)
    got, rate = sf.read(out / "doc.3.wav")
    want, want_rate = sf.read(tmp_path / "want.wav")
    assert rate == want_rate == 44100  # the file's own rate, from source_sample_rate
    np.testing.assert_array_equal(got, want)


def test_existing_files_are_refused_unless_overwrite(dataset, tmp_path, capsys):
    shard = str(dataset / "parquet" / "shard-00000.parquet")
    out = tmp_path / "row"
    out.mkdir()
    (out / "doc.3.wav").write_bytes(b"keep")
    assert main(["decode-row", shard, "--index", "0", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "doc.3.wav" in err and "--overwrite" in err
    assert (out / "doc.3.wav").read_bytes() == b"keep"
    assert not (out / "doc.txt").exists()  # checked before anything was written
    assert main(["decode-row", shard, "--index", "0", "-o", str(out), "--overwrite"]) == 0
    assert (out / "doc.3.wav").read_bytes() != b"keep"


def test_bad_index_and_missing_shard_name_the_argument(dataset, tmp_path, capsys):
    shard = str(dataset / "parquet" / "shard-00000.parquet")
    assert main(["decode-row", shard, "--index", "1", "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "--index 1" in err and "1 rows" in err and shard in err
    assert main(["decode-row", str(tmp_path / "none.parquet"), "--index", "0", "-o",
                 str(tmp_path / "o")]) == 2  # fmt: skip
    assert "none.parquet" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    assert len(read_rows(shard)) == 1
