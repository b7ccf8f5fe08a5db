"""Audio tokenizer: shapes, receptive field, exact windowed / batched encode, decode, losses."""

from __future__ import annotations

import inspect
import math

import pytest
import torch
from torch import nn

from mmtok.audio.losses import AudioLoss, linf_loss, stft_loss
from mmtok.audio.model import AudioDecoder, AudioEncoder, ExactConv1d
from mmtok.audio.tokenizer import (
    AudioTokenizer,
    MultiLevelAudioTokenizer,
    audio_tokenizer,
    hop_strides,
    multilevel_audio_tokenizer,
)
from mmtok.configurable import to_spec
from mmtok.errors import ConfigError, InputError
from mmtok.metrics import mel_distance, si_snr
from mmtok.quantization import QuantizerOptions, VectorQuantizer

SR = 22050


def _music(seconds: float, sr: int = SR, seed: int = 0, channels: int = 1) -> torch.Tensor:
    """``[1, C, T]`` synthetic music: two vibrato partials, a chirp, plucked notes, noise."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(round(seconds * sr)) / sr
    x = 0.25 * torch.sin(2 * math.pi * 220 * t + 3 * torch.sin(2 * math.pi * 5 * t))
    x += 0.15 * torch.sin(2 * math.pi * (330 + 40 * t) * t)
    x += 0.2 * torch.sin(2 * math.pi * 660 * t) * torch.exp(-6 * (t % 0.5))
    x = x + 0.02 * torch.randn(t.shape, generator=g)
    return x.clamp(-1, 1).expand(channels, -1)[None].contiguous()


def _tiny(hop=32, quantizer="rvq", channels=1, seed=0, **kw):
    torch.manual_seed(seed)
    tok = audio_tokenizer(hop=hop, width=8, latent_dim=16, res_depth=2, quantizer=quantizer,
                          codebook_size=64, num_quantizers=3, channels=channels, **kw)  # fmt: skip
    tok.train()
    tok(torch.cat([_music(0.4, seed=s, channels=channels) for s in range(4)]))  # k-means init
    return tok.eval()


# --- model --------------------------------------------------------------------------------
@pytest.mark.parametrize("hop", [8, 32, 128])
def test_shapes_and_hops(hop):
    enc = AudioEncoder(latent_dim=12, strides=hop_strides(hop), widths=[4] * len(hop_strides(hop)))
    dec = AudioDecoder(latent_dim=12, strides=hop_strides(hop), widths=[4] * len(hop_strides(hop)))
    assert enc.hop == dec.hop == hop
    z = enc(torch.randn(2, 1, hop * 7))
    assert z.shape == (2, 12, 7)
    assert dec(z).shape == (2, 1, hop * 7)


def test_config_errors():
    with pytest.raises(ConfigError, match="even"):
        AudioEncoder(strides=(3, 4), widths=(4, 4))
    with pytest.raises(ConfigError, match="widths"):
        AudioEncoder(strides=(2, 4), widths=(4,))
    with pytest.raises(ConfigError, match="power of two"):
        hop_strides(24)
    enc, dec = AudioEncoder(latent_dim=8), AudioDecoder(latent_dim=8)
    with pytest.raises(ConfigError, match="latent_dim"):
        AudioTokenizer(enc, VectorQuantizer(16, 8), dec)
    with pytest.raises(ConfigError, match="channels"):
        AudioTokenizer(enc, VectorQuantizer(8, 8), dec, channels=2)


def _linear(module: nn.Module) -> nn.Module:
    """Replace every ReLU by Identity: the gradient support is then the whole dependency cone."""
    for name, child in module.named_children():
        setattr(module, name, nn.Identity()) if isinstance(child, nn.ReLU) else _linear(child)
    return module


@pytest.mark.parametrize("hop", [8, 32])
def test_input_span_equals_gradient_support(hop):
    torch.manual_seed(0)
    kw = dict(latent_dim=4, strides=hop_strides(hop), widths=[3] * len(hop_strides(hop)))
    enc, dec = _linear(AudioEncoder(**kw, res_depth=3)), _linear(AudioDecoder(**kw, res_depth=3))
    x = torch.randn(1, 1, hop * 200, dtype=torch.float64, requires_grad=True)
    enc.double()(x)[..., 90:93].sum().backward()
    support = x.grad[0, 0].nonzero()
    assert (int(support.min()), int(support.max())) == enc.input_span(90, 92)
    assert enc.receptive_field == enc.input_span(0, 0)[1] - enc.input_span(0, 0)[0] + 1
    z = torch.randn(1, 4, 200, dtype=torch.float64, requires_grad=True)
    dec.double()(z)[..., 100 * hop + 3 : 104 * hop].sum().backward()
    support = z.grad[0].abs().sum(0).nonzero()
    assert (int(support.min()), int(support.max())) == dec.input_span(100 * hop + 3, 104 * hop - 1)


def test_exact_conv_matches_conv_and_is_length_invariant():
    """The empirical finding behind exact windows: the native kernel rounds the same for any
    length >= 12, offset and batch size (oneDNN, the default for long inputs, does not)."""
    torch.manual_seed(0)
    conv = ExactConv1d(16, 16, 3, padding=9, dilation=9)
    x = torch.randn(3, 16, 3000)
    with torch.no_grad():
        ref = conv(x)
        assert torch.allclose(ref, nn.functional.conv1d(x, conv.weight, conv.bias, padding=9,
                                                        dilation=9), atol=1e-5)  # fmt: skip
        for b, start, length in [(1, 0, 40), (2, 100, 333), (3, 64, 2048), (1, 7, 12)]:
            y = conv(x[:b, :, start : start + length])
            inner = slice(18, length - 18)  # away from the window's zero padding
            ref_inner = slice(start + 18, start + length - 18)
            assert torch.equal(y[..., inner], ref[:b, :, ref_inner])


# --- tokenizer ------------------------------------------------------------------------------
def test_token_rate_and_bitrate():
    tok = _tiny(hop=32)
    assert tok.sample_rate == 22050 and tok.channels == 1 and tok.hop == 32
    assert tok.token_rate == pytest.approx(22050 / 32)
    assert tok.bitrate() == pytest.approx(22050 / 32 * 3 * math.log2(64))
    assert tok.bitrate(n_q=1) == pytest.approx(22050 / 32 * 6)


def test_window_invariant_ids_on_30s():
    """Windowed encode of a 30 s signal == one pass, for several window sizes and n_q."""
    tok = _tiny(hop=32)
    x = _music(30.0)  # 661500 samples, not a multiple of the hop
    single = tok.encode(x, window=10**9)
    assert single.ids.shape == (1, 3, math.ceil(x.shape[-1] / 32))
    for window in (16, 100, 1000, 4096):
        assert torch.equal(tok.encode(x, window=window).ids, single.ids), window
    assert torch.equal(tok.encode(x).ids, single.ids)  # the default window
    two = tok.encode(x, n_q=2, window=333).ids
    assert torch.equal(two, single.ids[:, :2])  # residual stages: a prefix


def test_window_invariant_ids_hop8_and_hop128():
    for hop in (8, 128):
        tok = _tiny(hop=hop, quantizer="vq")
        x = _music(6.0, seed=hop)
        single = tok.encode(x, window=10**9).ids
        for window in (16, 257, 2000):
            assert torch.equal(tok.encode(x, window=window).ids, single), (hop, window)


def test_windowed_decode_has_no_seams():
    tok = _tiny(hop=32)
    tokens = tok.encode(_music(5.0))
    full = tok.decode(tokens, window=10**9)
    assert full.shape == (1, 1, round(5.0 * SR))
    for window in (16, 57, 1000):
        assert (tok.decode(tokens, window=window) - full).abs().max() < 1e-4


def test_encoder_calls_bounded_by_window():
    """Peak memory does not grow with length: no encoder call sees more than the budget."""
    tok = _tiny(hop=32)
    tok.window_samples, tok.batch_samples = 4096, 16384
    seen = []
    tok.encoder.register_forward_pre_hook(lambda m, args: seen.append(args[0].numel()))
    for seconds in (2.0, 8.0):
        seen.clear()
        tok.encode(_music(seconds))
        bound = tok.batch_samples + 2 * tok.receptive_field + 2 * tok.hop
        assert max(seen) <= bound, (seconds, max(seen))


def test_encode_clips_equal_per_clip():
    tok = _tiny(hop=32)
    lengths = [1, 31, 700, 12345, 12345, 40000]
    clips = [_music(n / SR, seed=i)[0] for i, n in enumerate(lengths)]
    batched = tok.encode_clips(clips, window=64)
    for clip, tokens in zip(clips, batched, strict=True):
        alone = tok.encode(clip[None], window=10**9)
        assert tokens.input_size == (clip.shape[-1],)
        assert torch.equal(tokens.ids, alone.ids)
        assert tok.decode(tokens).shape == clip[None].shape
    with pytest.raises(InputError, match="clips"):
        tok.encode_clips(torch.zeros(2, 1, 100))
    with pytest.raises(InputError, match=r"clips\[1\]"):
        tok.encode_clips([clips[0], torch.full((1, 100), float("nan"))])


def test_stereo_and_bad_inputs():
    tok = _tiny(hop=8, quantizer="fsq", channels=2)
    x = _music(0.3, channels=2)
    tokens = tok.encode(x)
    assert tokens.ids.shape[-1] == math.ceil(x.shape[-1] / 8)
    assert tok.decode(tokens).shape == x.shape
    with pytest.raises(InputError, match=r"\[B, 2"):
        tok.encode(_music(0.3))  # mono into a stereo tokenizer
    with pytest.raises(InputError, match="window"):
        tok.encode(x, window=0)


def test_train_forward_and_loss_backward():
    tok = _tiny(hop=32, quantizer_dropout=0.5)
    tok.train()
    x = torch.cat([_music(0.5, seed=s) for s in range(2)])
    out = tok(x)
    assert out.recon.shape == x.shape
    loss = AudioLoss(l2=1.0)(x, out.recon)
    (loss.total + out.quant.loss).backward()
    assert set(loss.terms) == {"l1", "l2", "stft", "mel", "linf"}
    assert all(p.grad is not None for p in tok.encoder.parameters())


def test_multilevel_encode_and_round_trip(tmp_path):
    torch.manual_seed(0)
    levels = multilevel_audio_tokenizer(
        level={"width": 4, "latent_dim": 8, "res_depth": 1, "codebook_size": 16}
    )
    assert levels.hops == (8, 32, 128)
    x = _music(0.5)
    tokens = levels.encode(x)
    assert {h: t.grid for h, t in tokens.items()} == {
        h: (math.ceil(x.shape[-1] / h),) for h in (8, 32, 128)
    }
    assert all(y.shape == x.shape for y in levels.decode(tokens).values())
    levels.save_pretrained(tmp_path / "levels")
    loaded = MultiLevelAudioTokenizer.from_pretrained(tmp_path / "levels")
    assert loaded.hops == levels.hops
    for hop, t in loaded.encode(x).items():
        assert torch.equal(t.ids, tokens[hop].ids) and t.tokenizer_id == tokens[hop].tokenizer_id


# a non-default value for every audio_tokenizer argument but hop (over an rvq base, so the
# quantizer arguments all take effect); a new argument must be added here
NON_DEFAULT = {
    "width": 8, "latent_dim": 16, "res_depth": 2, "quantizer": "fsq", "codebook_size": 32,
    "num_quantizers": 3, "quantizer_dropout": 0.5, "sample_rate": 16000, "channels": 2,
    "dead_code_threshold": 1.0, "decoder_width": 8, "codebook_dim": 4,
    "quantizer_options": QuantizerOptions(cosine=True),
}  # fmt: skip


def test_multilevel_factory_reaches_every_audio_tokenizer_argument():
    params = set(inspect.signature(audio_tokenizer).parameters) - {"hop"}
    assert set(NON_DEFAULT) == params
    base = {"width": 4, "latent_dim": 8, "res_depth": 1, "quantizer": "rvq", "num_quantizers": 2}
    for name, value in NON_DEFAULT.items():
        args = {**base, name: value}
        multi = multilevel_audio_tokenizer((8, 32), args)
        assert multi.hops == (8, 32)
        for level in multi.levels:
            assert to_spec(level) == to_spec(audio_tokenizer(level.hop, **args)), name
            assert to_spec(level) != to_spec(audio_tokenizer(level.hop, **base)), name
    with pytest.raises(ConfigError, match="quantiser_dropout"):
        multilevel_audio_tokenizer(level={"quantiser_dropout": 0.1})


# --- losses and metrics -------------------------------------------------------------------
def test_losses_zero_on_identity_and_positive_otherwise():
    x = _music(0.5)
    y = x + 0.05 * torch.randn_like(x)
    for fn in (stft_loss, linf_loss):
        assert float(fn(x, x)) == pytest.approx(0.0, abs=1e-6)
        assert float(fn(x, y)) > 0
    assert float(AudioLoss()(x, x).total) == pytest.approx(0.0, abs=1e-6)
    assert float(linf_loss(x, y, k=1)) == pytest.approx(float((x - y).abs().max()))


def test_stft_loss_against_slow_implementation():
    """One resolution, recomputed with explicit reflect padding, framing and rfft."""
    torch.manual_seed(0)
    x, y = torch.randn(1, 1, 4000), torch.randn(1, 1, 4000)
    n, hop = 512, 128

    def mag(s):
        s = nn.functional.pad(s, (n // 2, n // 2), mode="reflect")[0, 0]
        frames = s.unfold(0, n, hop) * torch.hann_window(n)
        return torch.fft.rfft(frames).abs().clamp_min(1e-5)

    mx, my = mag(x), mag(y)
    expected = (
        torch.linalg.norm(mx - my) / torch.linalg.norm(mx) + (mx.log() - my.log()).abs().mean()
    )
    assert float(stft_loss(x, y, fft_sizes=(n,))) == pytest.approx(float(expected), rel=1e-4)


def test_si_snr_closed_form_and_scale_invariance():
    t = torch.arange(SR) / SR
    s, c = torch.sin(2 * math.pi * 100 * t), torch.cos(2 * math.pi * 100 * t)  # orthogonal
    ref, est = s[None, None], (s + 0.5 * c)[None, None]
    assert float(si_snr(ref, est)) == pytest.approx(10 * math.log10(1 / 0.25), abs=1e-3)
    assert float(si_snr(ref, 3 * est)) == pytest.approx(float(si_snr(ref, est)), abs=1e-4)


def test_mel_distance_grows_with_noise():
    x = _music(1.0)
    d = [mel_distance(x, x + a * torch.randn_like(x), SR) for a in (0.0, 0.01, 0.1)]
    assert d[0] == pytest.approx(0.0, abs=1e-6) and d[0] < d[1] < d[2]


def test_encode_clips_casts_half_precision_clips():
    torch.manual_seed(0)
    tok = audio_tokenizer(hop=8, width=4, latent_dim=8, res_depth=1, codebook_size=16).eval()
    x = _music(0.2)
    want = tok.encode(x.half().float()).ids
    assert torch.equal(tok.encode_clips([x[0].half()])[0].ids, want)
    assert torch.equal(tok.encode(x.bfloat16()).ids, tok.encode(x.bfloat16().float()).ids)
