"""Channels kept and long files streamed: per-channel coding with a mono tokenizer, Tokens that
record the layout and the source, streamed ids == one-pass ids, the CLI's stereo round trip."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import save_file

from mmtok.audio.io import load_audio
from mmtok.audio.stream import encode_blocks, encode_file
from mmtok.audio.tokenizer import audio_tokenizer
from mmtok.cli import main
from mmtok.errors import InputError
from mmtok.tokens import Tokens

SR = 44100


def _tiny(channels: int = 1, sample_rate: int = SR, hop: int = 32):
    """A tiny residual-VQ level (Q = 2) after one training forward (k-means init)."""
    torch.manual_seed(0)
    tok = audio_tokenizer(hop=hop, width=4, latent_dim=8, res_depth=2, quantizer="rvq",
                          codebook_size=32, num_quantizers=2, sample_rate=sample_rate,
                          channels=channels)  # fmt: skip
    tok.train()
    tok(_stereo(0.3, seed=9)[:, :channels].repeat(2, 1, 1))
    return tok.eval()


def _stereo(seconds: float, sr: int = SR, seed: int = 0) -> torch.Tensor:
    """``[1, 2, T]``: different tones and noise left and right."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(round(seconds * sr)) / sr
    left = 0.3 * torch.sin(2 * math.pi * 220 * t + 2 * torch.sin(2 * math.pi * 3 * t))
    right = 0.3 * torch.sin(2 * math.pi * 331 * t) * torch.exp(-4 * (t % 0.7))
    x = torch.stack([left, right]) + 0.05 * torch.randn(2, t.numel(), generator=g)
    return x.clamp(-0.99, 0.99)[None]


def _write(path: Path, x: torch.Tensor, sr: int, subtype: str = "PCM_16") -> Path:
    sf.write(str(path), x[0].T.numpy(), sr, subtype=subtype)
    return path


# --- per-channel coding ------------------------------------------------------------------
def test_mono_tokenizer_codes_each_channel_alone():
    tok = _tiny()
    x = torch.cat([_stereo(0.5, seed=1), _stereo(0.5, seed=2)])  # [2, 2, T]
    tokens = tok.encode(x, window=16)
    t = math.ceil(x.shape[-1] / tok.hop)
    assert tokens.ids.shape == (2, 2 * 2, t) and tokens.channels == 2
    assert tokens.num_codebooks == 2 and tokens.flatten().shape == (2, 4 * t)
    for b in range(2):
        for c in range(2):
            alone = tok.encode(x[b : b + 1, c : c + 1], window=10**9).ids
            assert torch.equal(tokens.ids[b : b + 1, 2 * c : 2 * c + 2], alone), (b, c)
    assert torch.equal(tokens.unflatten(tokens.flatten()).ids, tokens.ids)
    y = tok.decode(tokens)
    assert y.shape == x.shape
    assert torch.allclose(y[1:, 1:], tok.decode(tok.encode(x[1:, 1:])), atol=1e-6)
    clips = tok.encode_clips([x[0], x[1, :1, :1000]])
    assert torch.equal(clips[0].ids, tokens.ids[:1]) and clips[0].channels == 2
    assert clips[1].channels == 1 and clips[1].input_size == (1000,)


def test_joint_stereo_model_is_unchanged():
    tok = _tiny(channels=2)
    x = _stereo(0.4)
    tokens = tok.encode(x)
    assert tokens.channels == 1 and tokens.ids.shape[1] == 2  # Q streams cover both channels
    assert tok.decode(tokens).shape == x.shape
    with pytest.raises(InputError, match=r"\[B, 2"):
        tok.encode(x[:, :1])


