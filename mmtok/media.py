"""Media files <-> tokenizer inputs, by modality (used by the CLI, the demo and dataset prep).

Legend: C channels, T time (samples or frames), H, W pixels. ``read_media`` returns a batch of
one: image ``[1, 3, H, W]``, audio ``[1, C, T]`` at the tokenizer's sample rate, video
``[1, 3, T, H, W]``; ``write_media`` writes the inverse (PNG, WAV, MP4) atomically.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from torch import Tensor

from mmtok.errors import InputError

SUFFIXES = {
    "image": {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"},
    "audio": {".wav", ".flac", ".ogg", ".mp3", ".m4a", ".aiff", ".aif", ".opus"},
    "video": {".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v"},
}
DEFAULT_FPS = 24.0
OUTPUT_SUFFIX = {"image": ".png", "audio": ".wav", "video": ".mp4"}


def a_or_an(word: str) -> str:
    """``word`` with its indefinite article, for messages: an image, an audio, a video."""
    return f"{'an' if word[:1].lower() in 'aeiou' else 'a'} {word}"


def detect_modality(path: str | os.PathLike) -> str:
    """Modality from the file suffix; InputError naming the path if it is unknown."""
    suffix = Path(path).suffix.lower()
    for modality, suffixes in SUFFIXES.items():
        if suffix in suffixes:
            return modality
    known = sorted(s for group in SUFFIXES.values() for s in group)
    raise InputError(f"{str(path)!r}: cannot tell the modality from suffix {suffix!r} "
                     f"(known: {' '.join(known)})")  # fmt: skip


@dataclass(frozen=True)
class MediaSpec:
    """What a tokenizer needs from a file (picklable, for decoding in worker processes)."""

    modality: str
    sample_rate: int | None = None
    channels: int = 3
    fps: float | None = None

    @classmethod
    def of(cls, tokenizer: object) -> MediaSpec:
        return cls(
            getattr(tokenizer, "modality", ""),
            getattr(tokenizer, "sample_rate", None),
            getattr(tokenizer, "channels", 3),
            getattr(tokenizer, "fps", None),
        )


def read_spec(path: str | os.PathLike, spec: MediaSpec) -> Tensor:
    """Read ``path`` for ``spec``: a batch of one (see the module docstring)."""
    if spec.modality == "image":
        from mmtok.image.io import load_image

        return load_image(path).unsqueeze(0)
    if spec.modality == "audio":
        from mmtok.audio.io import load_audio

        channels = "mono" if spec.channels == 1 else spec.channels
        return load_audio(path, spec.sample_rate, channels=channels).samples.unsqueeze(0)
    if spec.modality == "video":
        from mmtok.video.io import load_video

        return load_video(path, fps=spec.fps).unsqueeze(0)
    raise InputError(f"{str(path)!r}: no reader for modality {spec.modality!r}")


def read_media(path: str | os.PathLike, tokenizer: object) -> Tensor:
    """Read ``path`` as the input of ``tokenizer`` (its modality, sample rate, channels)."""
    return read_spec(path, MediaSpec.of(tokenizer))


def duration_s(x: Tensor, spec: MediaSpec) -> float | None:
    """Seconds of media in a batch-of-one input (None for images)."""
    if spec.modality == "audio" and spec.sample_rate:
        return x.shape[-1] / spec.sample_rate
    if spec.modality == "video" and spec.fps:
        return x.shape[2] / spec.fps
    return None


def write_media(
    path: str | os.PathLike, x: Tensor, tokenizer: object, sample_rate: int | None = None
) -> None:
    """Write one decoded sample ``x`` (batch of 1 or unbatched) for ``tokenizer``'s modality.

    sample_rate: audio only, the rate to write at (e.g. ``Tokens.source_sample_rate``); the
    decoded audio is resampled from the tokenizer's rate when it differs (None or 0: the
    tokenizer's rate)."""
    modality = getattr(tokenizer, "modality", "")
    x = x[0] if x.dim() in (4, 3) and modality == "image" and x.dim() == 4 else x
    if modality == "image":
        from mmtok.image.io import save_image

        return save_image(path, x)
    if modality == "audio":
        from mmtok.audio.io import resample_audio, save_audio

        x, rate = x[0] if x.dim() == 3 else x, tokenizer.sample_rate
        if sample_rate and sample_rate != rate:
            x, rate = resample_audio(x, rate, sample_rate).clamp(-1, 1), sample_rate
        return save_audio(path, x, rate)
    if modality == "video":
        from mmtok.video.io import save_video

        fps = tokenizer.fps or DEFAULT_FPS  # a tokenizer that keeps source rates records none
        return save_video(path, x[0] if x.dim() == 5 else x, fps)
    raise InputError(f"{str(path)!r}: no writer for modality {modality!r}")
