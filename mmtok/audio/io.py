"""Audio files <-> float tensors: load (whole or in blocks), save atomically, read headers.

WAV / FLAC / OGG / MP3 and the other libsndfile formats are read with soundfile (integer and
float PCM); audio tracks of containers libsndfile cannot open (MP4 / M4A / MKV / WebM ...)
are decoded with PyAV. Resampling is ``torchaudio.functional.resample``'s filter (sinc, its
defaults), applied so that every output sample is bit-identical however the file is cut
into blocks (``_resample``): ``iter_audio_blocks`` gives exactly ``load_audio``'s samples.

Channel policy (``channels``): ``"mono"`` mixes down by the mean over channels, ``"keep"``
keeps the file's channels, an int ``N`` gives exactly N channels: a mono file is repeated N
times, an N-channel file is kept, anything else raises ``InputError``.

Every bad file or argument raises ``mmtok.errors.InputError`` naming the path. Clipping is
not an error: samples at or over full scale are counted in ``AudioClip.clipped_fraction``,
clamped to [-1, 1] and reported with a ``ClippingWarning`` naming the path.

Shapes: C channels, T samples at the requested ``sample_rate``, F frames at the file's rate.
"""

from __future__ import annotations

import functools
import math
import os
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import soundfile as sf
import torch
import torch.nn.functional as F
from torchaudio.functional.functional import _get_sinc_resample_kernel

from mmtok.errors import InputError
from mmtok.fileutil import atomic_path, require_file
from mmtok.lazy import LazyModule

av = LazyModule("av")  # PyAV, imported on first use (mmtok/lazy.py)

__all__ = [
    "AudioClip",
    "ClippingWarning",
    "audio_info",
    "iter_audio_blocks",
    "load_audio",
    "resample_audio",
    "save_audio",
]

Channels = Literal["mono", "keep"] | int
PathLike = str | os.PathLike
MAX_TARGET_RATE = 384_000  # highest sample_rate a caller may ask for
MAX_SOURCE_RATE = 768_000  # highest sample rate accepted in a file's header
WRITE_FORMATS = {
    ".wav": ("WAV", ("PCM_16", "PCM_24", "FLOAT")),
    ".flac": ("FLAC", ("PCM_16", "PCM_24")),
}
# torchaudio.functional.resample defaults, needed to know how far its filter reaches.
_LOWPASS_WIDTH, _ROLLOFF = 6, 0.99
_MAX_KERNEL = 1 << 24  # floats in a resampling kernel (64 MiB)
_CHUNK_FLOATS = 1 << 21  # floats of filter rows per channel in one resampling GEMM (8 MiB)


class ClippingWarning(UserWarning):
    """Samples at or over full scale were found (and clamped) in a file or a tensor."""


@dataclass
class AudioClip:
    """Decoded audio: ``samples`` float32 ``[C, T]`` in [-1, 1] at ``sample_rate``."""

    samples: torch.Tensor
    sample_rate: int
    source_sample_rate: int
    path: str
    clipped_fraction: float = 0.0

    @property
    def duration_s(self) -> float:
        return self.samples.shape[-1] / self.sample_rate


def _check_rate(rate: object, path: PathLike, what: str, hi: int) -> int:
    if isinstance(rate, bool) or not isinstance(rate, int | np.integer) or not 0 < rate <= hi:
        raise InputError(f"{str(path)!r}: {what} must be an int in 1..{hi}, got {rate!r}")
    return int(rate)


def _check_channels(channels: object, path: PathLike) -> None:
    ok_int = isinstance(channels, int) and not isinstance(channels, bool) and channels >= 1
    if channels not in ("mono", "keep") and not ok_int:
        raise InputError(
            f"{str(path)!r}: channels must be 'mono', 'keep' or an int >= 1, got {channels!r}"
        )


def _check_span(offset_s: float, duration_s: float | None, path: PathLike) -> None:
    if not (math.isfinite(offset_s) and offset_s >= 0):
        raise InputError(f"{str(path)!r}: offset_s must be finite and >= 0, got {offset_s!r}")
    if duration_s is not None and not (math.isfinite(duration_s) and duration_s > 0):
        raise InputError(f"{str(path)!r}: duration_s must be > 0 or None, got {duration_s!r}")


