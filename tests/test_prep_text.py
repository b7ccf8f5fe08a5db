"""Text + media samples: captions next to media and interleaved documents, tokenized with a
Hugging Face tokenizer.json (built here with the ``tokenizers`` library); text ids first and
unchanged in the vocabulary, then the specials and the media ranges."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mmtok.audio.io import load_audio, save_audio
from mmtok.checkpoint import load_pretrained
from mmtok.cli import main
from mmtok.data import PrepJob, Vocabulary, run_prep
from mmtok.data.shards import read_rows
from mmtok.data.vocab import SPECIALS
from mmtok.errors import InputError
from mmtok.image.io import load_image, save_image

tokenizers = pytest.importorskip("tokenizers")
CORPUS = ["a red square on a blue field", "a slow piano piece", "noise and a drum loop",
          "the second image shows a cat"]  # fmt: skip


def build_text_tokenizer(folder: Path, vocab_size: int = 80) -> Path:
    """A tiny BPE tokenizer saved as ``folder/tokenizer.json``."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(CORPUS * 4, trainers.BpeTrainer(vocab_size=vocab_size,
                                                            special_tokens=["[UNK]"]))  # fmt: skip
    folder.mkdir(parents=True)
    tok.save(str(folder / "tokenizer.json"))
    return folder


@pytest.fixture(scope="module")
def text_dir(tmp_path_factory) -> Path:
    return build_text_tokenizer(tmp_path_factory.mktemp("text") / "tok")


def _ids(text_dir: Path, text: str) -> list[int]:
    """Independent of mmtok: the tokenizers library's own ids."""
    tok = tokenizers.Tokenizer.from_file(str(text_dir / "tokenizer.json"))
    return tok.encode(text, add_special_tokens=False).ids


@pytest.fixture
def media(tmp_path) -> Path:
    root = tmp_path / "media"
    root.mkdir()
    g = torch.Generator().manual_seed(0)
    for i in range(2):
        save_image(root / f"img{i}.png", torch.rand(3, 16, 12 + 4 * i, generator=g) * 2 - 1)
    save_audio(root / "clip.wav", torch.rand(1, 600, generator=g) - 0.5, 22050)
    return root


def _manifest(path: Path, lines: list[dict]) -> str:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return str(path)


def _rows(out: Path) -> dict[str, dict]:
    return {r["key"]: r for p in sorted(out.glob("shard-*")) for r in read_rows(p)}


def _media_ids(ckpt: Path, x: torch.Tensor, modality: str, vocab: dict) -> list[int]:
    """``<m>`` codes+offset ``</m>`` computed from the tokenizer directly."""
    (rng,) = [r for r in vocab["ranges"] if r["modality"] == modality]
    ids = load_pretrained(ckpt).encode(x[None]).flatten()[0].numpy() + rng["offset"]
    sp = vocab["specials"]
    return [sp[f"<{modality}>"], *ids.tolist(), sp[f"</{modality}>"]]


def test_caption_rows_text_ids_first_and_unchanged(tmp_path, media, text_dir, tiny_image_ckpt):
    lines = [{"path": "img0.png", "text": CORPUS[0], "key": "a"},
             {"path": "img1.png", "text": CORPUS[3], "key": "b"}]  # fmt: skip
    job = PrepJob([_manifest(media / "m.jsonl", lines)], str(tmp_path / "out"),
                  {"image": str(tiny_image_ckpt)}, workers=0,
                  text_tokenizer=str(text_dir))  # fmt: skip
    run_prep(job)
    vocab = json.loads((tmp_path / "out" / "vocab.json").read_text())
    text_size = tokenizers.Tokenizer.from_file(str(text_dir / "tokenizer.json")).get_vocab_size()
    assert vocab["text"]["size"] == text_size and vocab["text"]["tokenizer"] == str(text_dir)
    assert vocab["specials"]["<pad>"] == text_size
    assert vocab["ranges"][0]["offset"] == text_size + len(SPECIALS)
    rows = _rows(tmp_path / "out")
    for line in lines:
        row = rows[line["key"]]
        image = _media_ids(tiny_image_ckpt, load_image(media / line["path"]), "image", vocab)
        assert row["tokens"].tolist() == _ids(text_dir, line["text"]) + image
        assert row["modality"] == "image" and row["source"] == str(media / line["path"])


