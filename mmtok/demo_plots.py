"""PNG figures for the demo report (matplotlib, Agg backend; no display needed).

Legend: C channels, T time, H, W pixels, Q code streams; tensors are float in [-1, 1].
"""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import Tensor  # noqa: E402

from mmtok.fileutil import atomic_path  # noqa: E402


def _save(fig: plt.Figure, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, bbox_inches="tight", format="png")
    plt.close(fig)


def _img(x: Tensor) -> np.ndarray:
    """``[3, H, W]`` in [-1, 1] -> HxWx3 in [0, 1]."""
    return ((x.clamp(-1, 1) + 1) / 2).permute(1, 2, 0).numpy()


def token_grid(ids: Tensor, codebook_size: int, path: str | os.PathLike) -> None:
    """ids ``[Q, *grid]`` of one sample: first stream as an image (audio: one row per stream)."""
    if ids.dim() == 2:  # audio: [Q, t]
        grid = ids.numpy()
    elif ids.dim() == 3:  # image: [Q, h, w]
        grid = ids[0].numpy()
    else:  # video: [Q, t, h, w] -> latent frames side by side
        grid = np.concatenate(list(ids[0].numpy()), axis=1)
    fig, ax = plt.subplots(figsize=(min(12, 2 + grid.shape[1] / 8), 2 + grid.shape[0] / 8))
    im = ax.imshow(grid, cmap="nipy_spectral", vmin=0, vmax=codebook_size - 1, aspect="auto",
                   interpolation="nearest")  # fmt: skip
    fig.colorbar(im, ax=ax, label="token id")
    ax.set_title(f"token ids, grid {list(ids.shape[1:])}, Q={ids.shape[0]}")
    if ids.dim() == 2:  # audio: rows are code streams, columns token frames
        ax.set_yticks(range(grid.shape[0]), [f"stream {q}" for q in range(grid.shape[0])])
        ax.set_xlabel("token frame")
    _save(fig, path)


def usage_histogram(ids: Tensor, codebook_size: int, path: str | os.PathLike) -> float:
    """Bar plot of code counts; returns the fraction of the codebook used."""
    counts = torch.bincount(ids.flatten(), minlength=codebook_size).numpy()
    fig, ax = plt.subplots(figsize=(8, 2.5))
    ax.bar(np.arange(codebook_size), counts, width=1.0)
    used = float((counts > 0).mean())
    ax.set_title(f"codebook usage: {used:.0%} of {codebook_size} codes")
    ax.set_xlabel("code")
    _save(fig, path)
    return used


def spectrograms(x: Tensor, y: Tensor, sample_rate: int, path: str | os.PathLike) -> None:
    """Original vs reconstruction log-magnitude spectrograms (first channel)."""
    fig, axes = plt.subplots(2, 1, figsize=(9, 5), sharex=True)
    for ax, sig, title in ((axes[0], x, "original"), (axes[1], y, "reconstruction")):
        ax.specgram(sig[0].numpy(), NFFT=512, Fs=sample_rate, noverlap=384, cmap="magma")
        ax.set_title(title)
        ax.set_ylabel("Hz")
    axes[1].set_xlabel("s")
    _save(fig, path)


def frame_strip(x: Tensor, y: Tensor, path: str | os.PathLike, n: int = 8) -> None:
    """Video ``[3, T, H, W]``: n evenly spaced frames, original over reconstruction."""
    idx = np.linspace(0, x.shape[1] - 1, min(n, x.shape[1])).round().astype(int)
    fig, axes = plt.subplots(2, len(idx), figsize=(2.4 * len(idx), 5.2), squeeze=False)
    for j, t in enumerate(idx):
        for i, v in enumerate((x, y)):
            axes[i, j].imshow(_img(v[:, t]))
            axes[i, j].set_xticks([])
            axes[i, j].set_yticks([])
        axes[0, j].set_title(f"frame {t}", fontsize=10)
    for i, label in enumerate(("original", "reconstruction")):
        axes[i, 0].set_ylabel(label, fontsize=11)
    _save(fig, path)
