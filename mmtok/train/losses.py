"""Training losses: weighted reconstruction terms from a registry plus the quantizer's loss.

Legend: B batch, C channels, S the input's spatial/temporal axes.

A term is a function ``(x, recon) -> scalar`` (both ``[B, C, *S]``) registered under a name
with ``register_loss``, optionally for some modalities only (audio STFT losses register
themselves as ``register_loss("stft", modalities=("audio",))``). A term that depends on the
tokenizer being trained (the mel losses use its sample rate) registers a factory
``make(tokenizer) -> (x, recon) -> scalar`` with ``register_tokenizer_loss``; ``TrainingLoss``
calls it once with its own tokenizer, so two tokenizers in one process never share a setting.
A recipe's ``loss`` section maps names to weights; ``quantizer`` is the weight of
``QuantizerOutput.loss`` (commitment, codebook). Terms with weight 0 are not computed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from mmtok.errors import ConfigError
from mmtok.tokenizer import Tokenizer, TokenizerOutput

QUANTIZER = "quantizer"
LossFn = Callable[[Tensor, Tensor], Tensor]
LossFactory = Callable[[Tokenizer], LossFn]


@dataclass(frozen=True)
class LossTerm:
    """make: the tokenizer being trained -> its term ``(x, recon) -> scalar``."""

    make: LossFactory
    modalities: tuple[str, ...] | None  # None: every modality


LOSSES: dict[str, LossTerm] = {}


def register_tokenizer_loss(
    name: str, modalities: tuple[str, ...] | None = None
) -> Callable[[LossFactory], LossFactory]:
    """Decorator: make ``make(tokenizer) -> ((x, recon) -> scalar)`` available as loss
    ``name`` (for terms that depend on the tokenizer, e.g. its sample rate)."""
    if name == QUANTIZER:
        raise ConfigError(f"loss name {QUANTIZER!r} is reserved for the quantizer's own loss")

    def add(make: LossFactory) -> LossFactory:
        LOSSES[name] = LossTerm(make, modalities)
        return make

    return add


def register_loss(
    name: str, modalities: tuple[str, ...] | None = None
) -> Callable[[LossFn], LossFn]:
    """Decorator: make ``fn(x, recon) -> scalar`` available as loss ``name``."""
    add_factory = register_tokenizer_loss(name, modalities)

    def add(fn: LossFn) -> LossFn:
        add_factory(lambda _tokenizer: fn)
        return fn

    return add


def available_losses(modality: str) -> list[str]:
    """Loss names a recipe of ``modality`` may weight (``quantizer`` included)."""
    names = [n for n, t in LOSSES.items() if t.modalities is None or modality in t.modalities]
    return [*sorted(names), QUANTIZER]


@register_loss("l1")
def l1_loss(x: Tensor, recon: Tensor) -> Tensor:
    """Mean absolute error."""
    return F.l1_loss(recon, x)


@register_loss("l2")
def l2_loss(x: Tensor, recon: Tensor) -> Tensor:
    """Mean squared error."""
    return F.mse_loss(recon, x)


@dataclass
class LossOutput:
    """total: the weighted sum to backpropagate; terms: each unweighted term (scalars)."""

    total: Tensor
    terms: dict[str, Tensor]


class TrainingLoss:
    """``weights`` {name: weight} -> callable ``(x, TokenizerOutput) -> LossOutput``.

    Args:
        weights: loss name -> weight (0: not computed).
        tokenizer: the tokenizer being trained; its ``modality`` picks the allowed terms and
            each term is made for it (e.g. mel losses at its sample rate).
    """

    def __init__(self, weights: Mapping[str, float], tokenizer: Tokenizer) -> None:
        modality = tokenizer.modality
        known = available_losses(modality)
        unknown = sorted(set(weights) - set(known))
        if unknown:
            raise ConfigError(f"unknown loss(es) {unknown} for {modality} (known: {known})")
        self.weights = {n: float(w) for n, w in weights.items() if w != 0}
        if not self.weights:
            raise ConfigError("loss: every weight is 0, nothing to train")
        self.terms = {n: LOSSES[n].make(tokenizer) for n in self.weights if n != QUANTIZER}

    def __call__(self, x: Tensor, out: TokenizerOutput) -> LossOutput:
        terms = {}
        for name in self.weights:
            if name == QUANTIZER:
                terms[name] = out.quant.loss.float()
            else:
                terms[name] = self.terms[name](x.float(), out.recon.float())
        total = torch.stack([w * terms[n] for n, w in self.weights.items()]).sum()
        return LossOutput(total, terms)
