"""Image training data: seeded random crops, held-out images, an originals/reconstructions grid.

Legend: H, W pixels, c = ``data.crop``. Samples are float32 ``[3, c, c]`` in [-1, 1].

Image data takes nothing from the tokenizer (crop and held-out sizes are the recipe's): the
data hooks take an ``ImageSpec`` only so that every modality's hooks have one signature.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import Dataset

from mmtok.image.io import from_uint8, load_image, to_uint8
from mmtok.media import SUFFIXES as MEDIA_SUFFIXES
from mmtok.tokenizer import Tokenizer
from mmtok.train.data import DataConfig, Key, key_generator, list_files

SUFFIXES = MEDIA_SUFFIXES["image"]  # the files prep and the CLI accept


@dataclass(frozen=True)
class ImageSpec:
    """What image data takes from the tokenizer: nothing (see the module docstring)."""

    @classmethod
    def of(cls, tok: Tokenizer) -> ImageSpec:
        return cls()


def _load_for_crops(path: Path, resize: int | None, crop: int) -> Tensor:
    """uint8 ``[3, H, W]``: short side resized to ``resize`` (if set), at least ``crop``."""
    x = load_image(path, size=resize, resize="short_side", crop="none")
    if min(x.shape[-2:]) < crop:
        x = load_image(path, size=crop, resize="short_side", crop="none")
    return to_uint8(x)


class ImageCrops(Dataset):
    """``repeats`` random ``crop`` x ``crop`` crops per image and epoch, keyed by (epoch, index).

    Images are decoded once and kept as uint8. The crop position and the optional horizontal
    flip of key (epoch, i) come from a generator seeded by (seed, epoch, i); index i reads
    image ``i % len(files)``.
    """

    def __init__(self, files: Sequence[Path], crop: int, resize: int | None = None,
                 flip: bool = True, repeats: int = 1, seed: int = 0) -> None:  # fmt: skip
        self.images = [_load_for_crops(Path(f), resize, crop) for f in files]
        self.crop, self.flip, self.repeats, self.seed = crop, flip, repeats, seed

    def __len__(self) -> int:
        return len(self.images) * self.repeats

    def __getitem__(self, key: Key) -> Tensor:
        epoch, index = key
        image = self.images[index % len(self.images)]
        g = key_generator(self.seed, epoch, index)
        h, w = image.shape[-2:]
        top = int(torch.randint(h - self.crop + 1, (), generator=g))
        left = int(torch.randint(w - self.crop + 1, (), generator=g))
        x = image[:, top : top + self.crop, left : left + self.crop]
        if self.flip and bool(torch.rand((), generator=g) < 0.5):
            x = x.flip(-1)
        return from_uint8(x.contiguous())  # [3, c, c]


def train_set(cfg: DataConfig, seed: int, spec: ImageSpec) -> ImageCrops:
    """Training crops of ``cfg``'s files (``spec`` holds nothing for images)."""
    files = list_files(cfg.manifest, cfg.split, SUFFIXES)
    return ImageCrops(files, cfg.crop, cfg.resize, cfg.flip, cfg.repeats, seed)


def eval_set(cfg: DataConfig, spec: ImageSpec) -> list[Tensor]:
    """Held-out images ``[3, H, W]``: short side to ``eval_size`` + centre crop (if set)."""
    files = list_files(cfg.manifest, cfg.eval_split, SUFFIXES)[: cfg.eval_max]
    return [load_image(f, size=cfg.eval_size) for f in files]


def plot_examples(originals: Sequence[Tensor], recons: Sequence[Tensor], path: Path,
                  spec: ImageSpec) -> None:  # fmt: skip
    """PNG grid: originals on the top row, reconstructions below (``[3, H, W]`` in [-1, 1])."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(originals)
    fig, axes = plt.subplots(2, n, figsize=(2.5 * n, 5.2), squeeze=False)
    for j, (x, y) in enumerate(zip(originals, recons, strict=True)):
        for row, img in enumerate((x, y)):
            ax = axes[row][j]
            ax.imshow(to_uint8(img).permute(1, 2, 0).cpu().numpy())
            ax.set_xticks([])
            ax.set_yticks([])
        axes[0][j].set_title(f"held-out {j}", fontsize=8)
    axes[0][0].set_ylabel("original")
    axes[1][0].set_ylabel("reconstruction")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
