"""The Tokenizer contract, parametrised over modalities (tiny configs)."""

from __future__ import annotations

import pytest
import torch

from mmtok.audio.tokenizer import audio_tokenizer
from mmtok.errors import InputError
from mmtok.image.tokenizer import image_tokenizer
from mmtok.tokens import Tokens
from mmtok.video.tokenizer import video_tokenizer


def _image(quantizer="vq"):
    torch.manual_seed(0)
    return image_tokenizer(downsample=4, hidden=8, latent_dim=8, codebook_size=32,
                           quantizer=quantizer, num_quantizers=3)  # fmt: skip


def _video(quantizer="vq", causal=False):
    torch.manual_seed(0)
    return video_tokenizer(downsample=(2, 2, 2), hidden=8, latent_dim=8, codebook_size=32,
                           quantizer=quantizer, num_quantizers=3, causal=causal,
                           clip_frames=5 if causal else 4)  # fmt: skip


def _audio(quantizer="vq", channels=1):
    torch.manual_seed(0)
    return audio_tokenizer(hop=8, width=4, latent_dim=8, res_depth=2, codebook_size=32,
                           quantizer=quantizer, num_quantizers=3, channels=channels)  # fmt: skip


TOKENIZERS = {
    "image-vq": (_image, (3, 21, 30)),
    "image-rvq": (lambda: _image("rvq"), (3, 17, 16)),
    "image-fsq": (lambda: _image("fsq"), (3, 9, 13)),
    "video-vq": (_video, (3, 11, 9, 7)),  # 2.75 clips of 4 frames
    "video-rvq-causal": (lambda: _video("rvq", causal=True), (3, 8, 6, 5)),
    "audio-vq": (_audio, (1, 1001)),  # not a multiple of the hop
    "audio-rvq-stereo": (lambda: _audio("rvq", channels=2), (2, 517)),
    "audio-fsq": (lambda: _audio("fsq"), (1, 300)),
}


def _warm(tok, shape):
    """One training forward so data-dependent codebooks are initialised."""
    tok.train()
    tok(torch.rand(4, *shape) * 2 - 1)
    return tok.eval()


@pytest.fixture(params=sorted(TOKENIZERS))
def case(request):
    factory, shape = TOKENIZERS[request.param]
    return _warm(factory(), shape), shape


def test_ids_dtype_range_and_shapes(case):
    tok, shape = case
    x = torch.rand(3, *shape) * 2 - 1
    tokens = tok.encode(x)
    assert tokens.ids.dtype == torch.int64
    assert tokens.ids.shape == (3, tok.num_codebooks, *tok.token_grid(x.shape))
    assert 0 <= int(tokens.ids.min()) and int(tokens.ids.max()) < tok.codebook_size
    assert tok.decode(tokens).shape == x.shape  # awkward sizes are padded and cropped back


def test_batched_equals_per_sample(case):
    tok, shape = case
    x = torch.rand(5, *shape) * 2 - 1
    batched = tok.encode(x).ids
    for i in range(5):
        assert torch.equal(tok.encode(x[i : i + 1]).ids, batched[i : i + 1])


def test_eval_determinism_and_no_state_change(case):
    tok, shape = case
    x = torch.rand(2, *shape) * 2 - 1
    before = {k: v.clone() for k, v in tok.state_dict().items()}
    tok.train()  # encode must not update codebooks even when the module is in train mode
    a = tok.encode(x).ids
    b = tok.encode(x).ids
    assert torch.equal(a, b)
    for k, v in tok.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_encode_runs_the_ids_only_path(case, monkeypatch):
    """encode takes the quantizer's ids-only path: the ids of its full forward, and no usage
    counted (inference has no side effect on the codebook statistics)."""
    tok, shape = case
    x = torch.rand(3, *shape) * 2 - 1
    tok.quantizer.reset_usage()
    ids = tok.encode(x).ids
    assert all(int(h.sum()) == 0 for h in tok.quantizer.usage_histograms().values())
    full = tok.quantizer.forward
    monkeypatch.setattr(tok.quantizer, "encode", lambda z, n_q=None: full(z, n_q=n_q).ids)
    assert torch.equal(tok.encode(x).ids, ids)
    counted = sum(int(h.sum()) for h in tok.quantizer.usage_histograms().values())
    assert counted >= ids.numel()  # forward counts (audio: also the rows padded to 16)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_any_float_dtype_is_cast_to_the_model_dtype(case, dtype):
    tok, shape = case
    x = (torch.rand(2, *shape) * 2 - 1).to(dtype)
    tokens = tok.encode(x)
    assert torch.equal(tokens.ids, tok.encode(x.float()).ids)
    assert tok.decode(tokens).dtype == torch.float32


@pytest.mark.parametrize("dtype", [torch.int16, torch.uint8, torch.bool])
def test_non_float_input_raises_input_error_naming_the_dtype(case, dtype):
    tok, shape = case
    with pytest.raises(InputError, match=str(dtype)):
        tok.encode(torch.zeros(1, *shape, dtype=dtype))


def test_save_load_bit_identical(case, tmp_path):
    tok, shape = case
    x = torch.rand(2, *shape) * 2 - 1
    tokens = tok.encode(x)
    tok.save_pretrained(tmp_path / "ckpt")
    loaded = type(tok).from_pretrained(tmp_path / "ckpt")
    again = loaded.encode(x)
    assert torch.equal(again.ids, tokens.ids)
    assert again.tokenizer_id == tokens.tokenizer_id
    assert torch.equal(loaded.decode(tokens), tok.decode(tokens))


def test_flatten_unflatten_raster_order(case):
    tok, shape = case
    tokens = tok.encode(torch.rand(2, *shape) * 2 - 1)
    flat = tokens.flatten()
    q, grid = tokens.num_codebooks, tokens.grid
    # independent raster-order walk: positions in row-major grid order, Q codes adjacent
    walk = torch.tensor([
        [tokens.ids[(b, j, *pos)].item() for pos in _raster(grid) for j in range(q)]
        for b in range(2)
    ])  # fmt: skip
    assert torch.equal(flat, walk)
    assert torch.equal(tokens.unflatten(flat).ids, tokens.ids)


def _raster(grid):
    import itertools

    return list(itertools.product(*[range(g) for g in grid]))


def test_token_file_round_trip_and_refusal(case, tmp_path):
    tok, shape = case
    x = torch.rand(1, *shape) * 2 - 1
    tokens = tok.encode(x)
    tokens.save(tmp_path / "t.safetensors")
    loaded = Tokens.load(tmp_path / "t.safetensors")
    assert torch.equal(loaded.ids, tokens.ids) and loaded.input_size == tokens.input_size
    assert torch.equal(tok.decode(loaded), tok.decode(tokens))
    import copy

    other = copy.deepcopy(tok)  # same modality and shapes, other weights (set below)
    with torch.no_grad():
        next(other.parameters()).add_(1.0)
    other._fingerprint = None
    from mmtok.errors import InputError

    with pytest.raises(InputError, match="made by tokenizer"):
        other.decode(loaded)
