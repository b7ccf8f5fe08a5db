"""Modality table: how the trainer builds, feeds and shows the tokenizer of each modality.

A recipe's ``model.modality`` picks an entry; the rest of its ``model`` section is passed to
the entry's ``factory`` as keyword arguments (checked against its signature by the config).
Each modality module (``mmtok.train.image``, ``video``, ``audio``) provides the entry's functions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import Tensor
from torch.utils.data import Dataset

from mmtok.image.tokenizer import image_tokenizer
from mmtok.tokenizer import Tokenizer
from mmtok.train import audio, image, video

if TYPE_CHECKING:
    from mmtok.train.config import DataConfig, ModelConfig


@dataclass(frozen=True)
class Modality:
    """factory: kwargs -> Tokenizer. train_set(data config, seed): Dataset keyed by
    ``(epoch, index)`` giving one float sample. eval_set(data config): held-out samples
    (``[C, *S]`` each, sizes may differ). plot_examples(originals, recons, png path)."""

    factory: Callable[..., Tokenizer]
    train_set: Callable[[DataConfig, int], Dataset]
    eval_set: Callable[[DataConfig], list[Tensor]]
    plot_examples: Callable[[Sequence[Tensor], Sequence[Tensor], Path], None]


MODALITIES: dict[str, Modality] = {
    "image": Modality(image_tokenizer, image.train_set, image.eval_set, image.plot_examples),
    "video": Modality(video.build_tokenizer, video.train_set, video.eval_set, video.plot_examples),
    "audio": Modality(audio.build_tokenizer, audio.train_set, audio.eval_set, audio.plot_examples),
}


def build_model(cfg: ModelConfig) -> Tokenizer:
    """The tokenizer of ``cfg.modality`` built by its factory from ``cfg.args``."""
    kwargs: dict[str, Any] = dict(cfg.args)
    return MODALITIES[cfg.modality].factory(**kwargs)
