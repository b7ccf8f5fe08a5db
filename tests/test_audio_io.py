"""Tests of mmtok.audio.io: errors name the path, round trips, resampling, channels, blocks.

All media is generated in tmp_path (WAV / FLAC / OGG with soundfile, M4A / MP4 / MKV with
PyAV's AAC encoder); nothing is downloaded.
"""

from __future__ import annotations

import math
import re
import warnings
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio.functional as AF

from mmtok.audio.io import (
    AudioClip,
    ClippingWarning,
    audio_info,
    iter_audio_blocks,
    load_audio,
    save_audio,
)
from mmtok.errors import InputError

SR = 44100
HAS_AAC = "aac" in av.codecs_available


def noise(channels: int = 1, frames: int = SR, amp: float = 0.2, seed: int = 0) -> np.ndarray:
    """float32 [C, F] band-limited-ish noise well inside [-1, 1]."""
    x = np.random.default_rng(seed).standard_normal((channels, frames)) * amp
    return x.clip(-0.9, 0.9).astype(np.float32)


def sine(frames: int = SR, freq: float = 440.0, amp: float = 0.4, sr: int = SR) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * freq * np.arange(frames) / sr)).astype(np.float32)[None]


def write_sf(path: Path, x: np.ndarray, sr: int = SR, subtype: str | None = None) -> Path:
    sf.write(str(path), x.T, sr, subtype=subtype)
    return path


def write_av(path: Path, x: np.ndarray, sr: int = SR, codec: str = "aac") -> Path:
    """Encode float32 [C, F] into a container with PyAV."""
    layout = "mono" if x.shape[0] == 1 else "stereo"
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=sr, layout=layout)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(x), format="fltp", layout=layout)
        frame.sample_rate, frame.pts = sr, 0
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    return path


def assert_input_error(fn, path: Path, *args, **kwargs) -> InputError:
    with pytest.raises(InputError) as info:
        fn(path, *args, **kwargs)
    assert str(path) in str(info.value)
    return info.value


def read_blocks(path: Path, *args) -> list[torch.Tensor]:
    return list(iter_audio_blocks(path, *args))


# ---------------------------------------------------------------- errors


def _truncate(path: Path, keep: float = 0.5) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def _text(path: Path, text: str = "not audio\n" * 50) -> Path:
    path.write_text(text)
    return path


def _folder(path: Path) -> Path:
    path.mkdir()
    return path


BAD_FILES = {
    "missing": lambda d: d / "nope.wav",
    "zero_bytes": lambda d: _text(d / "empty.wav", ""),
    "zero_frames": lambda d: write_sf(d / "z.wav", np.zeros((1, 0), np.float32)),
    "truncated_wav": lambda d: _truncate(write_sf(d / "t.wav", noise(), subtype="PCM_16")),
    "truncated_flac": lambda d: _truncate(write_sf(d / "t.flac", noise(), subtype="PCM_16")),
    "text_wav": lambda d: _text(d / "x.wav"),
    "text_mp3": lambda d: _text(d / "x.mp3"),
    "text_flac": lambda d: _text(d / "x.flac"),
    "text_m4a": lambda d: _text(d / "x.m4a"),
    "nan_float_wav": lambda d: write_sf(
        d / "n.wav", np.full((1, 100), np.nan, np.float32), subtype="FLOAT"
    ),
    "inf_float_wav": lambda d: write_sf(
        d / "i.wav", np.full((1, 100), np.inf, np.float32), subtype="FLOAT"
    ),
    "source_rate_too_high": lambda d: write_sf(d / "hi.wav", noise(frames=100), sr=1_000_000),
    "folder": lambda d: _folder(d / "dir.wav"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_file_raises_input_error_naming_path(tmp_path: Path, case: str) -> None:
    path = BAD_FILES[case](tmp_path)
    assert_input_error(load_audio, path, 16000)
    assert_input_error(read_blocks, path, 16000, 0.5)  # eagerly or while iterating


@pytest.mark.parametrize("case", ["missing", "zero_bytes", "truncated_wav", "text_wav"])
def test_audio_info_bad_file(tmp_path: Path, case: str) -> None:
    assert_input_error(audio_info, BAD_FILES[case](tmp_path))


@pytest.mark.parametrize("rate", [0, -1, 384_001, 16000.5, True])
def test_bad_target_rate(tmp_path: Path, rate) -> None:
    path = write_sf(tmp_path / "a.wav", noise())
    assert_input_error(load_audio, path, rate)
    assert_input_error(iter_audio_blocks, path, rate, 1.0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"channels": "stereo"},
        {"channels": 0},
        {"channels": True},
        {"channels": 3},  # stereo file -> 3 channels is not a defined policy
        {"offset_s": -1.0},
        {"offset_s": math.nan},
        {"offset_s": 5.0},  # past the end of a 1 s file
        {"duration_s": 0.0},
        {"duration_s": 1e-7},  # rounds to zero frames
    ],
)
def test_bad_load_arguments(tmp_path: Path, kwargs: dict) -> None:
    path = write_sf(tmp_path / "s.wav", noise(2))
    assert_input_error(load_audio, path, SR, **kwargs)


