"""The bundled video-small preset: loads, matches its sha256, reconstructs the bundled sample."""

from __future__ import annotations

import pytest
import torch

from mmtok.checkpoint import load_pretrained, sha256_file
from mmtok.media import read_media
from mmtok.metrics import psnr, ssim
from mmtok.presets import PRESETS, list_presets, preset_dir

SAMPLE = preset_dir("samples") / "bigbuckbunny.mp4"
# Measured on the bundled sample (24 frames, 96x96 at 12 fps; Big Buck Bunny is one of the
# two training videos, seen there at another scale): PSNR 26.69 dB, SSIM 0.751. An untrained
# tokenizer of the same shape scores about 12 dB.
MIN_PSNR_DB = 26.0
MIN_SSIM = 0.72

pytestmark = pytest.mark.skipif("video-small" not in list_presets(), reason="not bundled")


@pytest.fixture(scope="module")
def tok():
    torch.set_num_threads(2)
    return load_pretrained("video-small")


def test_files_match_the_registered_sha256_and_fit_5_mb():
    weights = preset_dir("video-small") / "model.safetensors"
    assert sha256_file(weights) == PRESETS["video-small"].sha256
    assert weights.stat().st_size <= 5_000_000
    assert PRESETS["video-small"].modality == "video"


def test_documented_architecture(tok):
    assert tok.modality == "video" and tok.downsample == (4, 4, 4) and not tok.causal
    assert tok.clip_frames == 16 and tok.fps == 12.0
    assert tok.codebook_size == 1024 and tok.num_codebooks == 1
    assert tok.token_grid((16, 64, 64)) == (4, 16, 16)


def test_reconstructs_the_bundled_sample(tok):
    x = read_media(SAMPLE, tok)  # [1, 3, 24, 96, 96]: a full clip and a half clip
    tokens = tok.encode(x)
    assert tokens.ids.shape == (1, 1, 4 + 2, 24, 24)
    assert tokens.ids.dtype == torch.int64
    assert 0 <= int(tokens.ids.min()) and int(tokens.ids.max()) < tok.codebook_size
    y = tok.decode(tokens).clamp(-1, 1)
    assert y.shape == x.shape
    assert psnr(x, y) > MIN_PSNR_DB
    assert ssim(x[0], y[0]) > MIN_SSIM
    # eval encode is deterministic
    assert torch.equal(tok.encode(x).ids, tokens.ids)
