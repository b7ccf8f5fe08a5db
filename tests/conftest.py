"""Fixtures shared by several test files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mmtok.image.tokenizer import image_tokenizer


@pytest.fixture(scope="session")
def tiny_image_ckpt(tmp_path_factory) -> Path:
    """A tiny image tokenizer (4x downsampling, 32 codes; one training forward so the k-means
    init has run) saved with save_pretrained."""
    torch.manual_seed(0)
    tok = image_tokenizer(downsample=4, hidden=8, latent_dim=8, codebook_size=32)
    tok.train()
    tok(torch.rand(2, 3, 16, 16) * 2 - 1)
    path = tmp_path_factory.mktemp("ck") / "image"
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_audio_ckpt(tmp_path_factory) -> Path:
    """A tiny mono 22.05 kHz audio tokenizer (hop 8, 16 codes; one training forward so the
    k-means init has run) saved with save_pretrained."""
    from mmtok.audio.tokenizer import audio_tokenizer

    torch.manual_seed(0)
    tok = audio_tokenizer(hop=8, width=4, latent_dim=8, res_depth=1, codebook_size=16)
    tok.train()
    tok(torch.rand(2, 1, 512) - 0.5)
    path = tmp_path_factory.mktemp("ck") / "audio"
    tok.save_pretrained(path)
    return path