def test_bad_block_s_and_rate_pair(tmp_path: Path) -> None:
    path = write_sf(tmp_path / "s.wav", noise())
    assert_input_error(iter_audio_blocks, path, SR, 0.0)
    assert_input_error(iter_audio_blocks, path, SR, math.inf)
    err = assert_input_error(load_audio, path, SR + 1)  # gcd 1: kernel would be ~8 GB
    assert "common" in str(err)


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize(
    "suffix,subtype,atol",
    [
        (".wav", "PCM_16", 1 / 32768),
        (".wav", "PCM_24", 1 / 2**23),
        (".wav", "FLOAT", 0.0),
        (".flac", "PCM_16", 1 / 32768),
        (".flac", "PCM_24", 1 / 2**23),
    ],
)
def test_save_load_round_trip(tmp_path: Path, suffix: str, subtype: str, atol: float) -> None:
    x = torch.from_numpy(noise(2, 12345))
    path = tmp_path / f"rt{suffix}"
    assert save_audio(path, x, SR, subtype=subtype) == 0
    info = audio_info(path)
    assert info == {"sample_rate": SR, "channels": 2, "frames": 12345, "duration_s": 12345 / SR}
    clip = load_audio(path, SR, "keep")
    assert isinstance(clip, AudioClip)
    assert clip.samples.dtype == torch.float32 and clip.samples.shape == (2, 12345)
    assert (clip.sample_rate, clip.source_sample_rate, clip.path) == (SR, SR, str(path))
    assert clip.clipped_fraction == 0.0
    torch.testing.assert_close(clip.samples, x, atol=atol + 1e-7, rtol=0)


def test_save_accepts_1d_and_numpy(tmp_path: Path) -> None:
    save_audio(tmp_path / "m.wav", noise()[0], 16000)
    assert audio_info(tmp_path / "m.wav")["channels"] == 1
    save_audio(tmp_path / "t.wav", torch.from_numpy(noise()[0]), 16000, subtype="FLOAT")
    assert load_audio(tmp_path / "t.wav", 16000).samples.shape == (1, SR)


def test_ogg_vorbis_read_with_soundfile(tmp_path: Path) -> None:
    x = sine(16000, sr=16000)
    path = write_sf(tmp_path / "a.ogg", x, sr=16000)
    clip = load_audio(path, 16000)
    assert clip.samples.shape == (1, 16000)
    err = clip.samples - torch.from_numpy(x)
    assert float(err.pow(2).mean() / torch.from_numpy(x).pow(2).mean()) < 0.01  # > 20 dB SNR


@pytest.mark.skipif(not HAS_AAC, reason="PyAV build without an AAC encoder")
@pytest.mark.parametrize("suffix", [".m4a", ".mp4", ".mkv"])
def test_container_audio_track_round_trip(tmp_path: Path, suffix: str) -> None:
    x = np.concatenate([sine(SR), sine(SR, freq=660.0, amp=0.2)])  # [2, F]
    path = write_av(tmp_path / f"a{suffix}", x)
    info = audio_info(path)
    assert (info["sample_rate"], info["channels"]) == (SR, 2)
    assert abs(info["frames"] - SR) <= 2048  # mkv states the container duration only
    clip = load_audio(path, SR, "keep")
    assert clip.samples.shape[0] == 2 and SR <= clip.samples.shape[1] <= SR + 2048
    if suffix != ".mkv":  # mp4 states the track length: decoder padding is cut
        assert clip.samples.shape[1] == SR
    got, ref = clip.samples[:, 2048 : SR - 2048], torch.from_numpy(x)[:, 2048 : SR - 2048]
    snr = 10 * math.log10(float(ref.pow(2).mean() / (got - ref).pow(2).mean()))
    assert snr > 20, snr
    mono = load_audio(path, 16000, "mono", offset_s=0.25, duration_s=0.5)
    assert mono.samples.shape == (1, 8000) and mono.source_sample_rate == SR


