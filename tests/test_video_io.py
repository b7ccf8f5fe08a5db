"""Tests of mmtok.video.io on small videos generated with PyAV in tmp_path.

Frames of the "indexed" videos are flat grey levels 20 + 3 * i, so a decoded frame tells
which source frame it was (``_ids``).
"""

from __future__ import annotations

import math
from fractions import Fraction

import av
import numpy as np
import pytest
import torch

import mmtok.video.io as vio
from mmtok.errors import InputError
from mmtok.video.io import Clip, iter_clips, load_video, save_video, video_info

FPS = 30
N = 60  # frames of the indexed video (2 s at 30 fps)


def _write(path, levels, fps=FPS, pts=None, gop=10, noise=False, faststart=True):
    """Encode flat frames of the given grey levels (or noise) with libx264, optional pts."""
    opts = {"movflags": "+faststart"} if faststart else {}
    rng = np.random.default_rng(0)
    with av.open(str(path), "w", format="mp4", options=opts) as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.options = {"g": str(gop), "crf": "18"}
        for i, level in enumerate(levels):
            a = np.full((48, 64, 3), level, np.uint8)
            if noise:
                a = rng.integers(0, 256, a.shape, dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(a, format="rgb24")
            if pts is not None:
                frame.pts, frame.time_base = pts[i], Fraction(1, fps)
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return path


def _levels(n):
    return [20 + 3 * i for i in range(n)]


def _ids(x: torch.Tensor) -> list[int]:
    """Source frame index of each frame of x [3, T, H, W] from its mean grey level."""
    means = ((x + 1) * 127.5).mean(dim=(0, 2, 3))
    return [round((m.item() - 20) / 3) for m in means]


def _nearest(src_times, targets):
    """Slow reference: index of the nearest source time for each target, ties to the earlier."""
    return [min(range(len(src_times)), key=lambda j: (abs(src_times[j] - t), j)) for t in targets]


def _smooth(t=24, h=48, w=64):
    tt = torch.arange(t).float()[:, None, None]
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    r = torch.sin(2 * xx + 0.1 * tt)
    g = torch.cos(2 * yy - 0.05 * tt)
    b = 0.5 * torch.sin(3 * xx * yy + 0.02 * tt)
    return 0.8 * torch.stack([r, g, b])  # [3, T, H, W]


def _psnr(a, b):
    return 10 * math.log10(4.0 / ((a - b) ** 2).mean().item())


@pytest.fixture(scope="module")
def indexed(tmp_path_factory):
    return _write(tmp_path_factory.mktemp("v") / "indexed.mp4", _levels(N))


@pytest.fixture(scope="module")
def vfr(tmp_path_factory):
    pts = [0, 1, 2, 4, 5, 8, 9, 10, 14, 15] + list(range(16, 66))
    return _write(tmp_path_factory.mktemp("v") / "vfr.mp4", _levels(N), pts=pts), pts


# ---------------------------------------------------------------- save / round trip


def test_round_trip_smooth_video(tmp_path):
    x = _smooth()
    path = tmp_path / "smooth.mp4"
    save_video(path, x, fps=24)
    with av.open(str(path)) as c:  # ffprobe-like inspection
        s = c.streams.video[0]
        assert s.codec_context.name == "h264" and s.codec_context.pix_fmt == "yuv420p"
        assert s.frames == 24 and float(s.duration * s.time_base) == pytest.approx(1.0)
    info = video_info(path)
    assert (info.width, info.height, info.frames, info.fps) == (64, 48, 24, 24.0)
    assert info.frames_exact and not info.variable_frame_rate
    assert info.duration_s == pytest.approx(1.0) and info.fps_fraction == Fraction(24)
    y = load_video(path)
    assert y.shape == x.shape and y.dtype == torch.float32
    assert y.min() >= -1 and y.max() <= 1
    assert _psnr(x, y) > 30


def test_save_odd_size_pads_by_repeating_edge(tmp_path):
    x = _smooth(t=6, h=33, w=47)
    save_video(tmp_path / "odd.mp4", x, fps=FPS)
    y = load_video(tmp_path / "odd.mp4")
    assert y.shape == (3, 6, 34, 48)
    assert _psnr(x, y[:, :, :33, :47]) > 30


def test_save_mpeg4_fallback_codec(tmp_path):
    x = _smooth(t=8)
    save_video(tmp_path / "m.mp4", x, fps=FPS, codec="mpeg4")
    assert video_info(tmp_path / "m.mp4").codec == "mpeg4"
    assert _psnr(x, load_video(tmp_path / "m.mp4")) > 30


def test_save_keeps_an_exact_ntsc_rate(tmp_path):
    save_video(tmp_path / "ntsc.mp4", _smooth(t=4), fps=Fraction(30000, 1001))
    info = video_info(tmp_path / "ntsc.mp4")
    assert info.fps_fraction == Fraction(30000, 1001) and info.frames == 4


class _FailingAV:
    """Stand-in for the av module whose VideoFrame.from_ndarray fails on the 3rd frame."""

    def __getattr__(self, name):
        return getattr(av, name)

    class VideoFrame:
        calls = 0

        @classmethod
        def from_ndarray(cls, array, format):
            cls.calls += 1
            if cls.calls == 3:
                raise RuntimeError("disk on fire")
            return av.VideoFrame.from_ndarray(array, format=format)


def test_save_is_atomic(tmp_path, monkeypatch):
    target = tmp_path / "out.mp4"
    target.write_bytes(b"old")
    monkeypatch.setattr(vio, "av", _FailingAV())
    with pytest.raises(RuntimeError, match="disk on fire"):
        save_video(target, _smooth(t=8), fps=FPS)
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]
    assert target.read_bytes() == b"old"


