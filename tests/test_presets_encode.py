"""The bundled presets on the bundled samples: encode's ids-only path gives the ids of the
quantizer's full forward (what encode ran before it had its own path), batch-invariantly."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mmtok import load_tokenizer
from mmtok.media import detect_modality, read_media
from mmtok.presets import PRESETS, list_presets

SAMPLES = Path(__file__).resolve().parents[1] / "mmtok/assets/samples"


def _cases() -> list[tuple[str, Path]]:
    files = [f for f in sorted(SAMPLES.iterdir()) if f.suffix != ".md"]
    return [(name, f) for name in list_presets() for f in files
            if detect_modality(f) == PRESETS[name].modality]  # fmt: skip


def test_every_preset_has_a_sample():
    assert {name for name, _ in _cases()} == set(list_presets())


@pytest.mark.parametrize(("preset", "sample"), _cases(), ids=lambda v: getattr(v, "name", v))
def test_preset_ids_equal_the_full_forward_ids(preset, sample, monkeypatch):
    tok = load_tokenizer(preset)
    x = read_media(sample, tok)  # [1, C, *S]
    tok.quantizer.reset_usage()
    ids = tok.encode(x).ids
    assert all(int(h.sum()) == 0 for h in tok.quantizer.usage_histograms().values())
    # a batch of two: the sample and its mirror image (time / width reversed)
    pair = torch.cat([x, x.flip(-1)])
    assert torch.equal(tok.encode(pair).ids[:1], ids)
    full = tok.quantizer.forward
    monkeypatch.setattr(tok.quantizer, "encode", lambda z, n_q=None: full(z, n_q=n_q).ids)
    assert torch.equal(tok.encode(x).ids, ids)
    assert torch.equal(tok.encode(pair).ids[1:], tok.encode(x.flip(-1)).ids)
