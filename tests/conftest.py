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