@pytest.mark.parametrize(
    "name, frames, fps",
    [
        ("a.mkv", _smooth(t=2), FPS),
        ("a.mp4", torch.zeros(3, 2, 8), FPS),
        ("a.mp4", torch.zeros(4, 2, 8, 8), FPS),
        ("a.mp4", torch.zeros(3, 2, 8, 8, dtype=torch.uint8), FPS),
        ("a.mp4", torch.full((3, 2, 8, 8), float("nan")), FPS),
        ("a.mp4", _smooth(t=2), 0),
        ("a.mp4", _smooth(t=2), None),
    ],
)
def test_save_rejects_bad_arguments(tmp_path, name, frames, fps):
    with pytest.raises(InputError):
        save_video(tmp_path / name, frames, fps=fps)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- frame rate, seeking


def test_keep_returns_every_frame(indexed):
    assert _ids(load_video(indexed)) == list(range(N))


@pytest.mark.parametrize("fps", [15, 24, 30, 60, 7.5])
def test_resample_picks_nearest_frames(indexed, fps):
    x = load_video(indexed, fps=fps)
    n_out = math.ceil(N / FPS * fps)  # output times k / fps < 2 s
    assert x.shape[1] == n_out
    src = [Fraction(i, FPS) for i in range(N)]
    targets = [Fraction(k) / Fraction(fps) for k in range(n_out)]
    assert _ids(x) == _nearest(src, targets)


def test_seek_range_returns_the_right_frames(indexed, monkeypatch):
    decoded = []
    real = vio._decode_from

    def counting(*args):
        for t, frame in real(*args):
            decoded.append(t)
            yield t, frame

    monkeypatch.setattr(vio, "_decode_from", counting)
    x = load_video(indexed, start_s=1.5, end_s=1.8)
    assert _ids(x) == list(range(45, 54))
    assert min(decoded) >= Fraction(40, FPS)  # started at the keyframe before 1.5 s (gop 10)
    assert len(decoded) < N


def test_seek_with_resampling_and_max_frames(indexed):
    assert _ids(load_video(indexed, fps=15, start_s=0.5, end_s=1.0)) == list(range(15, 30, 2))
    assert _ids(load_video(indexed, start_s=0.1, max_frames=4)) == [3, 4, 5, 6]


def test_size_and_crop(indexed):
    assert load_video(indexed, size=24).shape == (3, N, 24, 32)
    assert load_video(indexed, size=24, crop=(20, 30), max_frames=2).shape == (3, 2, 20, 30)
    assert load_video(indexed, crop=16, max_frames=1).shape == (3, 1, 16, 16)


def test_empty_range_and_bad_arguments(indexed):
    with pytest.raises(InputError, match="indexed.mp4"):
        load_video(indexed, start_s=5.0)
    with pytest.raises(InputError, match="indexed.mp4"):
        load_video(indexed, crop=100)  # larger than the frame
    for kwargs in [{"fps": 0}, {"size": 0}, {"crop": (1, 2, 3)}, {"start_s": 1, "end_s": 0.5}]:
        with pytest.raises(InputError):
            load_video(indexed, **kwargs)
    with pytest.raises(InputError):
        load_video(indexed, max_frames=0)


# ---------------------------------------------------------------- variable frame rate


def test_vfr_detected_and_keep_refused(vfr):
    path, _ = vfr
    assert video_info(path).variable_frame_rate
    with pytest.raises(InputError, match=r"vfr\.mp4.*fps="):
        load_video(path)
    with pytest.raises(InputError, match="vfr.mp4"):
        iter_clips(path, 8)


def test_vfr_resampled_to_constant_rate(vfr):
    path, pts = vfr
    x = load_video(path, fps=FPS)
    targets = [Fraction(k, FPS) for k in range(pts[-1] + 1)]  # last frame lasts 1/30 s
    assert x.shape[1] == len(targets)
    assert _ids(x) == _nearest([Fraction(p, FPS) for p in pts], targets)


# ---------------------------------------------------------------- clips


