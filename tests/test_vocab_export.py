"""``mmtok vocab export``: a Hugging Face tokenizer whose ids are the dataset's ids (text
tokenizer + specials + one added token per media code, per stream for residual VQ), checked
with the ``tokenizers`` library and, when installed, ``transformers.AutoTokenizer`` in a
process that never imports mmtok."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mmtok.cli import main
from mmtok.data import PrepJob, Vocabulary, run_prep
from mmtok.data.shards import read_rows
from mmtok.data.vocab import SPECIALS
from mmtok.errors import InputError
from mmtok.image.io import save_image
from mmtok.image.tokenizer import image_tokenizer
from tests.test_prep_text import CORPUS, build_text_tokenizer

tokenizers = pytest.importorskip("tokenizers")


def _load(out: Path):
    return tokenizers.Tokenizer.from_file(str(out / "tokenizer.json"))


@pytest.fixture(scope="module")
def captions(tmp_path_factory, tiny_image_ckpt):
    """A caption dataset (text + image) prepped with a tiny BPE text tokenizer."""
    root = tmp_path_factory.mktemp("export")
    g = torch.Generator().manual_seed(0)
    lines = []
    for i in range(2):
        save_image(root / f"img{i}.png", torch.rand(3, 16, 12, generator=g) * 2 - 1)
        lines.append({"path": f"img{i}.png", "text": CORPUS[i]})
    (root / "m.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    text = build_text_tokenizer(root / "text")
    run_prep(PrepJob([str(root / "m.jsonl")], str(root / "out"), {"image": str(tiny_image_ckpt)},
                     workers=0, text_tokenizer=str(text)))  # fmt: skip
    rows = sorted(read_rows(root / "out" / "shard-00000.parquet"), key=lambda r: r["key"])
    return root, rows, Vocabulary.load(root / "out" / "vocab.json")


def test_text_dataset_ids_size_and_readable_decode(captions):
    root, rows, vocab = captions
    assert main(["vocab", "export", str(root / "out"), str(root / "hf")]) == 0
    tok = _load(root / "hf")
    assert tok.get_vocab_size(with_added_tokens=True) == vocab.size
    (r,) = [r for r in vocab.ranges if r.modality == "image"]
    for code in (0, 1, 17, r.size - 1):
        assert tok.token_to_id(f"<image_l0_{code}>") == r.offset + code
    for name, i in vocab.specials.items():
        assert tok.token_to_id(name) == i
    text = tokenizers.Tokenizer.from_file(str(root / "text" / "tokenizer.json"))
    for word, i in text.get_vocab().items():  # the text's own ids, unchanged
        assert tok.token_to_id(word) == i
    tokens = rows[0]["tokens"].tolist()
    decoded = tok.decode(tokens, skip_special_tokens=False)
    codes = [t - r.offset for t in tokens if r.offset <= t < r.offset + r.size]
    media = " ".join(f"<image_l0_{c}>" for c in codes)
    assert decoded == f"{text.decode(tokens[: tokens.index(vocab.specials['<image>'])])} " \
                      f"<image> {media} </image>"  # fmt: skip
    assert tok.encode(decoded, add_special_tokens=False).ids == tokens  # and back


def test_media_only_wordlevel_with_streams(tmp_path):
    torch.manual_seed(0)
    rvq = image_tokenizer(downsample=4, hidden=8, latent_dim=8, quantizer="rvq",
                          codebook_size=16, num_quantizers=3)  # fmt: skip
    rvq.train()
    rvq(torch.rand(2, 3, 16, 16) * 2 - 1)
    rvq.save_pretrained(tmp_path / "rvq")
    (tmp_path / "media").mkdir()
    save_image(tmp_path / "media" / "a.png", torch.rand(3, 12, 16) * 2 - 1)
    run_prep(PrepJob([str(tmp_path / "media")], str(tmp_path / "out"),
                     {"image": str(tmp_path / "rvq")}, workers=0))  # fmt: skip
    vocab_json = tmp_path / "out" / "vocab.json"
    assert main(["vocab", "export", "--vocab", str(vocab_json), str(tmp_path / "hf")]) == 0
    tok = _load(tmp_path / "hf")
    expected = {**{n: i for i, n in enumerate(SPECIALS)},
                **{f"<image_l0_s{q}_{c}>": len(SPECIALS) + 16 * q + c
                   for q in range(3) for c in range(16)}}  # fmt: skip
    assert tok.get_vocab(with_added_tokens=True) == expected  # exactly these, nothing else
    (row,) = read_rows(tmp_path / "out" / "shard-00000.parquet")
    words = tok.decode(row["tokens"].tolist(), skip_special_tokens=False).split()
    assert words[0] == "<image>" and words[-1] == "</image>"
    assert [w.split("_")[2] for w in words[1:-1]] == ["s0", "s1", "s2"] * ((len(words) - 2) // 3)
    # existing files are refused, --overwrite replaces them
    assert main(["vocab", "export", "--vocab", str(vocab_json), str(tmp_path / "hf")]) == 2
    assert main(["vocab", "export", "--vocab", str(vocab_json), str(tmp_path / "hf"),
                 "--overwrite"]) == 0  # fmt: skip


def test_special_name_the_text_tokenizer_uses_is_renamed(tmp_path, tiny_image_ckpt):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    text = Tokenizer(models.BPE(unk_token="[UNK]"))
    text.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.BpeTrainer(vocab_size=50, special_tokens=["[UNK]", "<pad>"])
    text.train_from_iterator(CORPUS, trainer)  # Gemma-style: the text has its own <pad>
    (tmp_path / "text").mkdir()
    text.save(str(tmp_path / "text" / "tokenizer.json"))
    (tmp_path / "media").mkdir()
    save_image(tmp_path / "media" / "a.png", torch.rand(3, 16, 16) * 2 - 1)
    run_prep(PrepJob([str(tmp_path / "media")], str(tmp_path / "out"),
                     {"image": str(tiny_image_ckpt)}, workers=0,
                     text_tokenizer=str(tmp_path / "text")))  # fmt: skip
    vocab = Vocabulary.load(tmp_path / "out" / "vocab.json")
    assert main(["vocab", "export", str(tmp_path / "out"), str(tmp_path / "hf")]) == 0
    tok = _load(tmp_path / "hf")
    assert tok.token_to_id("<pad>") == text.token_to_id("<pad>") == 1  # the text's own
    assert tok.token_to_id("<mmtok_pad>") == vocab.specials["<pad>"]
    assert tok.token_to_id("<image>") == vocab.specials["<image>"]
    assert tok.get_vocab_size(with_added_tokens=True) == vocab.size


def test_missing_or_other_text_tokenizer_is_refused(captions, tmp_path):
    root, _, _ = captions
    other = build_text_tokenizer(tmp_path / "other", vocab_size=60)
    with pytest.raises(InputError, match="fingerprint"):
        from mmtok.data.hf_export import export_vocab

        export_vocab(root / "out" / "vocab.json", tmp_path / "hf", text_dir=other)
    data = json.loads((root / "out" / "vocab.json").read_text())
    data["text"]["tokenizer"] = str(tmp_path / "gone")
    (tmp_path / "vocab.json").write_text(json.dumps(data))
    with pytest.raises(InputError, match="--text-tokenizer"):
        export_vocab(tmp_path / "vocab.json", tmp_path / "hf")
    assert not (tmp_path / "hf").exists()
    assert main(["vocab", "export", str(tmp_path / "hf")]) == 2  # DATASET_DIR missing


AUTO = """
import json, sys
from transformers import AutoTokenizer
tok = AutoTokenizer.from_pretrained(sys.argv[1])
ids = json.loads(sys.argv[2])
assert "mmtok" not in sys.modules
print(json.dumps({"len": len(tok), "text": tok.decode(ids), "pad": tok.pad_token_id,
                  "code": tok.convert_tokens_to_ids("<image_l0_5>")}))
"""


def test_auto_tokenizer_loads_the_export(captions):
    pytest.importorskip("transformers")
    root, rows, vocab = captions
    out = root / "hf-auto"
    assert main(["vocab", "export", str(root / "out"), str(out)]) == 0
    tokens = rows[1]["tokens"].tolist()
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "HF_HOME": str(root / ".hf")}  # fmt: skip
    argv = [sys.executable, "-c", AUTO, str(out), json.dumps(tokens)]
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=root, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    (r,) = [r for r in vocab.ranges if r.modality == "image"]
    assert got["len"] == vocab.size
    assert got["pad"] == vocab.specials["<pad>"]
    assert got["code"] == r.offset + 5
    assert "<image>" in got["text"] and f"<image_l0_{tokens[-2] - r.offset}> </image>" in got[
        "text"]  # fmt: skip
    assert np.all(np.asarray(tokens) < got["len"])
