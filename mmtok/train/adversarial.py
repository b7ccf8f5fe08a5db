"""Adversarial training with feature matching, for any modality (recipe section ``adversarial``).

Legend: B batch, C channels, S the input's spatial/temporal axes; logits and features are
lists of tensors ``[B, ...]`` (see ``mmtok.train.discriminators``).

Each step from ``start_step`` on, the trainer calls ``Adversary.step(x, recon)``: one AdamW
update of the discriminators on the real batch and the detached reconstruction; then
``Adversary.generator_loss(x, recon)``: ``weight * adversarial + feature_matching * FM`` with
the updated discriminators (their parameters frozen, so only the tokenizer gets gradients),
added to the reconstruction loss. Losses: hinge (Lim & Ye 2017; VQGAN, LlamaGen) or least
squares (Mao et al. 2017; HiFi-GAN, DAC), each averaged over the sub-discriminators' logit maps;
feature matching is the L1 distance of every hidden activation, divided by the mean magnitude
of the real one (EnCodec), averaged over layers. Discriminator gradients are averaged over
processes under ``torch.distributed``; a single process pays nothing for it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from mmtok.errors import ConfigError
from mmtok.tokenizer import Tokenizer
from mmtok.train.discriminators import Discriminators, available_discriminators

EPS = 1e-8
GanLoss = Literal["hinge", "lsgan"]


@dataclass
class AdversarialConfig:
    """The recipe's ``adversarial`` section (absent: reconstruction-only training)."""

    discriminators: list[str] = field(default_factory=list)  # names, e.g. [mrstft, mpd]
    loss: GanLoss = "hinge"
    weight: float = 1.0  # of the generator's adversarial term
    feature_matching: float = 2.0  # of the feature-matching term (0: off)
    start_step: int = 0  # steps (0-based) before this one train without the adversarial terms
    lr: float = 1e-4  # discriminator AdamW learning rate (constant)
    betas: tuple[float, float] = (0.8, 0.99)  # discriminator AdamW betas
    channels: int = 32  # base width of every discriminator

    def check(self, modality: str, source: str) -> None:
        """ConfigError naming the key when a value does not fit ``modality`` or its range."""
        known = available_discriminators(modality)
        if not self.discriminators:
            raise ConfigError(f"adversarial.discriminators in {source}: name at least one "
                              f"(for {modality}: {', '.join(known)})")  # fmt: skip
        for name in self.discriminators:
            if name not in known:
                raise ConfigError(f"adversarial.discriminators in {source}: unknown "
                                  f"discriminator {name!r} for {modality} (known: "
                                  f"{', '.join(known)})")  # fmt: skip
        if len(set(self.discriminators)) != len(self.discriminators):
            raise ConfigError(f"adversarial.discriminators in {source}: a name is listed twice")
        for key in ("weight", "feature_matching", "start_step"):
            if getattr(self, key) < 0:
                raise ConfigError(f"adversarial.{key} in {source}: must be >= 0, "
                                  f"got {getattr(self, key)!r}")  # fmt: skip
        for key in ("lr", "channels"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"adversarial.{key} in {source}: must be > 0, "
                                  f"got {getattr(self, key)!r}")  # fmt: skip


# --- losses -----------------------------------------------------------------------------------
def discriminator_loss(kind: GanLoss, real: Sequence[Tensor], fake: Sequence[Tensor]) -> Tensor:
    """hinge: mean relu(1 - real) + mean relu(1 + fake); lsgan: mean (real - 1)^2 + mean fake^2;
    averaged over the logit maps."""
    pairs = list(zip(real, fake, strict=True))
    if kind == "hinge":
        terms = [F.relu(1 - r).mean() + F.relu(1 + f).mean() for r, f in pairs]
    else:
        terms = [(r - 1).pow(2).mean() + f.pow(2).mean() for r, f in pairs]
    return torch.stack(terms).mean()


def adversarial_loss(kind: GanLoss, fake: Sequence[Tensor]) -> Tensor:
    """The generator's term: hinge -mean fake; lsgan mean (fake - 1)^2; averaged over maps."""
    if kind == "hinge":
        return torch.stack([-f.mean() for f in fake]).mean()
    return torch.stack([(f - 1).pow(2).mean() for f in fake]).mean()


def feature_matching_loss(real: Sequence[Tensor], fake: Sequence[Tensor]) -> Tensor:
    """mean over layers of ``mean |real - fake| / mean |real|`` (0 for identical features)."""
    terms = [(r - f).abs().mean() / (r.abs().mean() + EPS) for r, f in zip(real, fake, strict=True)]
    return torch.stack(terms).mean()


# --- the trainer's helper -----------------------------------------------------------------------
@contextmanager
def _frozen(module: nn.Module) -> Iterator[None]:
    """``module``'s parameters take no gradients inside the block (inputs still do)."""
    flags = [p.requires_grad for p in module.parameters()]
    for p in module.parameters():
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(module.parameters(), flags, strict=True):
            p.requires_grad_(flag)


def _average_gradients(module: nn.Module) -> None:
    """All-reduce mean of ``module``'s gradients over processes (no-op in one process)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    for p in module.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
            p.grad /= dist.get_world_size()


class Adversary:
    """The discriminators of a recipe and their optimiser.

    Args:
        cfg: the recipe's ``adversarial`` section (checked).
        tokenizer: the tokenizer being trained (the discriminators are made for its inputs).
        device: where the discriminators live.
    """

    def __init__(self, cfg: AdversarialConfig, tokenizer: Tokenizer, device: torch.device) -> None:
        self.cfg = cfg
        self.discriminator = Discriminators(cfg.discriminators, tokenizer, cfg.channels).to(device)
        self.optimizer = torch.optim.AdamW(self.discriminator.parameters(), lr=cfg.lr,
                                           betas=cfg.betas, weight_decay=0.0)  # fmt: skip

    def active(self, step: int) -> bool:
        """True when step ``step`` (0-based) trains with the adversarial terms."""
        return step >= self.cfg.start_step

    def step(self, x: Tensor, recon: Tensor) -> dict[str, Tensor]:
        """One discriminator update on real ``x`` and ``recon`` (detached), both ``[B, C, *S]``;
        ``{"adv_d": loss}`` (detached)."""
        self.discriminator.train()
        real = self.discriminator(x.float())
        fake = self.discriminator(recon.detach().float())
        loss = discriminator_loss(self.cfg.loss, real.logits, fake.logits)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        _average_gradients(self.discriminator)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)  # no stale gradients held between steps
        return {"adv_d": loss.detach()}

    def generator_loss(self, x: Tensor, recon: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """``weight * adversarial + feature_matching * FM`` for ``recon`` (gradients reach the
        tokenizer only) and the unweighted terms ``{"adv_g", "adv_fm"}`` (detached)."""
        with _frozen(self.discriminator):
            with torch.no_grad():
                real = self.discriminator(x.float())
            fake = self.discriminator(recon.float())
        adv = adversarial_loss(self.cfg.loss, fake.logits)
        fm = feature_matching_loss(real.features, fake.features)
        total = self.cfg.weight * adv + self.cfg.feature_matching * fm
        return total, {"adv_g": adv.detach(), "adv_fm": fm.detach()}
