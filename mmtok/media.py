"""Media files <-> tokenizer inputs, by modality (used by the CLI, the demo and dataset prep).

Legend: C channels, T time (samples or frames), H, W pixels. ``read_media`` returns a batch of
one: image ``[1, 3, H, W]``, audio ``[1, C, T]`` at the tokenizer's sample rate, video
``[1, 3, T, H, W]``; ``write_media`` writes the inverse (PNG, WAV, MP4) atomically.
"""

from __future__ import annotations

import os
from pathlib import Path

from torch import Tensor

from mmtok.errors import InputError

SUFFIXES = {
    "image": {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"},
    "audio": {".wav", ".flac", ".ogg", ".mp3", ".m4a", ".aiff", ".aif", ".opus"},
    "video": {".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v"},
}
OUTPUT_SUFFIX = {"image": ".png", "audio": ".wav", "video": ".mp4"}


def detect_modality(path: str | os.PathLike) -> str:
    """Modality from the file suffix; InputError naming the path if it is unknown."""
    suffix = Path(path).suffix.lower()
    for modality, suffixes in SUFFIXES.items():
        if suffix in suffixes:
            return modality
    known = sorted(s for group in SUFFIXES.values() for s in group)
    raise InputError(f"{str(path)!r}: cannot tell the modality from suffix {suffix!r} "
                     f"(known: {' '.join(known)})")  # fmt: skip


def read_media(path: str | os.PathLike, tokenizer: object) -> Tensor:
    """Read ``path`` as the input of ``tokenizer`` (its modality, sample rate, channels)."""
    modality = getattr(tokenizer, "modality", "")
    if modality == "image":
        from mmtok.image.io import load_image

        return load_image(path).unsqueeze(0)
    if modality == "audio":
        from mmtok.audio.io import load_audio

        channels = "mono" if tokenizer.channels == 1 else tokenizer.channels
        return load_audio(path, tokenizer.sample_rate, channels=channels).samples.unsqueeze(0)
    if modality == "video":
        from mmtok.video.io import load_video

        return load_video(path, fps=tokenizer.fps).unsqueeze(0)
    raise InputError(f"{str(path)!r}: no reader for modality {modality!r}")


def write_media(path: str | os.PathLike, x: Tensor, tokenizer: object) -> None:
    """Write one decoded sample ``x`` (batch of 1 or unbatched) for ``tokenizer``'s modality."""
    modality = getattr(tokenizer, "modality", "")
    x = x[0] if x.dim() in (4, 3) and modality == "image" and x.dim() == 4 else x
    if modality == "image":
        from mmtok.image.io import save_image

        return save_image(path, x)
    if modality == "audio":
        from mmtok.audio.io import save_audio

        return save_audio(path, x[0] if x.dim() == 3 else x, tokenizer.sample_rate)
    if modality == "video":
        from mmtok.video.io import save_video

        return save_video(path, x[0] if x.dim() == 5 else x, tokenizer.fps)
    raise InputError(f"{str(path)!r}: no writer for modality {modality!r}")