@pytest.mark.parametrize("kwargs", [{}, {"fps": 24, "size": 24, "crop": 20}])
def test_iter_clips_equals_load_video(indexed, kwargs):
    clips = list(iter_clips(indexed, 16, **kwargs))
    full = load_video(indexed, **kwargs)
    assert all(isinstance(c, Clip) and c.frames.shape[1] == 16 for c in clips)
    assert [c.start for c in clips] == list(range(0, full.shape[1], 16))
    joined = torch.cat([c.frames[:, : c.n_real] for c in clips], dim=1)
    assert torch.equal(joined, full)


def test_iter_clips_streams(indexed, monkeypatch):
    decoded = []
    real = vio._decode_from

    def counting(*args):
        for item in real(*args):
            decoded.append(item)
            yield item

    monkeypatch.setattr(vio, "_decode_from", counting)
    clips = iter_clips(indexed, 8)
    first = next(clips)
    assert first.n_real == 8 and len(decoded) == 8  # one clip decoded, not the whole file
    clips.close()


def test_pad_policies(indexed):
    repeat = list(iter_clips(indexed, 16))  # 60 = 3 * 16 + 12
    assert [c.n_real for c in repeat] == [16, 16, 16, 12]
    last = repeat[-1].frames
    assert torch.equal(last[:, 12:], last[:, 11:12].expand(-1, 4, -1, -1))
    zero = list(iter_clips(indexed, 16, pad="zero"))[-1]
    assert zero.n_real == 12 and torch.equal(zero.frames[:, 12:], torch.zeros_like(last[:, 12:]))
    assert torch.equal(zero.frames[:, :12], last[:, :12])
    assert [c.n_real for c in iter_clips(indexed, 16, pad="drop")] == [16, 16, 16]
    assert [c.n_real for c in iter_clips(indexed, 15, pad="reject")] == [15] * 4
    with pytest.raises(InputError, match=r"indexed\.mp4.*60 frames.*12 < clip_frames=16"):
        list(iter_clips(indexed, 16, pad="reject"))


def test_video_shorter_than_one_clip(tmp_path):
    path = _write(tmp_path / "short.mp4", _levels(5))
    (clip,) = iter_clips(path, 8)
    assert clip.n_real == 5 and clip.frames.shape[1] == 8 and _ids(clip.frames)[5:] == [4] * 3
    assert list(iter_clips(path, 8, pad="drop")) == []
    with pytest.raises(InputError, match=r"short\.mp4.*5 frames.*5 < clip_frames=8"):
        next(iter_clips(path, 8, pad="reject"))
    for bad in [{"clip_frames": 0}, {"clip_frames": 4, "pad": "wrap"}]:
        with pytest.raises(InputError):
            iter_clips(path, **bad)


# ---------------------------------------------------------------- bad files


def _audio_only(path):
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray(
            np.zeros((1, 1024), np.float32), format="fltp", layout="mono"
        )
        frame.sample_rate = 16000
        out.mux(stream.encode(frame))
        out.mux(stream.encode())


def _zero_frames(path):
    out = av.open(str(path), "w", format="avi")
    stream = out.add_stream("mpeg4", rate=FPS)
    stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
    out.start_encoding()
    out.close()


def _cut(src, dst, keep):
    data = src.read_bytes()
    dst.write_bytes(data[: keep(data)])


BAD_FILES = {
    "missing.mp4": lambda p: None,
    "empty.mp4": lambda p: p.write_bytes(b""),
    "text.mp4": lambda p: p.write_text("not a video\n" * 50),
    "audio.m4a": _audio_only,
    "zero.avi": _zero_frames,
    "moov_lost.mp4": lambda p: _cut(
        _write(p.with_name("full.mp4"), _levels(30), noise=True, faststart=False),
        p,
        lambda d: len(d) // 2,
    ),
    "cut_at_mdat.mp4": lambda p: _cut(
        _write(p.with_name("full.mp4"), _levels(30), noise=True), p, lambda d: d.index(b"mdat") + 64
    ),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_files_raise_input_error_naming_the_path(tmp_path, name):
    path = tmp_path / name
    BAD_FILES[name](path)
    calls = [lambda: load_video(path), lambda: list(iter_clips(path, 4))]
    if name != "cut_at_mdat.mp4":  # its header is intact: video_info reads headers only
        calls.append(lambda: video_info(path))
    for call in calls:
        with pytest.raises(InputError, match=name.replace(".", r"\.")):
            call()


def test_truncated_file_returns_decodable_frames_with_warning(tmp_path):
    full = _write(tmp_path / "full.mp4", _levels(60), noise=True)
    cut = tmp_path / "cut.mp4"
    _cut(full, cut, lambda d: len(d) // 2)
    with pytest.warns(RuntimeWarning, match=r"cut\.mp4.*truncated"):
        x = load_video(cut)
    assert 0 < x.shape[1] < 60