def _sf_info(p: Path) -> sf._SoundFileInfo | None:
    """Header of a libsndfile format, checked; None when libsndfile cannot open the file."""
    try:
        info = sf.info(str(p))
    except sf.SoundFileError:
        return None
    _check_rate(info.samplerate, p, "the file's sample rate", MAX_SOURCE_RATE)
    # libsndfile shortens `frames` to what is on disk and notes "data : N (should be M)".
    m = re.search(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", info.extra_info, re.MULTILINE)
    if m and int(m[1]) not in (0, 0xFFFFFFFF) and int(m[2]) < int(m[1]):
        raise InputError(
            f"{str(p)!r}: truncated file: header declares {m[1]} data bytes, {m[2]} present"
        )
    return info


def _full_scale(subtype: str) -> float:
    """Smallest |x| that counts as full scale: the top code of N-bit ints, else 1.0."""
    m = re.fullmatch(r"(?:PCM|ALAC)_[SU]?(\d+)", subtype)
    return 1.0 - 2.0 ** (1 - int(m[1])) if m else 1.0


def _read_sf(p: Path, info: sf._SoundFileInfo, start: int, frames: int | None) -> np.ndarray:
    """Frames [start, start + frames) of a libsndfile file as float32 [C, F]."""
    if info.frames == 0:
        raise InputError(f"{str(p)!r}: file contains no audio (0 frames)")
    if start >= info.frames:
        raise InputError(f"{str(p)!r}: offset {start} frames is past the end ({info.frames})")
    want = info.frames - start if frames is None else min(frames, info.frames - start)
    with sf.SoundFile(str(p)) as f:
        return _read_span(f, p, start, want)


def _read_span(f: sf.SoundFile, p: Path, start: int, want: int) -> np.ndarray:
    """Frames [start, start + want) of an open file as float32 [C, F]; short reads raise."""
    try:
        f.seek(start)
        x = f.read(want, dtype="float32", always_2d=True)  # [F, C]
    except sf.SoundFileError as e:
        raise InputError(f"{str(p)!r}: truncated or corrupt audio: {e}") from e
    if x.shape[0] < want:
        raise InputError(f"{str(p)!r}: truncated file: read {x.shape[0]} of {want} frames")
    return np.ascontiguousarray(x.T)


def _av_frames(stream: av.audio.stream.AudioStream) -> int | None:
    """Frame count from the stream header (None when the container does not say)."""
    if stream.duration and stream.time_base:
        return round(stream.duration * stream.time_base * stream.sample_rate)
    return None


def _av_stream(container: av.container.InputContainer, p: Path) -> av.audio.AudioStream:
    """The first audio track, with a checked sample rate."""
    if not container.streams.audio or not container.streams.audio[0].sample_rate:
        raise InputError(f"{str(p)!r}: unsupported format or not audio (no audio track)")
    stream = container.streams.audio[0]
    _check_rate(stream.sample_rate, p, "the file's sample rate", MAX_SOURCE_RATE)
    return stream


def _read_av(p: Path, offset_s: float, duration_s: float | None) -> tuple[np.ndarray, int]:
    """First audio track of a container as float32 [C, F] and its sample rate."""
    try:
        with av.open(str(p)) as container:
            stream = _av_stream(container, p)
            sr = stream.sample_rate
            start = round(offset_s * sr)
            stop = _av_frames(stream) or math.inf
            if duration_s is not None:
                stop = min(stop, start + round(duration_s * sr))
            to_float = av.AudioResampler(format="fltp")  # planar float32, same layout and rate
            chunks, got = [], 0
            for frame in container.decode(stream):
                for out in to_float.resample(frame):
                    chunks.append(out.to_ndarray())  # [C, n]
                    got += chunks[-1].shape[1]
                if got >= stop:
                    break
            else:
                chunks += [out.to_ndarray() for out in to_float.resample(None)]
    except (av.FFmpegError, UnicodeDecodeError) as e:
        raise InputError(f"{str(p)!r}: unsupported or corrupt audio: {e}") from e
    x = np.concatenate(chunks, axis=1) if chunks else np.zeros((1, 0), np.float32)
    if x.shape[1] <= start:
        what = "file contains no audio (0 frames)" if x.shape[1] == 0 else "offset is past the end"
        raise InputError(f"{str(p)!r}: {what}")
    end = x.shape[1] if stop == math.inf else int(stop)
    return np.ascontiguousarray(x[:, start:end], dtype=np.float32), sr


def _apply_channels(x: torch.Tensor, channels: Channels, path: PathLike) -> torch.Tensor:
    """[C, F] -> [C', F] following the channel policy."""
    if channels == "mono":
        return x.mean(dim=0, keepdim=True)
    if channels == "keep" or x.shape[0] == channels:
        return x
    if x.shape[0] == 1:
        return x.expand(channels, -1).contiguous()
    raise InputError(
        f"{str(path)!r}: has {x.shape[0]} channels, cannot give channels={channels} "
        "(only mono -> N or N -> N; use 'mono' or 'keep')"
    )


def _clip_check(x: torch.Tensor, full_scale: float, path: PathLike) -> tuple[torch.Tensor, int]:
    """Raise on NaN/inf; count samples at/over full scale; return x clamped to [-1, 1]."""
    if not bool(torch.isfinite(x).all()):
        raise InputError(f"{str(path)!r}: audio contains NaN or infinite samples")
    return x.clamp(-1.0, 1.0), int((x.abs() >= full_scale).sum())


def _warn_clipped(path: PathLike, n: int, total: int) -> float:
    frac = n / max(total, 1)
    if n:
        msg = f"{str(path)!r}: {n} of {total} samples ({frac:.3%}) at or over full scale (clipped)"
        warnings.warn(msg, ClippingWarning, stacklevel=3)
    return frac


def _resample_plan(src: int, dst: int, path: PathLike) -> tuple[int, int, int]:
    """(o, n, width): o source frames -> n output samples per period, filter reach in frames.

    Raises when the rates share no small ratio: torchaudio's kernel holds n * (2 width + o)
    floats (44100 -> 44101 Hz would need ~8 GB), so such pairs are refused, not attempted.
    """
    g = math.gcd(src, dst)
    o, n = src // g, dst // g
    width = math.ceil(_LOWPASS_WIDTH * o / (min(o, n) * _ROLLOFF))
    if n * (2 * width + o) > _MAX_KERNEL:
        raise InputError(
            f"{str(path)!r}: cannot resample {src} -> {dst} Hz: the rates share no small ratio "
            f"(gcd {g}); resample to a rate with a larger common divisor"
        )
    return o, n, width


@functools.lru_cache(maxsize=8)
def _sinc_kernel(src: int, dst: int) -> torch.Tensor:
    """torchaudio's resampling filter for src -> dst Hz as ``[K, n]`` (K = 2 width + o taps
    per output phase, n phases), the same taps ``AF.resample`` uses with its defaults."""
    g = math.gcd(src, dst)
    kernel, _ = _get_sinc_resample_kernel(
        src, dst, g, _LOWPASS_WIDTH, _ROLLOFF, "sinc_interp_hann", None, "cpu", torch.float32
    )
    return kernel[:, 0].t().contiguous()  # [n, 1, K] -> [K, n]


def _resample(x: torch.Tensor, src: int, dst: int, path: PathLike) -> torch.Tensor:
    """``[C, F]`` at src Hz -> ``[C, T]`` at dst Hz: ``AF.resample`` with its defaults (same
    filter, zero padding and output length), computed so each output sample is bit-identical
    however the input is cut: periods of the signal are rows of one GEMM ``[rows, K] @ [K, n]``
    whose rows are padded to a multiple of 16 (MKL rounds a row the same for any row count
    >= 8, see ``AudioTokenizer._quantize_rows``); ``AF.resample``'s conv1d rounds differently
    for different lengths. Runs in chunks of rows, so memory stays ~2x the input."""
    if src == dst:
        return x
    o, n, width = _resample_plan(src, dst, path)
    kernel = _sinc_kernel(src, dst).to(x.dtype)  # [K, n]
    taps = kernel.shape[0]
    xp = F.pad(x, (width, width + o))  # [C, F + 2 width + o], as torchaudio pads
    periods = (xp.shape[1] - taps) // o + 1
    chunk = max(16, (_CHUNK_FLOATS // taps) // 16 * 16)
    out = []
    for j0 in range(0, periods, chunk):
        j1 = min(periods, j0 + chunk)
        rows = xp[:, j0 * o : (j1 - 1) * o + taps].unfold(1, taps, o)  # [C, j1 - j0, K]
        rows = F.pad(rows, (0, 0, 0, -(j1 - j0) % 16)).contiguous()
        out.append((rows @ kernel)[:, : j1 - j0].flatten(1))  # [C, (j1 - j0) * n]
    # torchaudio's output length, rounded in float32 as it does
    length = int(torch.ceil(torch.as_tensor(n * x.shape[1] / o)))
    return torch.cat(out, 1)[:, :length]


# ---------------------------------------------------------------- public API


def load_audio(
    path: PathLike,
    sample_rate: int,
    channels: Channels = "mono",
    offset_s: float = 0.0,
    duration_s: float | None = None,
) -> AudioClip:
    """Read ``path`` into an AudioClip with samples float32 ``[C, T]`` in [-1, 1].

    sample_rate: output rate in Hz (1..384000); the file is resampled when it differs.
    channels: "mono" (mean), "keep", or an int N (mono -> N by repeating, N -> N).
    offset_s / duration_s: the span to read, in seconds of the file; a duration past the end
        is cut at the end, an offset past the end raises InputError.
    """
    p = require_file(path, "audio file")
    sample_rate = _check_rate(sample_rate, p, "sample_rate", MAX_TARGET_RATE)
    _check_channels(channels, p)
    _check_span(offset_s, duration_s, p)
    info = _sf_info(p)
    if info is not None:
        src, full_scale = info.samplerate, _full_scale(info.subtype)
        frames = None if duration_s is None else round(duration_s * src)
        x = _read_sf(p, info, round(offset_s * src), frames)
    else:
        (x, src), full_scale = _read_av(p, offset_s, duration_s), 1.0
    if x.shape[1] == 0:
        raise InputError(f"{str(p)!r}: the requested span holds no audio frames")
    samples, n_clipped = _clip_check(torch.from_numpy(x), full_scale, p)
    frac = _warn_clipped(p, n_clipped, samples.numel())
    samples = _apply_channels(samples, channels, p)
    samples = _resample(samples, src, sample_rate, p).clamp(-1.0, 1.0)  # [C, T]
    return AudioClip(samples.contiguous(), sample_rate, src, str(p), frac)


def iter_audio_blocks(
    path: PathLike, sample_rate: int, block_s: float, channels: Channels = "mono"
) -> Iterator[torch.Tensor]:
    """Yield consecutive float32 ``[C, T_block]`` blocks of ``path`` at ``sample_rate``.

    The file is read block by block (never whole) at its own rate; each block is read with a
    margin of whole resampling periods on both sides so that its resampled core equals the
    same span of ``load_audio(path, sample_rate, channels).samples`` bit for bit (same filter,
    same zero padding at the file's ends, the same rounding: see ``_resample``). ``block_s`` is
    rounded to a whole number of periods (src/gcd frames, at most 1 s); the last block is
    shorter. Containers read through PyAV are decoded whole and then cut into blocks.
    Arguments are checked now; file errors may surface while iterating.
    """
    p = require_file(path, "audio file")
    sample_rate = _check_rate(sample_rate, p, "sample_rate", MAX_TARGET_RATE)
    _check_channels(channels, p)
    if not (isinstance(block_s, int | float) and math.isfinite(block_s) and block_s > 0):
        raise InputError(f"{str(p)!r}: block_s must be a finite number > 0, got {block_s!r}")
    info = _sf_info(p)
    if info is None:
        samples = load_audio(p, sample_rate, channels).samples
        return iter(samples.split(max(1, round(block_s * sample_rate)), dim=1))
    if info.frames == 0:
        raise InputError(f"{str(p)!r}: file contains no audio (0 frames)")
    plan = _resample_plan(info.samplerate, sample_rate, p)
    return _sf_blocks(p, info, sample_rate, block_s, channels, plan)


def _sf_blocks(
    p: Path,
    info: sf._SoundFileInfo,
    dst: int,
    block_s: float,
    channels: Channels,
    plan: tuple[int, int, int],
) -> Iterator[torch.Tensor]:
    src, n_frames, full_scale = info.samplerate, info.frames, _full_scale(info.subtype)
    o, n, width = plan  # one period: o source frames -> n output samples
    margin = 0 if src == dst else (math.ceil(width / o) + 1) * o
    periods = max(1, round(block_s * dst / n))
    # torchaudio rounds the output length in float32; match it so the lengths agree.
    total_out = int(torch.ceil(torch.as_tensor(n * n_frames / o)))
    n_clipped = 0
    with sf.SoundFile(str(p)) as f:
        for start in range(0, n_frames, periods * o):
            lo, hi = max(0, start - margin), min(n_frames, start + periods * o + margin)
            x, _ = _clip_check(torch.from_numpy(_read_span(f, p, lo, hi - lo)), full_scale, p)
            core = x[:, start - lo : min(n_frames, start + periods * o) - lo]
            n_clipped += int((core.abs() >= full_scale).sum())
            y = _resample(_apply_channels(x, channels, p), src, dst, p)  # [C, T]
            skip = (start - lo) // o * n  # output samples of the left margin
            keep = min(periods * n, total_out - start // o * n)
            yield y[:, skip : skip + keep].clamp(-1.0, 1.0).contiguous()
    _warn_clipped(p, n_clipped, n_frames * info.channels)


def resample_audio(samples: torch.Tensor, src: int, dst: int) -> torch.Tensor:
    """Float ``[C, T]`` at ``src`` Hz -> ``[C, T']`` at ``dst`` Hz with the filter ``load_audio``
    uses (``T' = ceil(T * dst / src)``); InputError for rates outside 1..768000 or a pair
    with no small common ratio."""
    src = _check_rate(src, "resample_audio", "src", MAX_SOURCE_RATE)
    dst = _check_rate(dst, "resample_audio", "dst", MAX_SOURCE_RATE)
    return _resample(samples, src, dst, "resample_audio")


def save_audio(
    path: PathLike,
    samples: torch.Tensor | np.ndarray,
    sample_rate: int,
    subtype: str = "PCM_16",
) -> int:
    """Write ``samples`` ``[C, T]`` or ``[T]`` (float, in [-1, 1]) to a .wav or .flac file.

    The format follows the suffix; subtype is "PCM_16" / "PCM_24" (WAV, FLAC) or "FLOAT"
    (WAV). The file appears atomically (temp file + rename): on any error nothing is left at
    ``path``. Values outside [-1, 1] are clamped with a ClippingWarning; returns their count.
    """
    p = Path(path)
    fmt, subtypes = WRITE_FORMATS.get(p.suffix.lower(), (None, ()))
    if fmt is None:
        raise InputError(f"{str(p)!r}: cannot write {p.suffix!r}, use one of {list(WRITE_FORMATS)}")
    if subtype not in subtypes:
        raise InputError(
            f"{str(p)!r}: subtype must be one of {subtypes} for {fmt}, got {subtype!r}"
        )
    sample_rate = _check_rate(sample_rate, p, "sample_rate", MAX_SOURCE_RATE)
    x = torch.as_tensor(samples).detach().to("cpu", torch.float32)
    x = x[None] if x.ndim == 1 else x
    if x.ndim != 2 or 0 in x.shape:
        raise InputError(
            f"{str(p)!r}: samples must be [C, T] or [T] non-empty, got {tuple(x.shape)}"
        )
    if not bool(torch.isfinite(x).all()):
        raise InputError(f"{str(p)!r}: samples contain NaN or infinite values")
    n_clamped = int((x.abs() > 1.0).sum())
    _warn_clipped(p, n_clamped, x.numel())
    data = x.clamp(-1.0, 1.0).T.contiguous().numpy()  # [T, C], soundfile's layout
    with atomic_path(p) as tmp:
        try:
            sf.write(str(tmp), data, sample_rate, subtype=subtype, format=fmt)
        except sf.SoundFileError as e:
            raise InputError(f"{str(p)!r}: cannot write audio: {e}") from e
    return n_clamped


def audio_info(path: PathLike) -> dict:
    """Header facts of ``path``: ``{sample_rate, channels, frames, duration_s}``, no decoding.

    For PyAV containers ``frames`` comes from the stream (or container) duration and may be
    off by a codec frame; it is 0 when the container states no duration.
    """
    p = require_file(path, "audio file")
    info = _sf_info(p)
    if info is not None:
        sr, ch, frames = info.samplerate, info.channels, info.frames
    else:
        try:
            with av.open(str(p)) as container:
                stream = _av_stream(container, p)
                sr = stream.sample_rate
                ch = stream.codec_context.channels
                frames = _av_frames(stream)
                if frames is None:
                    frames = round((container.duration or 0) / av.time_base * sr)
        except (av.FFmpegError, UnicodeDecodeError) as e:
            raise InputError(f"{str(p)!r}: unsupported or corrupt audio: {e}") from e
    return {"sample_rate": sr, "channels": ch, "frames": frames, "duration_s": frames / sr}
