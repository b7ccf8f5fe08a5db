"""Stable vocabulary ids: the ranges depend only on the tokenizers named, never on which
modalities a folder holds; ``--vocab`` preps more of a dataset in the same ids; a residual-VQ
level gets one range per code stream."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mmtok.audio.io import save_audio
from mmtok.audio.tokenizer import audio_tokenizer
from mmtok.cli import main
from mmtok.data import PrepJob, Vocabulary, run_prep
from mmtok.data.shards import read_rows
from mmtok.data.vocab import SPECIALS
from mmtok.errors import InputError
from mmtok.image.io import load_image, save_image
from mmtok.image.tokenizer import image_tokenizer


def _trained(tok, x: torch.Tensor, path: Path) -> Path:
    torch.manual_seed(0)
    tok.train()
    tok(x)  # one training forward: the k-means init
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def ckpts(tiny_image_ckpt, tiny_audio_ckpt) -> dict[str, str]:
    return {"image": str(tiny_image_ckpt), "audio": str(tiny_audio_ckpt)}


def _folder(root: Path, image: bool) -> Path:
    root.mkdir(parents=True)
    g = torch.Generator().manual_seed(1)
    save_audio(root / "clip.wav", torch.rand(1, 800, generator=g) - 0.5, 22050)
    if image:
        save_image(root / "img.png", torch.rand(3, 16, 16, generator=g) * 2 - 1)
    return root


def _rows(out: Path) -> dict[str, dict]:
    return {Path(r["source"]).name: r for p in sorted(out.glob("shard-*")) for r in read_rows(p)}


def test_audio_ids_do_not_depend_on_the_folders_modalities(tmp_path, ckpts):
    """The same tokenizers named: an audio-only folder and a mixed folder, prepped apart,
    give the same audio ids (they used to start right after the specials in the first)."""
    for name, image in (("audio-only", False), ("mixed", True)):
        run_prep(PrepJob([str(_folder(tmp_path / name / "media", image))],
                         str(tmp_path / name / "out"), ckpts, workers=0))  # fmt: skip
    only, mixed = (_rows(tmp_path / n / "out") for n in ("audio-only", "mixed"))
    assert set(only) == {"clip.wav"} and set(mixed) == {"clip.wav", "img.png"}
    assert np.array_equal(only["clip.wav"]["tokens"], mixed["clip.wav"]["tokens"])
    vocabs = [json.loads((tmp_path / n / "out" / "vocab.json").read_text())
              for n in ("audio-only", "mixed")]  # fmt: skip
    assert vocabs[0] == vocabs[1]
    audio = [r for r in vocabs[0]["ranges"] if r["modality"] == "audio"]
    assert [r["offset"] for r in audio] == [len(SPECIALS) + 32]  # after the 32 image codes
    assert only["clip.wav"]["tokens"][1:-1].min() >= len(SPECIALS) + 32


def test_vocab_reuse_preps_a_new_part_in_the_same_ids(tmp_path, ckpts, capsys):
    """Part 2 names no tokenizer: ``--vocab`` brings part 1's, and its ids."""
    part1 = _folder(tmp_path / "p1", image=True)
    run_prep(PrepJob([str(part1)], str(tmp_path / "out1"), ckpts, workers=0))
    part2 = tmp_path / "p2"
    part2.mkdir()
    (part2 / "again.png").write_bytes((part1 / "img.png").read_bytes())
    code = main(["prep", str(part2), "-o", str(tmp_path / "out2"), "--workers", "0",
                 "--vocab", str(tmp_path / "out1" / "vocab.json")])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    v1, v2 = (json.loads((tmp_path / o / "vocab.json").read_text()) for o in ("out1", "out2"))
    assert v1 == v2
    assert np.array_equal(_rows(tmp_path / "out2")["again.png"]["tokens"],
                          _rows(tmp_path / "out1")["img.png"]["tokens"])  # fmt: skip


