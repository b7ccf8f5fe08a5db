"""Video training data: seeded random clips, held-out clips, frame strips, held-out evaluation.

Legend: T frames, H, W pixels, c = the tokenizer's ``clip_frames``, s = ``data.crop``.
Samples are float32 ``[3, c, s, s]`` in [-1, 1].

The clip length and frame rate are the tokenizer's (``model.clip_frames``, ``model.fps``):
the trainer builds the model first and passes its ``ClipSpec`` (``ClipSpec.of(tokenizer)``) to
``train_set``, ``eval_set`` and ``plot_examples``.

``python -m mmtok.train.video PRESET_OR_DIR [--recipe R]`` prints the held-out metrics of a
trained tokenizer (PSNR, SSIM, codebook usage, tokens per second); see recipes/README.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import Dataset

from mmtok.errors import InputError
from mmtok.image.io import from_uint8, to_uint8
from mmtok.media import SUFFIXES as MEDIA_SUFFIXES
from mmtok.metrics import psnr, ssim
from mmtok.quantization.metrics import add_code_hits
from mmtok.train.data import DataConfig, Key, key_generator, list_files
from mmtok.video.io import load_video
from mmtok.video.tokenizer import VideoTokenizer

SUFFIXES = MEDIA_SUFFIXES["video"]  # the files prep and the CLI accept
EVAL_CLIPS = 3  # held-out clips per video, evenly spread over it
STRIP_FRAMES = 4  # frames per clip in the reconstruction plot


@dataclass(frozen=True)
class ClipSpec:
    """Frames per clip and the frame rate files are sampled at (None: the source rate)."""

    clip_frames: int = 16
    fps: float | None = None

    @classmethod
    def of(cls, tok: VideoTokenizer) -> ClipSpec:
        return cls(tok.clip_frames, tok.fps)


def _load_for_clips(path: Path, spec: ClipSpec, resize: int | None, crop: int) -> Tensor:
    """uint8 ``[3, T >= c, H, W]`` at ``spec.fps``, short side to ``resize`` (if set) and at
    least ``crop``; a video shorter than one clip repeats its last frame."""
    x = load_video(path, fps=spec.fps, size=resize)
    if min(x.shape[-2:]) < crop:
        x = load_video(path, fps=spec.fps, size=crop)
    x = to_uint8(x)
    if x.shape[1] < spec.clip_frames:
        x = torch.cat([x, x[:, -1:].expand(-1, spec.clip_frames - x.shape[1], -1, -1)], dim=1)
    return x.contiguous()


class VideoClips(Dataset):
    """Random ``c``-frame, ``crop`` x ``crop`` clips keyed by (epoch, index).

    Each video is decoded once (at ``spec.fps``, short side resized to ``resize``) and kept as
    uint8. A video of T frames has ``max(1, T // c)`` slots per repeat, so longer videos give
    proportionally more clips per epoch. The start frame, crop position and optional horizontal
    flip of key (epoch, i) come from a generator seeded by (seed, epoch, i).
    """

    def __init__(self, files: Sequence[Path], spec: ClipSpec, crop: int,
                 resize: int | None = None, flip: bool = True, repeats: int = 1,
                 seed: int = 0) -> None:  # fmt: skip
        self.videos = [_load_for_clips(Path(f), spec, resize, crop) for f in files]
        self.slots = [v for v, x in enumerate(self.videos)
                      for _ in range(max(1, x.shape[1] // spec.clip_frames))]  # fmt: skip
        self.spec, self.crop, self.flip, self.repeats, self.seed = spec, crop, flip, repeats, seed

    def __len__(self) -> int:
        return len(self.slots) * self.repeats

    def __getitem__(self, key: Key) -> Tensor:
        epoch, index = key
        video = self.videos[self.slots[index % len(self.slots)]]
        g = key_generator(self.seed, epoch, index)
        c, (frames, h, w) = self.spec.clip_frames, video.shape[1:]
        start = int(torch.randint(frames - c + 1, (), generator=g))
        top = int(torch.randint(h - self.crop + 1, (), generator=g))
        left = int(torch.randint(w - self.crop + 1, (), generator=g))
        x = video[:, start : start + c, top : top + self.crop, left : left + self.crop]
        if self.flip and bool(torch.rand((), generator=g) < 0.5):
            x = x.flip(-1)
        return from_uint8(x.contiguous())  # [3, c, s, s]


def train_set(cfg: DataConfig, seed: int, spec: ClipSpec) -> VideoClips:
    """Training clips of ``cfg``'s files cut at ``spec``'s clip length and frame rate."""
    files = list_files(cfg.manifest, cfg.split, SUFFIXES)
    return VideoClips(files, spec, cfg.crop, cfg.resize, cfg.flip, cfg.repeats, seed)


def heldout_clips(path: Path, spec: ClipSpec, size: int | None) -> list[Tensor]:
    """Up to EVAL_CLIPS ``[3, c, H, W]`` clips evenly spread over ``path`` (the whole video
    if shorter than one clip), short side to ``size`` + a centred square crop (if set)."""
    x = load_video(path, fps=spec.fps, size=size, crop=size)
    c, frames = spec.clip_frames, x.shape[1]
    if frames <= c:
        return [x]
    n = min(EVAL_CLIPS, frames // c)
    starts = [round(i * (frames - c) / max(1, n - 1)) for i in range(n)]
    return [x[:, a : a + c].contiguous() for a in starts]


def eval_set(cfg: DataConfig, spec: ClipSpec) -> list[Tensor]:
    """Held-out clips ``[3, c, H, W]`` of the first ``eval_max`` held-out videos."""
    files = list_files(cfg.manifest, cfg.eval_split, SUFFIXES)[: cfg.eval_max]
    return [clip for f in files for clip in heldout_clips(f, spec, cfg.eval_size)]


def plot_examples(originals: Sequence[Tensor], recons: Sequence[Tensor], path: Path,
                  spec: ClipSpec) -> None:  # fmt: skip
    """PNG: per held-out clip ``[3, T, H, W]``, STRIP_FRAMES evenly spaced frames of the
    original above the same frames of the reconstruction (frame numbers of the clip; ``spec``
    is not needed to draw them)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(originals)
    k = min(STRIP_FRAMES, min(x.shape[1] for x in originals))
    fig, axes = plt.subplots(2 * n, k, figsize=(1.8 * k, 1.9 * 2 * n), squeeze=False)
    for j, (x, y) in enumerate(zip(originals, recons, strict=True)):
        idx = torch.linspace(0, x.shape[1] - 1, k).round().long().tolist()
        for row, video in enumerate((x, y)):
            for col, t in enumerate(idx):
                ax = axes[2 * j + row][col]
                ax.imshow(to_uint8(video[:, t]).permute(1, 2, 0).cpu().numpy())
                ax.set_xticks([])
                ax.set_yticks([])
                if row == 0:
                    ax.set_title(f"clip {j}, frame {t}", fontsize=7)
            axes[2 * j + row][0].set_ylabel("original" if row == 0 else "recon", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


@dataclass
class HeldoutReport:
    """Held-out quality of a video tokenizer (means over clips; usage over all of them)."""

    clips: int
    clip_shape: list[int]  # [3, c, H, W]
    psnr_db: float
    ssim: float
    used_codes: int
    total_codes: int
    usage: float
    tokens_per_second: float  # at clip_shape's H x W (Q streams counted)
    tokens_per_second_64: float  # the same for 64 x 64 video
    per_video: dict[str, dict[str, float]]

    def text(self) -> str:
        rows = [f"  {name}: PSNR {m['psnr_db']:.2f} dB, SSIM {m['ssim']:.4f}"
                for name, m in self.per_video.items()]  # fmt: skip
        return "\n".join([
            f"held-out clips: {self.clips} of {self.clip_shape}",
            f"PSNR {self.psnr_db:.2f} dB, SSIM {self.ssim:.4f}",
            f"codebook usage {self.usage:.1%} ({self.used_codes}/{self.total_codes})",
            f"tokens per second: {self.tokens_per_second:,.0f} at {self.clip_shape[-2]}x"
            f"{self.clip_shape[-1]}, {self.tokens_per_second_64:,.0f} at 64x64",
            *rows,
        ])  # fmt: skip


def tokens_per_second(tok: VideoTokenizer, height: int, width: int) -> float:
    """Tokens per second of video at ``tok.fps``: latent positions per second times Q."""
    if not tok.fps:
        raise InputError("tokens_per_second: the tokenizer keeps source frame rates (fps=None)")
    t, h, w = tok.token_grid((tok.clip_frames, height, width))
    return t * h * w * tok.num_codebooks * tok.fps / tok.clip_frames


@torch.no_grad()
def evaluate_heldout(tok: VideoTokenizer, cfg: DataConfig) -> HeldoutReport:
    """Encode + decode the held-out clips of ``cfg`` (``eval_set``) with ``tok``."""
    files = list_files(cfg.manifest, cfg.eval_split, SUFFIXES)[: cfg.eval_max]
    tok.eval()
    spec, per_video, scores, hits, shape = ClipSpec.of(tok), {}, [], None, []
    for f in files:
        mine = []
        for x in heldout_clips(f, spec, cfg.eval_size):
            tokens = tok.encode(x[None])
            y = tok.decode(tokens)[0].clamp(-1, 1)
            mine.append((psnr(x, y), ssim(x, y)))
            ids = tokens.ids.transpose(0, 1).reshape(tokens.ids.shape[1], -1)  # [Q, N]
            hits = add_code_hits(hits, ids, tok.codebook_size)
            shape = list(x.shape)
        scores += mine
        per_video[f.name] = {"psnr_db": sum(p for p, _ in mine) / len(mine),
                             "ssim": sum(s for _, s in mine) / len(mine)}  # fmt: skip
    used = int((hits > 0).sum())
    return HeldoutReport(
        clips=len(scores), clip_shape=shape,
        psnr_db=sum(p for p, _ in scores) / len(scores),
        ssim=sum(s for _, s in scores) / len(scores),
        used_codes=used, total_codes=hits.numel(), usage=used / hits.numel(),
        tokens_per_second=tokens_per_second(tok, shape[-2], shape[-1]),
        tokens_per_second_64=tokens_per_second(tok, 64, 64), per_video=per_video,
    )  # fmt: skip


if __name__ == "__main__":  # the held-out CLI (mmtok.train.heldout loads the recipe)
    from mmtok.train.heldout import main

    raise SystemExit(main("video"))