def test_tokens_file_records_layout_and_source_and_reads_old_files(tmp_path):
    tok = _tiny()
    tokens = tok.encode(_stereo(0.2))
    tokens.source_sample_rate, tokens.source_channels = 48000, 2
    tokens.save(tmp_path / "t.safetensors")
    back = Tokens.load(tmp_path / "t.safetensors")
    assert (back.channels, back.source_sample_rate, back.source_channels) == (2, 48000, 2)
    assert torch.equal(back.ids, tokens.ids)
    # a file as mmtok wrote it before these fields: loads with channels 1, source unknown
    old = {"format": "mmtok.tokens/1", "input_size": json.dumps([6615]), "codebook_size": "32",
           "modality": "audio", "tokenizer_id": tok.fingerprint()}  # fmt: skip
    save_file({"ids": tokens.ids[:, :2].contiguous()}, str(tmp_path / "old.safetensors"), old)
    legacy = Tokens.load(tmp_path / "old.safetensors")
    assert (legacy.channels, legacy.source_sample_rate, legacy.source_channels) == (1, 0, 0)
    assert tok.decode(legacy).shape == (1, 1, 6615)
    with pytest.raises(InputError, match="channels=3"):
        Tokens(tokens.ids, (10,), 32, "audio", channels=3)


# --- streaming ---------------------------------------------------------------------------
def test_streamed_ids_equal_one_pass_on_a_3_minute_stereo_file(tmp_path):
    tok = _tiny()
    x = _stereo(180.0)  # 7.9 M samples per channel
    path = _write(tmp_path / "long.wav", x, SR)
    streamed = encode_file(tok, path, block_s=7.3)
    samples = load_audio(path, SR, "keep").samples[None]  # [1, 2, T], the file as read whole
    one_pass = tok.encode(samples, window=10**9)
    assert streamed.ids.shape == (1, 4, math.ceil(x.shape[-1] / tok.hop))
    assert torch.equal(streamed.ids, one_pass.ids)
    assert streamed.input_size == one_pass.input_size == (x.shape[-1],)
    assert (streamed.source_sample_rate, streamed.source_channels) == (SR, 2)


@pytest.mark.parametrize("file_rate", [48000, 22050])
def test_streamed_ids_equal_one_pass_when_the_file_is_resampled(tmp_path, file_rate):
    tok = _tiny()
    path = _write(tmp_path / "a.flac", _stereo(20.0, sr=file_rate), file_rate)
    streamed = encode_file(tok, path, block_s=1.1)
    one_pass = tok.encode(load_audio(path, SR, "keep").samples[None], window=10**9)
    assert torch.equal(streamed.ids, one_pass.ids)
    assert streamed.source_sample_rate == file_rate
    mono = encode_file(tok, path, channels="mono", block_s=2.0)
    assert mono.channels == 1 and mono.source_channels == 2
    assert torch.equal(mono.ids, tok.encode(load_audio(path, SR, "mono").samples[None]).ids)


@pytest.mark.parametrize("block", [7, 37, 4096, 10**6])
def test_encode_blocks_any_block_size(block):
    tok = _tiny(hop=8)
    x = _stereo(2.0)[0, :, :70001]
    ref = tok.encode(x[None], window=10**9)
    got = encode_blocks(tok, x.split(block, 1), window=16 if block < 100 else None)
    assert torch.equal(got.ids, ref.ids) and got.input_size == (70001,)


def test_stream_memory_is_bounded_by_the_window():
    """No encoder call and no buffered span grows with the length of the stream."""
    tok = _tiny()
    tok.window_samples, tok.batch_samples = 8192, 32768
    seen = []
    tok.encoder.register_forward_pre_hook(lambda m, args: seen.append(args[0].numel()))
    peaks = []
    for seconds in (5.0, 40.0):
        seen.clear()
        encode_blocks(tok, _stereo(seconds)[0].split(SR, 1))
        peaks.append(max(seen))
    bound = tok.batch_samples + 2 * (8192 + 2 * tok.receptive_field + 2 * tok.hop)
    assert peaks[0] == peaks[1] <= bound


