"""``decode_row``: prep -> row -> decode equals encode -> decode of the same file; a cut or
malformed sequence is an InputError naming the position."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mmtok.audio.io import load_audio, save_audio
from mmtok.audio.tokenizer import multilevel_audio_tokenizer
from mmtok.checkpoint import load_pretrained
from mmtok.data import MediaSegment, PrepJob, TextSegment, Vocabulary, decode_row, run_prep
from mmtok.data.shards import read_rows
from mmtok.errors import InputError
from mmtok.image.io import load_image, save_image
from tests.test_prep_text import CORPUS, build_text_tokenizer


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, tiny_image_ckpt):
    """A document (text, image, text, two-level audio, image) and an image-only row."""
    pytest.importorskip("tokenizers")
    root = tmp_path_factory.mktemp("decode")
    torch.manual_seed(0)
    levels = multilevel_audio_tokenizer((8, 32), {"width": 4, "latent_dim": 8, "codebook_size": 16})
    for level in levels.levels:
        level.train()(torch.rand(2, 1, 1024) * 2 - 1)
    levels.eval().save_pretrained(root / "levels")
    g = torch.Generator().manual_seed(1)
    save_image(root / "a.png", torch.rand(3, 16, 12, generator=g) * 2 - 1)
    save_image(root / "b.png", torch.rand(3, 9, 14, generator=g) * 2 - 1)
    save_audio(root / "c.wav", torch.rand(1, 700, generator=g) - 0.5, 22050)
    doc = {
        "key": "doc",
        "segments": [
            {"text": CORPUS[0]},
            {"image": "a.png"},
            {"text": CORPUS[1]},
            {"audio": "c.wav"},
            {"image": "b.png"},
        ],
    }
    (root / "m.jsonl").write_text(json.dumps(doc) + "\n" + json.dumps({"path": "b.png"}) + "\n")
    text = build_text_tokenizer(root / "text")
    run_prep(PrepJob([str(root / "m.jsonl")], str(root / "out"),
                     {"image": str(tiny_image_ckpt), "audio": str(root / "levels")}, workers=0,
                     text_tokenizer=str(text)))  # fmt: skip
    rows = {r["key"]: r for p in sorted((root / "out").glob("shard-*")) for r in read_rows(p)}
    return root, rows, Vocabulary.load(root / "out" / "vocab.json"), levels


def test_round_trip_equals_encode_decode_of_the_same_files(dataset, tiny_image_ckpt):
    root, rows, vocab, levels = dataset
    image_tok = load_pretrained(tiny_image_ckpt)
    segs = decode_row(rows["doc"], vocab)
    assert [type(s).__name__ for s in segs] == ["TextSegment", "MediaSegment", "TextSegment",
                                                "MediaSegment", "MediaSegment"]  # fmt: skip
    assert [s.text for s in segs if isinstance(s, TextSegment)] == [
        _tokenizer_text(root, c) for c in CORPUS[:2]
    ]
    a, c, b = (s for s in segs if isinstance(s, MediaSegment))
    for seg, name in ((a, "a.png"), (b, "b.png")):
        x = load_image(root / name)[None]
        ref = image_tok.encode(x)
        (got,) = seg.levels
        assert seg.modality == "image" and torch.equal(got.ids, ref.ids)
        assert got.input_size == ref.input_size and got.codebook_size == ref.codebook_size
        assert torch.equal(image_tok.decode(got), image_tok.decode(ref))
    x = load_audio(root / "c.wav", 22050).samples[None]
    assert c.modality == "audio" and len(c.levels) == 2
    for tok, got in zip(levels.levels, c.levels, strict=True):
        ref = tok.encode(x)
        assert torch.equal(got.ids, ref.ids) and got.input_size == ref.input_size
        assert torch.equal(tok.decode(got), tok.decode(ref))
    (only,) = decode_row(rows["b_png"], root / "out" / "vocab.json")
    assert torch.equal(only.levels[0].ids, b.levels[0].ids)


def _tokenizer_text(root: Path, text: str) -> str:
    """The text the tokenizer gives back for ``text`` (its own decode, independent of mmtok)."""
    import tokenizers

    tok = tokenizers.Tokenizer.from_file(str(root / "text" / "tokenizer.json"))
    return tok.decode(tok.encode(text, add_special_tokens=False).ids)


@pytest.mark.parametrize("edit, needle", [
    ("cut-in-image", "the sequence ends after"),
    ("cut-before-close", "expected </image>"),
    ("audio-code-in-image", "is not a code of image level 0|comes after"),
    ("stray-close", "</audio> outside a media segment"),
    ("out-of-vocab", "outside the vocabulary"),
    ("media-code-outside", "a media code outside"),
    ("no-grid", "grid has no entry left"),
])  # fmt: skip
def test_malformed_or_cut_sequence_names_the_position(dataset, edit, needle):
    _, rows, vocab, _ = dataset
    row = dict(rows["doc"])
    t = np.asarray(row["tokens"]).astype(np.int64)
    sp = vocab.specials
    open_img = int(np.flatnonzero(t == sp["<image>"])[0])
    close_img = int(np.flatnonzero(t == sp["</image>"])[0])
    pos = {"cut-in-image": open_img + 3, "cut-before-close": close_img}.get(edit)
    if pos is not None:
        t = t[:pos]
    elif edit == "audio-code-in-image":
        pos = open_img + 2
        t[pos] = vocab.offsets(levels_fp(vocab, "audio"), 0)[0] + 1
    elif edit == "stray-close":
        pos = 1
        t[pos] = sp["</audio>"]
    elif edit == "out-of-vocab":
        pos = 2
        t[pos] = vocab.size + 5
    elif edit == "media-code-outside":
        pos = 0
        t[pos] = vocab.ranges[0].offset
    else:
        pos = open_img + 1
        row["grid"] = []
    row["tokens"] = t
    with pytest.raises(InputError, match=needle) as e:
        decode_row(row, vocab)
    assert f"position {pos}" in str(e.value)


def levels_fp(vocab: Vocabulary, modality: str) -> str:
    return next(r.fingerprint for r in vocab.ranges if r.modality == modality)