def test_text_fields_order_and_missing_fields(tmp_path, media, text_dir, tiny_image_ckpt):
    lines = [{"path": "img0.png", "title": "a cat", "text": "a red square", "key": "a"},
             {"path": "img1.png", "text": "a slow piano", "key": "b"}]  # fmt: skip
    manifest = _manifest(media / "m.jsonl", lines)
    run_prep(PrepJob([manifest], str(tmp_path / "out"), {"image": str(tiny_image_ckpt)},
                     workers=0, text_tokenizer=str(text_dir),
                     text_fields=("title", "media", "text")))  # fmt: skip
    vocab = json.loads((tmp_path / "out" / "vocab.json").read_text())
    rows = _rows(tmp_path / "out")
    img = {k: _media_ids(tiny_image_ckpt, load_image(media / f"img{i}.png"), "image", vocab)
           for i, k in enumerate("ab")}  # fmt: skip
    assert rows["a"]["tokens"].tolist() == (_ids(text_dir, "a cat") + img["a"]
                                            + _ids(text_dir, "a red square"))  # fmt: skip
    assert rows["b"]["tokens"].tolist() == img["b"] + _ids(text_dir, "a slow piano")  # no title
    with pytest.raises(InputError, match="'titel'.*no manifest media line"):
        run_prep(PrepJob([manifest], str(tmp_path / "o2"), {"image": str(tiny_image_ckpt)},
                         text_tokenizer=str(text_dir), text_fields=("titel", "media")))  # fmt: skip
    with pytest.raises(InputError, match="'media' exactly once"):
        run_prep(PrepJob([manifest], str(tmp_path / "o3"), {"image": str(tiny_image_ckpt)},
                         text_tokenizer=str(text_dir), text_fields=("text",)))  # fmt: skip
    assert not (tmp_path / "o2").exists() and not (tmp_path / "o3").exists()