@pytest.mark.skipif(not HAS_AAC, reason="PyAV build without an AAC encoder")
def test_container_blocks(tmp_path: Path) -> None:
    path = write_av(tmp_path / "a.m4a", sine(SR))
    blocks = list(iter_audio_blocks(path, 16000, 0.3))
    assert [b.shape[1] for b in blocks] == [4800, 4800, 4800, 1600]
    torch.testing.assert_close(torch.cat(blocks, 1), load_audio(path, 16000).samples)


# ---------------------------------------------------------------- resampling and channels


@pytest.mark.parametrize("src,dst", [(44100, 16000), (16000, 24000), (48000, 44100)])
def test_resample_matches_torchaudio(tmp_path: Path, src: int, dst: int) -> None:
    x = noise(1, src)
    path = write_sf(tmp_path / "a.wav", x, sr=src, subtype="FLOAT")
    clip = load_audio(path, dst)
    ref = AF.resample(torch.from_numpy(x), src, dst)
    assert clip.source_sample_rate == src and clip.sample_rate == dst
    torch.testing.assert_close(clip.samples, ref, atol=1e-6, rtol=0)
    assert clip.duration_s == pytest.approx(1.0, abs=1e-3)


def test_channel_policies(tmp_path: Path) -> None:
    st = noise(2, 1000)
    stereo = write_sf(tmp_path / "s.wav", st, subtype="FLOAT")
    mono = write_sf(tmp_path / "m.wav", st[:1], subtype="FLOAT")
    ref = torch.from_numpy(st)
    torch.testing.assert_close(load_audio(stereo, SR).samples, ref.mean(0, keepdim=True))
    torch.testing.assert_close(load_audio(stereo, SR, "keep").samples, ref)
    torch.testing.assert_close(load_audio(stereo, SR, 2).samples, ref)
    torch.testing.assert_close(load_audio(mono, SR, 3).samples, ref[:1].repeat(3, 1))
    torch.testing.assert_close(load_audio(mono, SR, "keep").samples, ref[:1])
    assert_input_error(load_audio, stereo, SR, 1)
    assert_input_error(load_audio, stereo, SR, 4)


def test_offset_and_duration(tmp_path: Path) -> None:
    x = noise(1, SR)
    path = write_sf(tmp_path / "a.wav", x, subtype="FLOAT")
    clip = load_audio(path, SR, offset_s=0.25, duration_s=0.5)
    torch.testing.assert_close(clip.samples, torch.from_numpy(x[:, 11025:33075]))
    tail = load_audio(path, SR, offset_s=0.75, duration_s=10.0)  # cut at the end
    assert tail.samples.shape == (1, SR - 33075)


# ---------------------------------------------------------------- clipping


def test_clipping_reported_not_hidden(tmp_path: Path) -> None:
    x = np.zeros((1, 1000), np.float32)
    x[0, :10], x[0, 10:20], x[0, 20:25] = 1.5, -1.0, 0.999
    path = write_sf(tmp_path / "c.wav", x, subtype="FLOAT")
    with pytest.warns(ClippingWarning, match=re.escape(str(path))):
        clip = load_audio(path, SR)
    assert clip.clipped_fraction == pytest.approx(20 / 1000)
    assert float(clip.samples.abs().max()) == 1.0


def test_int_full_scale_counts_as_clipped(tmp_path: Path) -> None:
    x = np.zeros((1, 100), np.int16)
    x[0, :3], x[0, 3:5], x[0, 5] = 32767, -32768, 32766
    path = tmp_path / "i.wav"
    sf.write(str(path), x.T, SR, subtype="PCM_16")
    with pytest.warns(ClippingWarning, match=re.escape(str(path))):
        assert load_audio(path, SR).clipped_fraction == pytest.approx(5 / 100)


def test_clean_file_no_warning(tmp_path: Path) -> None:
    path = write_sf(tmp_path / "a.wav", noise(2))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_audio(path, 16000).clipped_fraction == 0.0
        list(iter_audio_blocks(path, 16000, 0.2))


