"""Image files <-> float tensors (Pillow to read and write, torchvision to resize).

Legend: B batch, H height, W width. An image is float32 ``[3, H, W]`` in [-1, 1], a batch
``[B, 3, H, W]``; the uint8 form (``to_uint8`` / ``from_uint8``) holds the same pixels in
[0, 255]. Policies (docs/media_io.md): grayscale is repeated to 3 channels, 16-bit grayscale
is scaled to 8 bits, alpha (RGBA, LA, palette or tRNS transparency) is composited on white,
the EXIF orientation is applied, an animated file gives its first frame. Resizing is
antialiased bilinear (``torchvision.transforms.v2.functional.resize``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image, ImageOps
from torch import Tensor

from mmtok.errors import InputError
from mmtok.fileutil import atomic_path, require_file

ResizeMode = Literal["short_side", "exact", "none"]
CropMode = Literal["center", "none"]
Size = int | tuple[int, int]

_RESIZE_MODES = ("short_side", "exact", "none")
_CROP_MODES = ("center", "none")
_JPEG = ("JPEG", {"quality": 95})
_SAVE_FORMATS = {".png": ("PNG", {}), ".jpg": _JPEG, ".jpeg": _JPEG}
_GRAY16_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")


def to_uint8(x: Tensor) -> Tensor:
    """Float in [-1, 1] (any shape) -> uint8 in [0, 255]; values outside are clipped."""
    return ((x.detach().float().clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8)


def from_uint8(x: Tensor) -> Tensor:
    """uint8 in [0, 255] (any shape) -> float32 in [-1, 1]."""
    if x.dtype != torch.uint8:
        raise InputError(f"from_uint8: expected a uint8 tensor, got {x.dtype}")
    return x.float() / 127.5 - 1.0


def _target(size: Size) -> tuple[int, int]:
    """Validate ``size`` and return it as (height, width)."""
    hw = (size, size) if isinstance(size, int) else tuple(size)
    if len(hw) != 2 or not all(isinstance(s, int) and s > 0 for s in hw):
        raise InputError(f"size: expected a positive int or (height, width), got {size!r}")
    return hw  # type: ignore[return-value]


def resize_crop(
    x: Tensor, size: Size | None, resize: ResizeMode = "short_side", crop: CropMode = "center"
) -> Tensor:
    """Resize and crop ``x [..., H, W]`` (float or uint8) towards ``size``.

    size: int s means (s, s); (height, width) otherwise; None returns ``x`` unchanged.
    resize: "short_side" scales (aspect kept) so the image just covers ``size`` (an int size
        sets the short side to s); "exact" scales to ``size`` ignoring aspect; "none" keeps it.
    crop: "center" cuts the centred ``size`` window (InputError when the image is smaller);
        "none" keeps what the resize gave.
    """
    if resize not in _RESIZE_MODES:
        raise InputError(f"resize: expected one of {_RESIZE_MODES}, got {resize!r}")
    if crop not in _CROP_MODES:
        raise InputError(f"crop: expected one of {_CROP_MODES}, got {crop!r}")
    if size is None:
        return x
    th, tw = _target(size)
    h, w = x.shape[-2:]
    if resize == "none" and crop == "none":
        raise InputError(f"size={size!r} has no effect with resize='none' and crop='none'")
    if resize == "exact":
        x = TF.resize(x, [th, tw], antialias=True)
    elif resize == "short_side":
        scale = max(th / h, tw / w)
        new = (max(th, round(h * scale)), max(tw, round(w * scale)))
        if new != (h, w):
            x = TF.resize(x, list(new), antialias=True)
    if crop == "center":
        if x.shape[-2] < th or x.shape[-1] < tw:
            got = tuple(x.shape[-2:])
            raise InputError(f"center crop {(th, tw)} is larger than the image {got}")
        x = TF.center_crop(x, [th, tw])
    return x


def _rgb_array(im: Image.Image) -> np.ndarray:
    """Any Pillow image -> uint8 [H, W, 3] per the module's channel/alpha policy."""
    if im.mode in _GRAY16_MODES:
        gray = np.asarray(im).astype(np.float64) / 257.0
        gray = np.clip(np.round(gray), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if im.mode in _ALPHA_MODES or "transparency" in im.info:
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.array(Image.alpha_composite(white, rgba).convert("RGB"))
    return np.array(im.convert("RGB"))


def _read_uint8(path: Path) -> Tensor:
    """Decode an image file fully into uint8 [3, H, W]; InputError naming the path."""
    try:
        with Image.open(path) as im:
            im.load()  # decode now so a truncated file fails here
            im = ImageOps.exif_transpose(im)
            arr = _rgb_array(im)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise InputError(f"image file {str(path)!r} could not be read as an image: {e}") from None
    return torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1).contiguous()


def load_image(
    path: str | os.PathLike,
    size: Size | None = None,
    resize: ResizeMode = "short_side",
    crop: CropMode = "center",
) -> Tensor:
    """Read an image file as float32 ``[3, H, W]`` in [-1, 1].

    path: any format Pillow reads. size / resize / crop: see ``resize_crop`` (defaults: short
    side to ``size`` then a centred ``size`` crop; ``size=None`` keeps the file's size).
    Raises InputError naming the path for missing, empty, truncated or non-image files.
    """
    p = require_file(path, "image file")
    x = from_uint8(_read_uint8(p))
    try:
        return resize_crop(x, size, resize, crop).clamp_(-1.0, 1.0)
    except InputError as e:
        raise InputError(f"image file {str(p)!r}: {e}") from None


def load_images(
    paths: Sequence[str | os.PathLike],
    size: Size | None = None,
    resize: ResizeMode = "short_side",
    crop: CropMode = "center",
) -> Tensor:
    """Read several images into float32 ``[B, 3, H, W]`` in [-1, 1]; all must end up one size.

    Arguments as in ``load_image``. InputError names the first file whose size differs.
    """
    if len(paths) == 0:
        raise InputError("load_images: paths is empty")
    images = [load_image(paths[0], size, resize, crop)]
    for path in paths[1:]:
        x = load_image(path, size, resize, crop)
        if x.shape != images[0].shape:
            raise InputError(
                f"image file {str(path)!r} has shape {tuple(x.shape)} after resize/crop, "
                f"expected {tuple(images[0].shape)} like {str(paths[0])!r}; pass size= to match"
            )
        images.append(x)
    return torch.stack(images)


def save_image(path: str | os.PathLike, x: Tensor) -> None:
    """Write ``x`` (float ``[3, H, W]`` or ``[1, 3, H, W]`` in [-1, 1]) as PNG or JPEG.

    The format follows the suffix (.png, .jpg, .jpeg; JPEG quality 95). Values outside
    [-1, 1] are clipped. The write is atomic: on failure nothing is left at ``path``.
    """
    p = Path(path)
    fmt = _SAVE_FORMATS.get(p.suffix.lower())
    if fmt is None:
        raise InputError(f"image path {str(p)!r}: expected a .png, .jpg or .jpeg suffix")
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise InputError(f"save_image x: expected a float tensor, got {type(x).__name__}")
    if x.dim() == 4 and x.shape[0] == 1:
        x = x[0]
    if x.dim() != 3 or x.shape[0] != 3:
        raise InputError(f"save_image x: expected [3, H, W] or [1, 3, H, W], got {list(x.shape)}")
    if not torch.isfinite(x).all():
        raise InputError("save_image x: contains NaN or infinite values")
    arr = to_uint8(x).permute(1, 2, 0).cpu().numpy()
    with atomic_path(p) as tmp:
        Image.fromarray(arr).save(tmp, format=fmt[0], **fmt[1])
