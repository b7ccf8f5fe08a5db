"""Modality table: how the trainer builds, feeds and shows the tokenizer of each modality.

A recipe's ``model.modality`` picks an entry; the rest of its ``model`` section is passed to
the entry's ``factory`` as keyword arguments (checked against its signature by the config).
Each modality module (``mmtok.train.image``, ``video``, ``audio``) provides the entry's functions.
Imports go one way: ``config`` -> ``modalities`` -> ``<modality>`` -> ``data`` / ``losses``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor
from torch.utils.data import Dataset

from mmtok.audio.tokenizer import audio_tokenizer
from mmtok.image.tokenizer import image_tokenizer
from mmtok.tokenizer import Tokenizer
from mmtok.train import audio, image, video
from mmtok.train.data import DataConfig
from mmtok.video.tokenizer import video_tokenizer


@dataclass(frozen=True)
class Modality:
    """factory: kwargs -> Tokenizer. spec(tokenizer): what the data functions need from the
    tokenizer being trained (sample rate, clip length ...), passed to each of them explicitly.
    train_set(data config, seed, spec): Dataset keyed by ``(epoch, index)`` giving one float
    sample. eval_set(data config, spec): held-out samples (``[C, *S]`` each, sizes may differ).
    plot_examples(originals, recons, png path, spec)."""

    factory: Callable[..., Tokenizer]
    spec: Callable[[Any], Any]
    train_set: Callable[[DataConfig, int, Any], Dataset]
    eval_set: Callable[[DataConfig, Any], list[Tensor]]
    plot_examples: Callable[[Sequence[Tensor], Sequence[Tensor], Path, Any], None]


MODALITIES: dict[str, Modality] = {
    "image": Modality(image_tokenizer, image.ImageSpec.of, image.train_set, image.eval_set,
                      image.plot_examples),
    "video": Modality(video_tokenizer, video.ClipSpec.of, video.train_set, video.eval_set,
                      video.plot_examples),
    "audio": Modality(audio_tokenizer, audio.AudioSpec.of, audio.train_set, audio.eval_set,
                      audio.plot_examples),
}  # fmt: skip


def build_model(modality: str, args: Mapping[str, Any]) -> Tokenizer:
    """The tokenizer of ``modality`` built by its factory from the keyword arguments ``args``
    (a recipe's ``model`` section: ``build_model(cfg.model.modality, cfg.model.args)``)."""
    return MODALITIES[modality].factory(**dict(args))