def test_save_clamps_and_counts(tmp_path: Path) -> None:
    x = torch.zeros(2, 100)
    x[0, :7], x[1, :3] = 1.25, -3.0
    path = tmp_path / "c.flac"
    with pytest.warns(ClippingWarning, match=re.escape(str(path))):
        assert save_audio(path, x, 16000) == 10
    with pytest.warns(ClippingWarning):  # the file now holds full-scale samples
        y = load_audio(path, 16000, "keep").samples
    assert float(y.max()) <= 1.0 and float(y.min()) == -1.0


# ---------------------------------------------------------------- atomic writes


def test_save_errors_leave_nothing(tmp_path: Path) -> None:
    x = torch.from_numpy(noise())
    assert_input_error(save_audio, tmp_path / "no_such_dir" / "a.wav", x, SR)
    assert_input_error(save_audio, tmp_path / "a.mp3", x, SR)
    assert_input_error(save_audio, tmp_path / "a.flac", x, SR, subtype="FLOAT")
    assert_input_error(save_audio, tmp_path / "a.wav", x, 0)
    assert_input_error(save_audio, tmp_path / "a.wav", torch.full((1, 10), math.nan), SR)
    assert_input_error(save_audio, tmp_path / "a.wav", torch.zeros(1, 2, 3), SR)
    assert_input_error(save_audio, tmp_path / "a.wav", torch.zeros(1, 0), SR)
    assert list(tmp_path.iterdir()) == []


def test_failure_mid_write_leaves_no_file(tmp_path: Path, monkeypatch) -> None:
    def half_write(file, data, samplerate, **kwargs):
        Path(file).write_bytes(b"RIFF" + b"\0" * 100)  # a partial file, then the disk fails
        raise OSError("disk full")

    monkeypatch.setattr(sf, "write", half_write)
    path = tmp_path / "a.wav"
    with pytest.raises(OSError, match="disk full"):
        save_audio(path, torch.from_numpy(noise()), SR)
    assert list(tmp_path.iterdir()) == []


def test_failed_overwrite_keeps_old_file(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "a.wav"
    save_audio(path, torch.from_numpy(noise()), SR)
    before = path.read_bytes()

    def failing_write(file, *args, **kwargs):
        raise sf.LibsndfileError(0, prefix="simulated: ")

    monkeypatch.setattr(sf, "write", failing_write)
    assert_input_error(save_audio, path, torch.from_numpy(noise(seed=1)), SR)
    assert path.read_bytes() == before and list(tmp_path.iterdir()) == [path]


# ---------------------------------------------------------------- streaming reader


@pytest.mark.parametrize(
    "src,dst,block_s,channels",
    [
        (44100, 16000, 0.37, "mono"),
        (44100, 24000, 0.5, "keep"),
        (22050, 48000, 0.1, 2),
        (48000, 44100, 1.0, "mono"),
        (16000, 16000, 0.25, "keep"),
    ],
)
def test_blocks_equal_whole_file(tmp_path: Path, src, dst, block_s, channels) -> None:
    frames = int(2.3 * src) + 17
    path = write_sf(tmp_path / "a.flac", noise(2, frames), sr=src, subtype="PCM_24")
    blocks = list(iter_audio_blocks(path, dst, block_s, channels))
    whole = load_audio(path, dst, channels).samples
    assert len(blocks) > 2 and all(b.shape[1] == blocks[0].shape[1] for b in blocks[:-1])
    assert abs(blocks[0].shape[1] - block_s * dst) <= dst / math.gcd(src, dst)
    assert torch.equal(torch.cat(blocks, 1), whole)  # bit for bit (io._resample)


def test_blocks_do_not_read_whole_file(tmp_path: Path, monkeypatch) -> None:
    path = write_sf(tmp_path / "a.wav", noise(1, 4 * SR))
    sizes: list[int] = []
    real_read = sf.SoundFile.read

    def spy(self, frames=-1, *args, **kwargs):
        sizes.append(frames)
        return real_read(self, frames, *args, **kwargs)

    monkeypatch.setattr(sf.SoundFile, "read", spy)
    list(iter_audio_blocks(path, 16000, 0.5))
    assert len(sizes) >= 8 and max(sizes) < SR  # ~0.5 s plus margins per read


def test_blocks_warn_on_clipping(tmp_path: Path) -> None:
    x = noise(1, SR)
    x[0, 100:200] = 1.0
    path = write_sf(tmp_path / "c.wav", x, subtype="FLOAT")
    with pytest.warns(ClippingWarning, match=re.escape(str(path))):
        list(iter_audio_blocks(path, 16000, 0.2))
