"""The classical codec at the same bits: what a tokenizer's bits would buy from JPEG, WebP or
Opus, for the demo report, ``mmtok eval`` and the quality benchmarks (one implementation).

Legend: C channels, T samples, H, W pixels; tensors are float in [-1, 1].

- Images: Pillow JPEG (``optimize``) and WebP (``method=6``) at the highest quality whose whole
  file fits a bit budget (``codec_at_bits``; binary search over quality, ``fit_quality``). Exact
  when the file size never shrinks as quality grows, as for JPEG; for WebP, whose size is not
  monotone, a quality that fits while the next one does not. Where even the lowest quality is
  larger, the result says so (``fits`` False) and holds that file.
- Audio: libopus (PyAV) in CBR, 48 kHz, 20 ms frames, each channel coded alone at a bitrate per
  channel (``opus_at_bitrate``), clamped to Opus's range [6, 510] kbit/s; the decoded signal is
  resampled back and its codec delay removed by cross-correlation (``align``).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import torch
import torchaudio.functional as AF
from PIL import Image
from torch import Tensor

from mmtok.errors import InputError

IMAGE_CODECS = {"JPEG": ((1, 100), {"optimize": True}), "WEBP": ((0, 100), {"method": 6})}
OPUS_RATE = 48000  # libopus runs at 48 kHz; other rates are resampled to it and back
OPUS_FLOOR, OPUS_CEILING = 6000, 510000  # libopus bitrate range per channel, b/s
OPUS_FRAME = 960  # 20 ms at 48 kHz


# --- images ---------------------------------------------------------------------------------
def fit_quality(encode: Callable[[int], bytes], budget: int, lo: int, hi: int
                ) -> tuple[int, bytes, bool]:  # fmt: skip
    """Binary search for the highest quality in [lo, hi] whose ``encode(quality)`` has at most
    ``budget`` bytes. Returns (quality, data, fits); when even ``lo`` is larger, (lo, its data,
    False). Exact when the size never shrinks as quality grows."""
    best = (lo, encode(lo))
    if len(best[1]) > budget:
        return best[0], best[1], False
    while lo < hi:  # invariant: lo fits, everything above hi was found too large
        mid = (lo + hi + 1) // 2
        data = encode(mid)
        if len(data) <= budget:
            lo, best = mid, (mid, data)
        else:
            hi = mid - 1
    return best[0], best[1], True


def to_pil(x: Tensor) -> Image.Image:
    """``[3, H, W]`` in [-1, 1] -> an 8-bit RGB PIL image."""
    from mmtok.image.io import to_uint8

    return Image.fromarray(to_uint8(x).permute(1, 2, 0).numpy())


def from_pil(im: Image.Image) -> Tensor:
    """A PIL image -> ``[3, H, W]`` in [-1, 1]."""
    from mmtok.image.io import from_uint8

    return from_uint8(torch.from_numpy(np.array(im.convert("RGB"))).permute(2, 0, 1))


@dataclass
class CodecResult:
    """One image (or clip) through a codec: the quality used, the file's bits, whether it fit
    the budget, and the decoded result."""

    quality: int
    bits: int
    fits: bool
    recon: Tensor  # [3, H, W] (clip: [3, T, H, W]) in [-1, 1]


def image_encoder(x: Tensor, fmt: str) -> Callable[[int], bytes]:
    """``quality -> file bytes`` of ``x [3, H, W]`` in Pillow format ``fmt`` (JPEG or WEBP)."""
    if fmt not in IMAGE_CODECS:
        raise InputError(f"image codec: expected one of {sorted(IMAGE_CODECS)}, got {fmt!r}")
    options = IMAGE_CODECS[fmt][1]
    im = to_pil(x)

    def encode(quality: int) -> bytes:
        buf = io.BytesIO()
        im.save(buf, fmt, quality=quality, **options)
        return buf.getvalue()

    return encode


def codec_at_bits(x: Tensor, fmt: str, budget_bits: float) -> CodecResult:
    """``x [3, H, W]`` through Pillow ``fmt`` (JPEG or WEBP) at the highest quality whose file
    fits ``budget_bits``; when none does, the lowest quality (``fits`` False)."""
    encode = image_encoder(x, fmt)
    lo, hi = IMAGE_CODECS[fmt][0]
    quality, data, fits = fit_quality(encode, int(budget_bits // 8), lo, hi)
    return CodecResult(quality, 8 * len(data), fits, from_pil(Image.open(io.BytesIO(data))))


# --- video ----------------------------------------------------------------------------------
H264_CRF = (0, 51)  # libx264's CRF range: 0 is the best quality, 51 the smallest file


def h264_encoder(x: Tensor, fps: float) -> Callable[[int], bytes]:
    """``quality -> MP4 bytes`` of clip ``x [3, T, H, W]`` in [-1, 1] through libx264 (yuv420p,
    ``preset medium``, one thread so the bytes are reproducible); quality = 51 - CRF, so a
    higher quality is a larger file, as ``fit_quality`` expects. H and W must be even."""
    import av

    from mmtok.image.io import to_uint8

    frames = to_uint8(x.transpose(0, 1)).permute(0, 2, 3, 1).numpy()  # [T, H, W, 3] uint8
    if frames.shape[1] % 2 or frames.shape[2] % 2:
        raise InputError(f"h264: frames must have even height and width, got {frames.shape[1:3]}")
    rate = Fraction(fps).limit_denominator(1001)

    def encode(quality: int) -> bytes:
        buf = io.BytesIO()
        with av.open(buf, "w", format="mp4") as out:
            stream = out.add_stream("libx264", rate=rate)
            stream.width, stream.height, stream.pix_fmt = (
                frames.shape[2],
                frames.shape[1],
                "yuv420p",
            )
            stream.options = {"crf": str(H264_CRF[1] - quality), "preset": "medium"}
            stream.codec_context.thread_count = 1  # one thread: the same bytes every run
            for a in frames:
                out.mux(stream.encode(av.VideoFrame.from_ndarray(a, format="rgb24")))
            out.mux(stream.encode(None))
        return buf.getvalue()

    return encode


def h264_decode(data: bytes) -> Tensor:
    """MP4 bytes -> ``[3, T, H, W]`` in [-1, 1]."""
    import av

    from mmtok.image.io import from_uint8

    with av.open(io.BytesIO(data)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    return from_uint8(torch.from_numpy(np.stack(frames)).permute(3, 0, 1, 2))


def h264_at_bits(x: Tensor, fps: float, budget_bits: float) -> CodecResult:
    """Clip ``x [3, T, H, W]`` through H.264 at the best CRF whose MP4 file (container
    included) fits ``budget_bits``; when none does, CRF 51 (``fits`` False). ``quality`` is
    51 - CRF."""
    quality, data, fits = fit_quality(h264_encoder(x, fps), int(budget_bits // 8), 0,
                                      H264_CRF[1] - H264_CRF[0])  # fmt: skip
    return CodecResult(quality, 8 * len(data), fits, h264_decode(data))


# --- audio ----------------------------------------------------------------------------------
def _samples(frame) -> np.ndarray:  # noqa: ANN001 (av.AudioFrame)
    """A decoded mono frame as float32 in [-1, 1] (libopus decodes to s16 or flt)."""
    a = frame.to_ndarray().reshape(-1)
    return a.astype(np.float32) / 32768.0 if a.dtype == np.int16 else a.astype(np.float32)


def align(x: Tensor, z: Tensor, max_lag: int = 4096) -> Tensor:
    """``z [1, T']`` shifted by the lag in [0, max_lag] that best correlates with ``x [1, T]``
    (its first 65536 samples), cut or zero-padded to T."""
    n = x.shape[1]
    a = x[0, : min(n, 1 << 16)]
    best = max(range(0, max_lag + 1, 1),
               key=lambda k: float((a[: len(a)] * z[0, k : k + len(a)]).sum())
               if z.shape[1] >= k + len(a) else -1e9)  # fmt: skip
    z = z[:, best : best + n]
    return torch.nn.functional.pad(z, (0, n - z.shape[1]))


def _opus_mono(x: Tensor, rate: int, bitrate: int) -> Tensor:
    """``[1, T]`` at ``rate`` through libopus CBR at ``bitrate`` b/s, back at ``rate``,
    delay-compensated and cut to T."""
    import av

    y48 = AF.resample(x, rate, OPUS_RATE)[0].numpy().astype(np.float32)
    enc = av.CodecContext.create("libopus", "w")
    enc.sample_rate, enc.layout, enc.format = OPUS_RATE, "mono", "flt"
    enc.bit_rate, enc.options = bitrate, {"vbr": "off", "frame_duration": "20"}
    dec = av.CodecContext.create("libopus", "r")
    dec.sample_rate, dec.layout = OPUS_RATE, "mono"
    out, hop = [], OPUS_FRAME
    pad = np.concatenate([y48, np.zeros(4 * hop, np.float32)])
    for i in range(0, len(pad) - hop + 1, hop):
        frame = av.AudioFrame.from_ndarray(pad[None, i : i + hop], format="flt", layout="mono")
        frame.sample_rate, frame.pts = OPUS_RATE, i
        for packet in enc.encode(frame):
            out += [_samples(f) for f in dec.decode(packet)]
    for packet in enc.encode(None):
        out += [_samples(f) for f in dec.decode(packet)]
    z = torch.from_numpy(np.concatenate(out).astype(np.float32))[None]
    z = AF.resample(z, OPUS_RATE, rate)
    return align(x, z)


def opus_roundtrip(x: Tensor, rate: int, bitrate: int) -> Tensor:
    """``x [C, T]`` at ``rate`` Hz through libopus CBR at ``bitrate`` b/s per channel (each
    channel coded alone), decoded, resampled back, delay-aligned: ``[C, T]``."""
    if x.dim() != 2 or x.shape[-1] == 0:
        raise InputError(f"opus: expected a [C, T] waveform, got {list(x.shape)}")
    if not OPUS_FLOOR <= bitrate <= OPUS_CEILING:
        raise InputError(f"opus: bitrate {bitrate} b/s is outside [{OPUS_FLOOR}, {OPUS_CEILING}]")
    x = x.detach().float().cpu()
    return torch.cat([_opus_mono(x[c : c + 1], rate, bitrate) for c in range(x.shape[0])])


@dataclass
class OpusResult:
    """A waveform through Opus at (close to) a requested bitrate per channel."""

    requested: float  # b/s per channel asked for (the tokenizer's bitrate)
    bitrate: int  # b/s per channel given to libopus: requested, clamped to its range
    recon: Tensor  # [C, T] in [-1, 1]

    @property
    def clamped(self) -> str:
        """'' when Opus ran at the requested rate, else 'floor' or 'ceiling'."""
        if self.requested < OPUS_FLOOR:
            return "floor"
        return "ceiling" if self.requested > OPUS_CEILING else ""


def opus_bitrate(requested: float) -> int:
    """The bitrate Opus runs at for ``requested`` b/s: rounded, clamped to [6, 510] kbit/s."""
    return min(OPUS_CEILING, max(OPUS_FLOOR, int(round(requested))))


def opus_at_bitrate(x: Tensor, rate: int, requested: float) -> OpusResult:
    """``x [C, T]`` at ``rate`` through Opus at ``requested`` b/s per channel (clamped)."""
    bitrate = opus_bitrate(requested)
    return OpusResult(requested, bitrate, opus_roundtrip(x, rate, bitrate))