def test_vocab_mismatch_is_an_error_naming_what_differs(tmp_path, ckpts, capsys):
    media = _folder(tmp_path / "media", image=True)
    run_prep(PrepJob([str(media)], str(tmp_path / "out1"), ckpts, workers=0))
    other = _trained(image_tokenizer(downsample=4, hidden=8, latent_dim=8, codebook_size=64),
                     torch.rand(2, 3, 16, 16) * 2 - 1, tmp_path / "other")  # fmt: skip
    vocab = str(tmp_path / "out1" / "vocab.json")
    job = PrepJob([str(media)], str(tmp_path / "out2"), {"image": str(other)}, workers=0,
                  vocab=vocab)  # fmt: skip
    with pytest.raises(InputError, match="image level 0 stream 0") as e:
        run_prep(job)
    old = Vocabulary.load(vocab).ranges[0]
    assert old.fingerprint in str(e.value) and "64 codes" in str(e.value)
    assert not (tmp_path / "out2").exists()
    # other audio weights, through the CLI: one line naming the audio range only
    audio = _trained(audio_tokenizer(hop=8, width=4, latent_dim=8, res_depth=1, codebook_size=16),
                     torch.rand(2, 1, 512) - 0.5 + 0.1, tmp_path / "audio2")  # fmt: skip
    capsys.readouterr()
    code = main(["prep", str(media), "-o", str(tmp_path / "out3"), "--workers", "0",
                 "--vocab", vocab, "--audio-tokenizer", str(audio)])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].count("stream 0") == 1, err
    assert "--vocab" in err[0] and "audio level 0 stream 0" in err[0], err
    assert not (tmp_path / "out3").exists()


def test_residual_vq_gets_one_range_per_code_stream(tmp_path):
    torch.manual_seed(0)
    tok = image_tokenizer(downsample=4, hidden=8, latent_dim=8, quantizer="rvq",
                          codebook_size=16, num_quantizers=3)  # fmt: skip
    ck = _trained(tok, torch.rand(2, 3, 16, 16) * 2 - 1, tmp_path / "rvq")
    media = tmp_path / "media"
    media.mkdir()
    save_image(media / "a.png", torch.rand(3, 12, 16) * 2 - 1)
    run_prep(PrepJob([str(media)], str(tmp_path / "out"), {"image": str(ck)}, workers=0))
    vocab = json.loads((tmp_path / "out" / "vocab.json").read_text())
    ranges = vocab["ranges"]
    assert [(r["stream"], r["offset"], r["size"]) for r in ranges] == [
        (q, len(SPECIALS) + 16 * q, 16) for q in range(3)
    ]
    (row,) = _rows(tmp_path / "out").values()
    ids = tok.eval().encode(load_image(media / "a.png")[None]).flatten()[0].numpy()
    expected = ids + np.tile([r["offset"] for r in ranges], ids.size // 3)
    assert row["tokens"].tolist() == [SPECIALS.index("<image>"), *expected,
                                      SPECIALS.index("</image>")]  # fmt: skip
    streams = (row["tokens"][1:-1] - len(SPECIALS)) // 16
    assert streams.tolist() == [0, 1, 2] * (ids.size // 3)  # each stream in its own range


def test_no_tokenizer_named_gives_every_modalitys_default(tmp_path):
    from mmtok.presets import MUSIC_LEVELS, default_preset

    media = tmp_path / "media"
    media.mkdir()
    save_image(media / "a.png", torch.rand(3, 16, 16) * 2 - 1)
    run_prep(PrepJob([str(media)], str(tmp_path / "out"), workers=0))
    vocab = Vocabulary.load(tmp_path / "out" / "vocab.json")
    defaults = {m: default_preset(m) for m in ("image", "video")}
    assert vocab.tokenizers() == {**defaults, "audio": ",".join(MUSIC_LEVELS)}  # music levels


def test_input_without_a_tokenizer_is_refused_before_writing(tmp_path, ckpts):
    media = _folder(tmp_path / "media", image=True)
    job = PrepJob([str(media)], str(tmp_path / "out"), {"image": ckpts["image"]}, workers=0)
    with pytest.raises(InputError, match=r"1 audio input.*clip\.wav.*--audio-tokenizer"):
        run_prep(job)
    assert not (tmp_path / "out").exists()


def test_vocab_format_1_is_read_when_every_level_has_one_stream(tmp_path):
    rng = {"modality": "image", "tokenizer": "t", "fingerprint": "f", "level": 0,
           "offset": 10, "size": 32, "num_codebooks": 1}  # fmt: skip
    (tmp_path / "v1.json").write_text(json.dumps({"format": "mmtok.vocab/1", "ranges": [rng]}))
    (r,) = Vocabulary.load(tmp_path / "v1.json").ranges
    assert (r.stream, r.offset, r.size) == (0, 10, 32)
    rng["num_codebooks"] = 2
    (tmp_path / "v1.json").write_text(json.dumps({"format": "mmtok.vocab/1", "ranges": [rng]}))
    with pytest.raises(InputError, match="cannot be reused"):
        Vocabulary.load(tmp_path / "v1.json")
