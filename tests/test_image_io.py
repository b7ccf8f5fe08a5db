"""Tests of mmtok.image.io on small images generated with Pillow in tmp_path."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from mmtok.errors import InputError
from mmtok.image.io import from_uint8, load_image, load_images, resize_crop, save_image, to_uint8


def _rgb(h=60, w=90, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _smooth(h=64, w=96):
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    return 0.8 * torch.stack([torch.sin(2 * xx), torch.cos(2 * yy), xx * yy])


def _as_float(arr):
    return from_uint8(torch.from_numpy(arr).permute(2, 0, 1))


def test_uint8_helpers_round_trip():
    u = torch.arange(256, dtype=torch.uint8)
    x = from_uint8(u)
    assert x.dtype == torch.float32 and x.min() == -1 and x.max() == 1
    assert torch.equal(to_uint8(x), u)
    assert torch.equal(
        to_uint8(torch.tensor([-3.0, 3.0])), torch.tensor([0, 255], dtype=torch.uint8)
    )
    with pytest.raises(InputError):
        from_uint8(x)


def test_png_round_trip_is_exact(tmp_path):
    arr = _rgb()
    x = _as_float(arr)
    save_image(tmp_path / "a.png", x)
    y = load_image(tmp_path / "a.png")
    assert y.shape == (3, 60, 90) and y.dtype == torch.float32
    assert torch.equal(y, x)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a.png")), arr)


def test_jpeg_round_trip_and_batched_input(tmp_path):
    x = _smooth()
    save_image(tmp_path / "a.jpg", x[None])
    y = load_image(tmp_path / "a.jpg")
    assert 10 * math.log10(4 / ((x - y) ** 2).mean().item()) > 30
    assert Image.open(tmp_path / "a.jpg").format == "JPEG"


@pytest.mark.parametrize(
    "name, x",
    [
        ("a.bmp", torch.zeros(3, 4, 4)),
        ("a.png", torch.zeros(4, 4)),
        ("a.png", torch.zeros(2, 3, 4, 4)),
        ("a.png", torch.zeros(3, 4, 4, dtype=torch.uint8)),
        ("a.png", torch.full((3, 4, 4), float("nan"))),
    ],
)
def test_save_rejects_bad_input(tmp_path, name, x):
    with pytest.raises(InputError):
        save_image(tmp_path / name, x)
    assert list(tmp_path.iterdir()) == []


def test_save_is_atomic(tmp_path, monkeypatch):
    target = tmp_path / "a.png"
    target.write_bytes(b"old")

    def failing_save(self, fp, *args, **kwargs):
        with open(fp, "wb") as f:
            f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        save_image(target, torch.zeros(3, 4, 4))
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]
    assert target.read_bytes() == b"old"


def test_grayscale_becomes_three_equal_channels(tmp_path):
    gray = _rgb()[..., 0]
    Image.fromarray(gray).save(tmp_path / "g.png")
    x = load_image(tmp_path / "g.png")
    assert x.shape == (3, 60, 90)
    assert torch.equal(x[0], x[1]) and torch.equal(x[1], x[2])
    assert torch.equal(to_uint8(x[0]), torch.from_numpy(gray))


def test_16bit_grayscale_is_scaled_to_8_bits(tmp_path):
    Image.fromarray(np.array([[0, 65535, 257 * 100]], np.uint16)).save(tmp_path / "g16.png")
    assert to_uint8(load_image(tmp_path / "g16.png"))[0, 0].tolist() == [0, 255, 100]


def test_rgba_is_composited_on_white(tmp_path):
    rgba = np.zeros((2, 3, 4), np.uint8)
    rgba[..., 0] = 200  # red 200, green/blue 0
    rgba[..., 3] = [[0, 255, 128], [0, 255, 128]]
    Image.fromarray(rgba).save(tmp_path / "a.png")
    u = to_uint8(load_image(tmp_path / "a.png"))[:, 0]  # [3, W] of the first row
    assert u[:, 0].tolist() == [255, 255, 255]  # transparent -> white
    assert u[:, 1].tolist() == [200, 0, 0]  # opaque -> the colour
    assert u[:, 2].tolist() == pytest.approx([228, 127, 127], abs=2)  # half -> blend


def test_palette_images_are_converted(tmp_path):
    im = Image.fromarray(_rgb(16, 16)).convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    im.save(tmp_path / "p.png")
    x = load_image(tmp_path / "p.png")
    assert torch.equal(to_uint8(x), torch.from_numpy(np.array(im.convert("RGB"))).permute(2, 0, 1))
    im.info["transparency"] = 0  # palette entry 0 transparent -> white there
    im.save(tmp_path / "pt.png", transparency=0)
    u = to_uint8(load_image(tmp_path / "pt.png"))
    mask = torch.from_numpy(np.array(im) == 0)
    assert mask.any() and (u[:, mask] == 255).all()


def test_exif_orientation_is_applied(tmp_path):
    im = Image.fromarray(_rgb(20, 40))
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    im.save(tmp_path / "r.jpg", exif=exif)
    assert load_image(tmp_path / "r.jpg").shape == (3, 40, 20)


@pytest.mark.parametrize(
    "size, resize, crop, shape",
    [
        (None, "short_side", "center", (60, 90)),
        (32, "short_side", "center", (32, 32)),
        (32, "short_side", "none", (32, 48)),
        ((30, 40), "short_side", "center", (30, 40)),
        ((30, 40), "short_side", "none", (30, 45)),
        ((30, 40), "exact", "center", (30, 40)),
        (50, "exact", "none", (50, 50)),
        (50, "none", "center", (50, 50)),
        ((20, 80), "none", "center", (20, 80)),
    ],
)
def test_resize_and_crop_shapes(tmp_path, size, resize, crop, shape):
    Image.fromarray(_rgb()).save(tmp_path / "a.png")
    x = load_image(tmp_path / "a.png", size=size, resize=resize, crop=crop)
    assert x.shape == (3, *shape)
    assert x.min() >= -1 and x.max() <= 1


def test_center_crop_takes_the_middle():
    x = torch.arange(5 * 7, dtype=torch.float32).view(1, 5, 7)
    assert torch.equal(resize_crop(x, (3, 3), "none", "center"), x[:, 1:4, 2:5])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"size": 100, "resize": "none", "crop": "center"},  # crop larger than the image
        {"size": 32, "resize": "none", "crop": "none"},  # size without effect
        {"size": 0},
        {"size": (1, 2, 3)},
        {"size": 32, "resize": "shortside"},
        {"size": 32, "crop": "middle"},
    ],
)
def test_bad_resize_arguments(tmp_path, kwargs):
    Image.fromarray(_rgb()).save(tmp_path / "a.png")
    with pytest.raises(InputError, match=r"a\.png|size|resize|crop"):
        load_image(tmp_path / "a.png", **kwargs)


def test_load_images_stacks_and_checks_sizes(tmp_path):
    paths = []
    for i, (h, w) in enumerate([(60, 90), (60, 90), (40, 50)]):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(_rgb(h, w, seed=i)).save(paths[-1])
    assert load_images(paths[:2]).shape == (2, 3, 60, 90)
    assert load_images(paths, size=32).shape == (3, 3, 32, 32)
    with pytest.raises(InputError, match=r"2\.png"):
        load_images(paths)
    with pytest.raises(InputError):
        load_images([])


def _truncated(path, fmt):
    Image.fromarray(_rgb()).save(path, format=fmt)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


BAD_FILES = {
    "missing.png": lambda p: None,
    "empty.png": lambda p: p.write_bytes(b""),
    "text.png": lambda p: p.write_text("not an image\n" * 20),
    "truncated.png": lambda p: _truncated(p, "PNG"),
    "truncated.jpg": lambda p: _truncated(p, "JPEG"),
    "folder.png": lambda p: p.mkdir(),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_files_raise_input_error_naming_the_path(tmp_path, name):
    path = tmp_path / name
    BAD_FILES[name](path)
    with pytest.raises(InputError, match=name.replace(".", r"\.")):
        load_image(path)
    with pytest.raises(InputError, match=name.replace(".", r"\.")):
        load_images([path])
