"""Video files <-> float tensors, decoded and encoded with PyAV (FFmpeg).

Legend: T frames, H height, W width. A video is float32 ``[3, T, H, W]`` in [-1, 1]; a clip
from ``iter_clips`` is ``[3, clip_frames, H, W]``. Times are seconds from the stream start.
Policies (docs/media_io.md):

- frame rate: ``fps=None`` keeps every source frame and refuses variable-frame-rate files;
  ``fps=x`` resamples: output frame k is the source frame nearest to ``start_s + k / x``
  (ties take the earlier frame), up to ``end_s`` or the end of the last source frame.
- time range ``[start_s, end_s)``: seek to the keyframe at or before ``start_s``, decode forward,
  drop the frames before ``start_s``; the whole file is never decoded for a short range.
- size: short side resized to ``size`` (antialiased bilinear), then an optional centre crop.
- damage: frames decoded before a decode error (e.g. a truncated file) are returned with a
  RuntimeWarning; InputError when no frame decodes.
- ``save_video``: MP4, libx264 (mpeg4 where PyAV lacks it), yuv420p; an odd height or width is
  padded by repeating the last row or column (yuv420p needs even sizes).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import statistics
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor

from mmtok.errors import InputError
from mmtok.fileutil import atomic_path, require_file
from mmtok.image.io import from_uint8, resize_crop, to_uint8
from mmtok.lazy import LazyModule

av = LazyModule("av")  # PyAV, imported on first use (mmtok/lazy.py)

PadPolicy = Literal["repeat", "zero", "reject", "drop"]
Crop = int | tuple[int, int] | None  # centre crop: (height, width), an int for a square
Timed = Iterator[tuple[Fraction, "av.VideoFrame"]]  # (seconds from stream start, frame)

VFR_PROBE_FRAMES = 48  # frame timestamps examined by video_info to detect a variable rate
_PAD_POLICIES = ("repeat", "zero", "reject", "drop")
_ENCODER_OPTIONS = {
    "libx264": {"crf": "18", "preset": "medium"},
    "mpeg4": {"flags": "+qscale", "global_quality": str(2 * 118)},  # qscale 2 (FF_QP2LAMBDA)
}


@dataclass(frozen=True)
class VideoInfo:
    """What ``video_info`` reads from the container (first video stream)."""

    path: str
    width: int
    height: int
    fps: float  # average frame rate
    fps_fraction: Fraction  # the same rate, exact (e.g. 30000/1001)
    frames: int  # frame count from the container index, else duration * fps
    frames_exact: bool  # False when ``frames`` is the duration-based estimate
    duration_s: float
    codec: str
    variable_frame_rate: bool  # frame-time steps differ within the first VFR_PROBE_FRAMES


@dataclass(frozen=True)
class Clip:
    """One clip from ``iter_clips``."""

    frames: Tensor  # [3, clip_frames, H, W] float32 in [-1, 1]
    n_real: int  # frames from the video; frames[:, n_real:] is padding
    start: int  # index of frames[:, 0] in the sequence of output frames


def _frac(x: float | Fraction) -> Fraction:
    """Seconds or rates as exact fractions (0.1 -> 1/10), so frame-time comparisons are exact."""
    return Fraction(x).limit_denominator(1_000_000)


@contextlib.contextmanager
def _open(path: str | os.PathLike) -> Iterator[tuple[av.container.InputContainer, av.VideoStream]]:
    """Open ``path`` and yield (container, first video stream); InputError naming the path."""
    p = require_file(path, "video file")
    try:
        container = av.open(str(p))
    except (av.FFmpegError, UnicodeDecodeError) as e:
        raise InputError(f"video file {str(p)!r} is not a readable video: {e}") from None
    try:
        if not container.streams.video:
            kinds = [s.type for s in container.streams] or ["none"]
            raise InputError(f"video file {str(p)!r} has no video stream (streams: {kinds})")
        yield container, container.streams.video[0]
    finally:
        container.close()


def _is_vfr(pts: list[int]) -> bool:
    """True when a step of the sorted pts departs from the median step by over 1 tick and 5%
    (the slack absorbs the rounding of coarse time bases such as 1/1000 s at 30 fps)."""
    steps = [b - a for a, b in itertools.pairwise(pts)]
    if len(steps) < 2:
        return False
    median = statistics.median(steps)
    return any(abs(s - median) > max(1.0, 0.05 * median) for s in steps)


def _probe_pts(container: av.container.InputContainer, stream: av.VideoStream) -> list[int]:
    """Sorted pts of the first VFR_PROBE_FRAMES frames from packet headers (no decoding);
    packets come in decode order, so a margin of 16 extra covers B-frame reordering."""
    pts: list[int] = []
    for packet in container.demux(stream):
        if packet.pts is not None and packet.size:
            pts.append(packet.pts)
            if len(pts) == VFR_PROBE_FRAMES + 16:
                break
    return sorted(pts)[:VFR_PROBE_FRAMES]


def video_info(path: str | os.PathLike) -> VideoInfo:
    """Describe the first video stream of ``path``; reads packet headers only, decodes nothing.

    Raises InputError naming the path for a missing, empty or unreadable file, a file without
    a video stream, or a stream with zero frames.
    """
    with _open(path) as (container, stream):
        pts = _probe_pts(container, stream)
        if not pts:
            raise InputError(f"video file {str(path)!r} has a video stream with zero frames")
        rate = Fraction(stream.average_rate or stream.guessed_rate or 0)  # 0: unknown
        own = stream.duration * stream.time_base if stream.duration else None
        duration = float(own if own is not None else (container.duration or 0) / av.time_base)
        return VideoInfo(
            path=str(path),
            width=stream.codec_context.width,
            height=stream.codec_context.height,
            fps=float(rate),
            fps_fraction=rate,
            frames=stream.frames or round(duration * rate),
            frames_exact=stream.frames > 0,
            duration_s=duration,
            codec=stream.codec_context.name,
            variable_frame_rate=_is_vfr(pts),
        )


def _decode_from(
    container: av.container.InputContainer, stream: av.VideoStream, path: str, start: Fraction
) -> Timed:
    """Yield (time, frame) in presentation order from the keyframe at or before ``start`` on;
    a decode error ends the stream with a warning once frames came out, else InputError."""
    tb, origin = stream.time_base, stream.start_time or 0
    if start > 0:
        container.seek(origin + int(start / tb), stream=stream, backward=True, any_frame=False)
    decoded, n, t = container.decode(stream), 0, start
    while True:
        try:
            frame = next(decoded)
        except StopIteration:
            break
        except av.FFmpegError as e:
            if n == 0:
                raise InputError(f"video file {path!r}: no frame could be decoded ({e})") from None
            msg = f"video file {path!r} is damaged (truncated?) after {n} decoded frames: {e}"
            warnings.warn(f"{msg}; returning the frames before it", RuntimeWarning, stacklevel=2)
            return
        if frame.pts is not None:
            t = Fraction(frame.pts - origin) * tb
        n += 1
        yield t, frame
    if n == 0:
        raise InputError(f"video file {path!r} has no decodable frames")


def _keep(timed: Timed, start: Fraction, end: Fraction | None) -> Iterator[av.VideoFrame]:
    """Every frame with start <= time < end."""
    for t, frame in timed:
        if end is not None and t >= end:
            return
        if t >= start:
            yield frame


def _resample(
    timed: Timed, start: Fraction, end: Fraction | None, fps: Fraction, src_step: Fraction
) -> Iterator[av.VideoFrame]:
    """For each output time start + k / fps, the nearest source frame (ties: the earlier);
    output stops at ``end`` or where the last source frame ends."""
    k, target, prev = 0, start, None
    for t, frame in timed:
        while target <= t and (end is None or target < end):
            use_prev = prev is not None and target - prev[0] <= t - target
            yield prev[1] if use_prev else frame
            k += 1
            target = start + k / fps
        if end is not None and target >= end:
            return
        prev = (t, frame)
    if prev is None:
        return
    last = prev[1]  # shown for its own duration, else one average frame step
    stop = prev[0] + (Fraction(last.duration) * last.time_base if last.duration else src_step)
    stop = stop if end is None else min(end, stop)
    while target < stop:
        yield prev[1]
        k += 1
        target = start + k / fps


def _frame_tensor(frame: av.VideoFrame, size: int | None, crop: Crop, path: str) -> Tensor:
    """Decoded frame -> float32 [3, H, W] in [-1, 1], short side resized, centre cropped."""
    x = from_uint8(torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1))
    try:
        x = resize_crop(x, size, "short_side", "none")
        if crop is not None:
            x = resize_crop(x, crop, "none", "center")
    except InputError as e:
        raise InputError(f"video file {path!r}: {e}") from None
    return x.clamp_(-1.0, 1.0)


def _check_args(
    fps: float | None, size: int | None, crop: Crop, start_s: float, end_s: float | None
) -> None:
    """InputError naming the first bad frame-selection argument."""
    if fps is not None and not _positive(fps):
        raise InputError(f"fps: expected a positive number or None, got {fps!r}")
    if size is not None and not _positive(size, int):
        raise InputError(f"size: expected a positive int (short side) or None, got {size!r}")
    hw = (crop, crop) if isinstance(crop, int) else crop
    ok_crop = isinstance(hw, tuple) and len(hw) == 2 and all(_positive(c, int) for c in hw)
    if crop is not None and not ok_crop:
        raise InputError(f"crop: expected a positive int or (height, width), got {crop!r}")
    if not (start_s == 0 or _positive(start_s)):
        raise InputError(f"start_s: expected a number >= 0, got {start_s!r}")
    if end_s is not None and not (_positive(end_s) and end_s > start_s):
        raise InputError(f"end_s: expected None or a number > start_s={start_s}, got {end_s!r}")


def _positive(x: object, kinds: type | tuple[type, ...] = (int, float, Fraction)) -> bool:
    """``x`` is an instance of ``kinds`` (a bool never is) and > 0."""
    return isinstance(x, kinds) and not isinstance(x, bool) and x > 0


def _frames(
    path: str | os.PathLike,
    fps: float | None,
    size: int | None,
    crop: Crop,
    start_s: float,
    end_s: float | None,
) -> Iterator[Tensor]:
    """Check arguments, file and frame-rate policy now; return the lazy stream of selected
    frames as float32 [3, H, W], decoded one at a time."""
    _check_args(fps, size, crop, start_s, end_s)
    info = video_info(path)
    if fps is None and info.variable_frame_rate:
        msg = f"has a variable frame rate ({info.fps:.3f} fps on average)"
        raise InputError(f"video file {str(path)!r} {msg}; pass fps= to resample it")
    name, start, end = str(path), _frac(start_s), None if end_s is None else _frac(end_s)
    src_step = 1 / info.fps_fraction if info.fps_fraction else Fraction(0)

    def stream() -> Iterator[Tensor]:
        with _open(path) as (container, video):
            timed = _decode_from(container, video, name, start)
            if fps is None:
                picked = _keep(timed, start, end)
            else:
                picked = _resample(timed, start, end, _frac(fps), src_step)
            last, x = None, None
            for frame in picked:
                if frame is not last:  # a frame repeated by upsampling is converted once
                    last, x = frame, _frame_tensor(frame, size, crop, name)
                yield x

    return stream()


def load_video(
    path: str | os.PathLike,
    fps: float | None = None,
    size: int | None = None,
    crop: Crop = None,
    start_s: float = 0.0,
    end_s: float | None = None,
    max_frames: int | None = None,
) -> Tensor:
    """Decode ``path`` into float32 ``[3, T, H, W]`` in [-1, 1].

    fps: None keeps the source frames (InputError on a variable-frame-rate file); a number
        resamples to that rate by nearest source frame.
    size: resize so the short side is ``size`` (aspect kept); None keeps the size.
    crop: centre crop to (height, width) (an int: square) after the resize; None: no crop.
    start_s, end_s: the time range [start_s, end_s) in seconds; reached by seeking.
    max_frames: stop after this many output frames.
    Raises InputError naming the path for bad files (see module docstring) or an empty range.
    """
    if max_frames is not None and not _positive(max_frames, int):
        raise InputError(f"max_frames: expected a positive int or None, got {max_frames!r}")
    stream = _frames(path, fps, size, crop, start_s, end_s)
    frames = list(itertools.islice(stream, max_frames))
    stream.close()
    if not frames:
        span = f"[{start_s}, {'end' if end_s is None else end_s})"
        raise InputError(f"video file {str(path)!r} has no frames in the time range {span} s")
    return torch.stack(frames, dim=1)


def _pad_clip(path: str, buf: list[Tensor], clip_frames: int, pad: str, start: int) -> Clip | None:
    """The last, partial clip (``len(buf) < clip_frames`` frames) under the ``pad`` policy."""
    n = len(buf)
    if pad == "drop":
        return None
    if pad == "reject":
        counts = f"{start + n} frames leave a partial clip of {n} < clip_frames={clip_frames}"
        raise InputError(f"video file {path!r}: {counts} and pad='reject'")
    fill = buf[-1] if pad == "repeat" else torch.zeros_like(buf[-1])
    return Clip(torch.stack(buf + [fill] * (clip_frames - n), dim=1), n, start)


def _clips(path: str, frames: Iterator[Tensor], clip_frames: int, pad: str) -> Iterator[Clip]:
    buf: list[Tensor] = []
    start = 0  # output index of buf[0]
    for x in frames:
        buf.append(x)
        if len(buf) == clip_frames:
            yield Clip(torch.stack(buf, dim=1), clip_frames, start)
            buf, start = [], start + clip_frames
    if buf:
        clip = _pad_clip(path, buf, clip_frames, pad, start)
        if clip is not None:
            yield clip


def iter_clips(
    path: str | os.PathLike,
    clip_frames: int,
    fps: float | None = None,
    size: int | None = None,
    crop: Crop = None,
    pad: PadPolicy = "repeat",
) -> Iterator[Clip]:
    """Stream ``path`` as consecutive ``Clip``s of ``[3, clip_frames, H, W]``, in memory bounded
    by one clip whatever the video's length.

    fps, size, crop: as in ``load_video``. pad: what the last, partial clip (or a video shorter
    than one clip) becomes: "repeat" the last frame (default), "zero" (frames of 0.0, mid-grey),
    "drop" it, or "reject" (InputError naming the path and the frame counts). ``Clip.n_real``
    counts the real frames. File and argument errors raise here, before the first clip.
    """
    if not _positive(clip_frames, int):
        raise InputError(f"clip_frames: expected a positive int, got {clip_frames!r}")
    if pad not in _PAD_POLICIES:
        raise InputError(f"pad: expected one of {_PAD_POLICIES}, got {pad!r}")
    return _clips(str(path), _frames(path, fps, size, crop, 0.0, None), clip_frames, pad)


def _pad_even(x: Tensor) -> Tensor:
    """[3, T, H, W] -> even H and W by repeating the last row / column (yuv420p needs it)."""
    if x.shape[-2] % 2:
        x = torch.cat([x, x[..., -1:, :]], dim=-2)
    if x.shape[-1] % 2:
        x = torch.cat([x, x[..., -1:]], dim=-1)
    return x


def save_video(
    path: str | os.PathLike, frames: Tensor, fps: float | Fraction, codec: str | None = None
) -> None:
    """Write ``frames`` (float ``[3, T, H, W]`` in [-1, 1]) as an MP4 at ``fps`` frames/s.

    codec: None picks libx264 (CRF 18) when PyAV has it, else mpeg4 (qscale 2). Pixels are
    yuv420p; an odd H or W is padded by repeating the last row / column. Values outside
    [-1, 1] are clipped. The write is atomic: on failure nothing is left at ``path``.
    """
    p = Path(path)
    if p.suffix.lower() != ".mp4":
        raise InputError(f"video path {str(p)!r}: save_video writes MP4, use a .mp4 suffix")
    is_float = isinstance(frames, Tensor) and frames.is_floating_point()
    if not (is_float and frames.dim() == 4 and frames.shape[0] == 3 and frames.numel()):
        got = f"{frames.dtype} {list(frames.shape)}" if isinstance(frames, Tensor) else type(frames)
        raise InputError(f"save_video frames: expected a float [3, T, H, W] tensor, got {got}")
    if not torch.isfinite(frames).all():
        raise InputError("save_video frames: contains NaN or infinite values")
    if not _positive(fps):
        raise InputError(f"fps: expected a positive number, got {fps!r}")
    codec = codec or ("libx264" if "libx264" in av.codecs_available else "mpeg4")
    if codec not in av.codecs_available:
        raise InputError(f"codec: {codec!r} is not in this PyAV build (av.codecs_available)")
    rgb = to_uint8(_pad_even(frames.detach())).permute(1, 2, 3, 0).cpu().numpy()  # [T, H, W, 3]
    options = {"movflags": "+faststart"}  # index first: a cut file still decodes up to the cut
    with atomic_path(p) as tmp, av.open(str(tmp), "w", format="mp4", options=options) as out:
        stream = out.add_stream(codec, rate=Fraction(fps).limit_denominator(65535))
        stream.width, stream.height, stream.pix_fmt = rgb.shape[2], rgb.shape[1], "yuv420p"
        stream.options = dict(_ENCODER_OPTIONS.get(codec, {}))
        for a in rgb:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(a, format="rgb24")))
        out.mux(stream.encode())