def test_stream_errors(tmp_path):
    tok = _tiny()
    with pytest.raises(InputError, match="no audio"):
        encode_blocks(tok, [])
    with pytest.raises(InputError, match=r"blocks\[1\]: 1 channels, the blocks before had 2"):
        encode_blocks(tok, [torch.zeros(2, 5000), torch.zeros(1, 5000)])
    with pytest.raises(InputError, match=r"blocks\[0\]"):
        encode_blocks(tok, [torch.full((1, 100), float("nan"))])
    path = _write(tmp_path / "s.wav", _stereo(0.2), SR)
    with pytest.raises(InputError, match="needs a mono tokenizer"):
        encode_file(_tiny(channels=2), path, channels="mono")
    with pytest.raises(InputError, match="channels"):
        encode_file(tok, path, channels="left")


# --- the command line --------------------------------------------------------------------
def _run(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("file_rate", [SR, 48000])
def test_cli_stereo_round_trip_keeps_channels_and_rate(tmp_path, capsys, file_rate):
    tok = _tiny(sample_rate=22050)
    tok.save_pretrained(tmp_path / "ckpt")
    x = _stereo(3.0, sr=file_rate)
    song = _write(tmp_path / "song_stereo.wav", x, file_rate)
    code, out, err = _run(capsys, "encode", song, "-o", tmp_path / "x.tokens.safetensors",
                          "--preset", tmp_path / "ckpt")  # fmt: skip
    assert code == 0, err
    assert "x 2 channels" in out
    tokens = Tokens.load(tmp_path / "x.tokens.safetensors")
    assert tokens.channels == 2 and tokens.source_sample_rate == file_rate
    for c in range(2):  # each channel's ids == a mono encode of that channel alone
        alone = tok.encode(load_audio(song, 22050, "keep").samples[None, c : c + 1]).ids
        assert torch.equal(tokens.ids[:, 2 * c : 2 * c + 2], alone), c
    code, _, err = _run(capsys, "decode", tmp_path / "x.tokens.safetensors",
                        "-o", tmp_path / "out.wav")  # fmt: skip
    assert code == 0, err
    info = sf.info(str(tmp_path / "out.wav"))
    assert (info.channels, info.samplerate, info.frames) == (2, file_rate, x.shape[-1])
    assert not torch.equal(tokens.ids[:, :2], tokens.ids[:, 2:])  # two channels, not a copy
    y, _ = sf.read(str(tmp_path / "out.wav"), dtype="float32")
    assert np.abs(y[:, 0] - y[:, 1]).max() > 0


def test_cli_mono_option_mixes_down(tmp_path, capsys):
    tok = _tiny()
    tok.save_pretrained(tmp_path / "ckpt")
    song = _write(tmp_path / "song.wav", _stereo(1.0), SR)
    code, _, err = _run(capsys, "encode", song, "-o", tmp_path / "m.tokens.safetensors",
                        "--preset", tmp_path / "ckpt", "--mono")  # fmt: skip
    assert code == 0, err
    tokens = Tokens.load(tmp_path / "m.tokens.safetensors")
    assert (tokens.channels, tokens.source_channels) == (1, 2)
    assert _run(capsys, "decode", tmp_path / "m.tokens.safetensors", "-o",
                tmp_path / "m.wav")[0] == 0  # fmt: skip
    assert sf.info(str(tmp_path / "m.wav")).channels == 1


# --- dataset prep ------------------------------------------------------------------------
def test_prep_rows_carry_the_source_rate_and_channels(tmp_path, monkeypatch):
    from mmtok.data import PrepJob, run_prep, shards

    _tiny(sample_rate=22050).save_pretrained(tmp_path / "ckpt")
    (tmp_path / "media").mkdir()
    _write(tmp_path / "media" / "song.wav", _stereo(0.5, sr=48000), 48000)
    written = []
    writer = shards.WRITERS["parquet"]

    def capture(path, rows, dtype):
        written.extend(rows)
        writer(path, rows, dtype)

    monkeypatch.setitem(shards.WRITERS, "parquet", capture)
    job = PrepJob([str(tmp_path / "media")], str(tmp_path / "out"),
                  {"audio": str(tmp_path / "ckpt")}, workers=0)  # fmt: skip
    run_prep(job)
    (row,) = written
    assert row["source_sample_rate"] == [48000] and row["source_channels"] == [2]
    assert row["input_size"] == [11025]  # read as the tokenizer reads: mono at 22.05 kHz