def test_interleaved_document_one_sequence_in_segment_order(
    tmp_path, media, text_dir, tiny_image_ckpt, tiny_audio_ckpt
):
    doc = {"segments": [{"text": CORPUS[0]}, {"image": "img1.png"}, {"text": CORPUS[1]},
                        {"audio": "clip.wav"}, {"image": "img0.png"}]}  # fmt: skip
    text_only = {"segments": [{"text": CORPUS[2]}], "key": "words"}
    manifest = _manifest(media / "docs.jsonl", [doc, text_only])
    ckpts = {"image": str(tiny_image_ckpt), "audio": str(tiny_audio_ckpt)}
    run_prep(PrepJob([manifest], str(tmp_path / "out"), ckpts, workers=2, batch_size=4,
                     text_tokenizer=str(text_dir)))  # fmt: skip
    vocab = json.loads((tmp_path / "out" / "vocab.json").read_text())
    rows = _rows(tmp_path / "out")
    assert set(rows) == {"docs__line000001", "words"}
    row = rows["docs__line000001"]
    img0, img1 = (load_image(media / f"img{i}.png") for i in range(2))
    clip = load_audio(media / "clip.wav", 22050).samples
    expected = (_ids(text_dir, CORPUS[0]) + _media_ids(tiny_image_ckpt, img1, "image", vocab)
                + _ids(text_dir, CORPUS[1]) + _media_ids(tiny_audio_ckpt, clip, "audio", vocab)
                + _media_ids(tiny_image_ckpt, img0, "image", vocab))  # fmt: skip
    assert row["tokens"].tolist() == expected
    assert row["modality"] == "document" and row["source"] == f"{manifest}:1"
    assert list(row["grid"]) == [4, 4, 600 // 8, 4, 3]  # img1 (16x16), clip, img0 (16x12)
    assert list(row["input_size"]) == [16, 16, 600, 16, 12]
    assert rows["words"]["tokens"].tolist() == _ids(text_dir, CORPUS[2])


def test_without_text_tokenizer_prep_is_media_only(tmp_path, media, tiny_image_ckpt, text_dir):
    lines = [{"path": "img0.png", "text": "ignored", "key": "a"}]
    manifest = _manifest(media / "m.jsonl", lines)
    job = PrepJob([manifest], str(tmp_path / "out"), {"image": str(tiny_image_ckpt)}, workers=0)
    run_prep(job)
    vocab = json.loads((tmp_path / "out" / "vocab.json").read_text())
    assert vocab["text"] is None and vocab["specials"]["<pad>"] == 0
    expected = _media_ids(tiny_image_ckpt, load_image(media / "img0.png"), "image", vocab)
    assert _rows(tmp_path / "out")["a"]["tokens"].tolist() == expected
    docs = _manifest(media / "d.jsonl", [{"segments": [{"text": "hi"}, {"image": "img0.png"}]}])
    with pytest.raises(InputError, match="--text-tokenizer"):
        run_prep(PrepJob([docs], str(tmp_path / "o2"), {"image": str(tiny_image_ckpt)}))
    assert not (tmp_path / "o2").exists()


@pytest.mark.parametrize("segments, needle", [
    ([], "non-empty list"),
    ([{"text": "hi"}, {"picture": "a.png"}], "segment 1 must be"),
    ([{"text": "hi", "image": "a.png"}], "segment 0 must be"),
    ([{"text": 3}], "segment 0 must be"),
])  # fmt: skip
def test_malformed_document_names_line_and_segment(tmp_path, text_dir, tiny_image_ckpt,
                                                   segments, needle):  # fmt: skip
    manifest = _manifest(tmp_path / "d.jsonl", [{"segments": [{"text": "ok"}]},
                                                 {"segments": segments}])  # fmt: skip
    job = PrepJob([manifest], str(tmp_path / "out"), {"image": str(tiny_image_ckpt)},
                  text_tokenizer=str(text_dir))  # fmt: skip
    with pytest.raises(InputError, match=rf"d\.jsonl:2: .*{needle}"):
        run_prep(job)


def test_vocab_reuse_brings_the_text_tokenizer_and_checks_it(tmp_path, media, text_dir,
                                                             tiny_image_ckpt, capsys):  # fmt: skip
    lines = [{"path": "img0.png", "text": CORPUS[0], "key": "a"}]
    manifest = _manifest(media / "m.jsonl", lines)
    assert main(["prep", manifest, "-o", str(tmp_path / "o1"), "--workers", "0",
                 "--image-tokenizer", str(tiny_image_ckpt),
                 "--text-tokenizer", str(text_dir)]) == 0  # fmt: skip
    vocab = str(tmp_path / "o1" / "vocab.json")
    assert main(["prep", manifest, "-o", str(tmp_path / "o2"), "--workers", "0",
                 "--vocab", vocab]) == 0  # fmt: skip
    assert np.array_equal(_rows(tmp_path / "o2")["a"]["tokens"],
                          _rows(tmp_path / "o1")["a"]["tokens"])  # fmt: skip
    assert (
        Vocabulary.load(vocab).text.fingerprint
        == Vocabulary.load(tmp_path / "o2" / "vocab.json").text.fingerprint
    )
    other = build_text_tokenizer(tmp_path / "other", vocab_size=60)
    capsys.readouterr()
    code = main(["prep", manifest, "-o", str(tmp_path / "o3"), "--workers", "0",
                 "--vocab", vocab, "--text-tokenizer", str(other)])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "text tokenizer" in err[0], err
    assert not (tmp_path / "o3").exists()


def test_text_tokenizer_folder_without_tokenizer_json(tmp_path, media, tiny_image_ckpt):
    (tmp_path / "empty").mkdir()
    job = PrepJob([str(media)], str(tmp_path / "out"), {"image": str(tiny_image_ckpt)},
                  text_tokenizer=str(tmp_path / "empty"))  # fmt: skip
    with pytest.raises(InputError, match="no tokenizer.json"):
        run_prep(job)
