"""Video tokenizer: axial attention vs a naive implementation, per-axis downsampling, clip
windows, causal mode, batch invariance of the encoder (tiny configs, CPU)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mmtok.errors import ConfigError
from mmtok.video.model import AxialAttention, VideoDecoder, VideoEncoder, stage_strides
from mmtok.video.tokenizer import VideoTokenizer, video_tokenizer


def _tiny(causal=False, clip_frames=None, downsample=(2, 2, 2), quantizer="vq"):
    """Tiny tokenizer after one training forward (so the k-means codebook is initialised)."""
    torch.manual_seed(0)
    tok = video_tokenizer(downsample=downsample, hidden=8, latent_dim=8, codebook_size=32,
                          causal=causal, clip_frames=clip_frames, quantizer=quantizer)  # fmt: skip
    tok.train()
    tok(torch.rand(4, 3, tok.clip_frames, 8, 8) * 2 - 1)
    return tok.eval()


def _video(*shape, seed=1):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1


# --- axial attention -------------------------------------------------------------------


def _naive_axial(attn: AxialAttention, x: torch.Tensor) -> torch.Tensor:
    """Independent slow version: per axis, explicit softmax(q k^T / sqrt(d)) v with einsum."""
    b, c, t, h, w = x.shape
    n, d = attn.heads, c // attn.heads
    qkv = F.conv3d(x, attn.qkv.weight, attn.qkv.bias)  # [B, 9C, T, H, W]
    outs = []
    for i, dim in enumerate((2, 3, 4)):  # t, h, w
        q, k, v = qkv[:, 3 * c * i : 3 * c * (i + 1)].reshape(b, 3, n, d, t, h, w).unbind(1)
        q, k, v = (z.movedim(dim + 1, -1) for z in (q, k, v))  # [B, n, d, X, Y, L]
        scores = torch.einsum("bndxyi,bndxyj->bnxyij", q, k) / math.sqrt(d)
        if attn.causal and dim == 2:
            length = scores.shape[-1]
            mask = torch.ones(length, length, dtype=torch.bool).triu(1)
            scores = scores.masked_fill(mask, float("-inf"))
        o = torch.einsum("bnxyij,bndxyj->bndxyi", scores.softmax(-1), v)
        outs.append(o.movedim(-1, dim + 1).reshape(b, c, t, h, w))
    return F.conv3d(torch.cat(outs, 1), attn.proj.weight, attn.proj.bias)


@pytest.mark.parametrize("causal", [False, True])
def test_axial_attention_matches_naive(causal):
    torch.manual_seed(0)
    attn = AxialAttention(8, heads=2, causal=causal)
    x = torch.randn(2, 8, 3, 4, 5)
    with torch.no_grad():
        fast = attn(x)
    assert fast.shape == x.shape
    torch.testing.assert_close(fast, _naive_axial(attn, x), atol=1e-5, rtol=1e-5)
    fast_grad = attn(x)  # autograd path (no oneDNN shortcut) agrees too
    torch.testing.assert_close(fast_grad.detach(), fast, atol=1e-5, rtol=1e-5)


# --- encoder / decoder shapes ----------------------------------------------------------


@pytest.mark.parametrize(
    "downsample,strides",
    [((4, 4, 4), [(2, 2, 2)] * 2), ((2, 4, 4), [(2, 2, 2), (1, 2, 2)]),
     ((1, 8, 8), [(1, 2, 2)] * 3)],
)  # fmt: skip
def test_per_axis_downsample_shapes(downsample, strides):
    assert stage_strides(downsample) == strides
    mult = [1] * len(strides)
    kw = dict(latent_dim=4, hidden=8, channel_mult=mult, downsample=downsample, heads=2)
    enc, dec = VideoEncoder(**kw), VideoDecoder(**kw)
    x = torch.randn(1, 3, 8, 16, 16)
    with torch.no_grad():
        z = enc(x)
        assert z.shape == (1, 4, *(s // f for s, f in zip((8, 16, 16), downsample, strict=True)))
        assert dec(z).shape == x.shape


@pytest.mark.parametrize("bad", [(4, 4), (3, 4, 4), (1, 1, 1), (0, 2, 2)])
def test_bad_downsample_raises(bad):
    with pytest.raises(ConfigError, match="downsample"):
        video_tokenizer(downsample=bad, hidden=8, latent_dim=8)


def test_bad_clip_frames_and_fps_raise():
    with pytest.raises(ConfigError, match="clip_frames"):
        video_tokenizer(downsample=(2, 2, 2), hidden=8, latent_dim=8, clip_frames=5)
    with pytest.raises(ConfigError, match="clip_frames"):
        video_tokenizer(downsample=(2, 2, 2), hidden=8, latent_dim=8, causal=True, clip_frames=4)
    with pytest.raises(ConfigError, match="fps"):
        video_tokenizer(downsample=(2, 2, 2), hidden=8, latent_dim=8, fps=0)
    tok = video_tokenizer(downsample=(2, 2, 2), hidden=8, latent_dim=8)
    other = video_tokenizer(downsample=(2, 2, 2), hidden=8, latent_dim=8, causal=True)
    with pytest.raises(ConfigError, match="causal"):
        VideoTokenizer(tok.encoder, tok.quantizer, other.decoder, clip_frames=8)


def test_encoder_bitwise_batch_invariant():
    torch.manual_seed(0)
    enc = VideoEncoder(latent_dim=8, hidden=8, channel_mult=(1, 2), heads=2).eval()
    x = _video(5, 3, 8, 12, 12)
    with torch.inference_mode():
        batched = enc(x)
        for i in range(5):
            assert torch.equal(enc(x[i : i + 1]), batched[i : i + 1])


# --- clip windows ----------------------------------------------------------------------


def test_clip_windows_equal_per_clip_encodes():
    tok = _tiny(clip_frames=4)
    x = _video(2, 3, 11, 9, 11)  # 2.75 clips of 4 frames, awkward H, W
    assert tok.clip_windows(11) == [(0, 4), (4, 8), (8, 11)]
    tokens = tok.encode(x)
    assert tokens.grid == tok.token_grid(x.shape) == (2 + 2 + 2, 5, 6)
    per_clip = [tok.encode(x[:, :, a:b]).ids for a, b in tok.clip_windows(11)]
    assert torch.equal(tokens.ids, torch.cat(per_clip, dim=2))
    last = F.pad(x[:, :, 8:], (0, 1, 0, 1, 0, 1), mode="replicate")  # last frame/row/col
    assert torch.equal(tok.encode(last).ids, per_clip[2])
    video = tok.decode(tokens)
    assert video.shape == x.shape  # full length back, clips in order
    first = tok.decode(tok.encode(x[:, :, :4]))
    torch.testing.assert_close(video[:, :, :4], first, atol=1e-5, rtol=1e-5)


def test_short_video_is_one_padded_clip():
    tok = _tiny(clip_frames=4)
    x = _video(1, 3, 3, 8, 8)
    tokens = tok.encode(x)
    assert tokens.grid == (2, 4, 4)  # 3 frames padded to 4 (valid length), not more
    assert tok.decode(tokens).shape == x.shape


def test_raw_ids_decode_to_full_clips():
    tok = _tiny(clip_frames=4)
    ids = tok.encode(_video(1, 3, 8, 8, 8)).ids
    assert tok.decode(ids).shape == (1, 3, 8, 8, 8)


# --- causal mode -----------------------------------------------------------------------


def test_causal_one_frame_and_frame_counts():
    tok = _tiny(causal=True)  # s_t = 2, clip_frames = 1 + 4 * 2 = 9
    assert tok.clip_frames == 9
    for k in range(5):
        x = _video(1, 3, 1 + 2 * k, 8, 8)
        tokens = tok.encode(x)
        assert tokens.grid[0] == 1 + k
        assert tok.decode(tokens).shape == x.shape
    image = _video(2, 3, 1, 7, 9)  # an image is a 1-frame video
    assert tok.decode(tok.encode(image)).shape == image.shape


def test_causal_first_frame_coded_alone():
    tok = _tiny(causal=True)
    x = _video(2, 3, 9, 8, 8)
    ids = tok.encode(x).ids
    assert torch.equal(tok.encode(x[:, :, :1]).ids, ids[:, :, :1])
    assert torch.equal(tok.encode(x[:, :, :5]).ids, ids[:, :, :3])
    changed = x.clone()
    changed[:, :, 1:] = -changed[:, :, 1:]
    assert torch.equal(tok.encode(changed).ids[:, :, :1], ids[:, :, :1])
    full = tok.decode(ids)
    torch.testing.assert_close(tok.decode(ids[:, :, :2]), full[:, :, :3], atol=1e-5, rtol=1e-5)


def test_non_causal_is_default_and_sees_the_future():
    tok = _tiny()
    assert not tok.causal and tok.clip_frames == 8
    x = _video(1, 3, 8, 8, 8)
    changed = x.clone()
    changed[:, :, 4:] = -changed[:, :, 4:]
    with torch.inference_mode():
        a, b = tok.encoder(x), tok.encoder(changed)
    assert not torch.equal(a[:, :, :1], b[:, :, :1])


def test_config_round_trip_keeps_fps_and_clip(tmp_path):
    torch.manual_seed(0)
    tok = video_tokenizer(downsample=(1, 2, 2), hidden=8, latent_dim=8, codebook_size=16,
                          clip_frames=3, fps=12.5).eval()  # fmt: skip
    tok.save_pretrained(tmp_path / "v")
    loaded = VideoTokenizer.from_pretrained(tmp_path / "v")
    assert (loaded.fps, loaded.clip_frames, loaded.downsample) == (12.5, 3, (1, 2, 2))
    assert loaded.fingerprint() == tok.fingerprint()
