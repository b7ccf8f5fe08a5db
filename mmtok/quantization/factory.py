"""Quantizer by name, for the tokenizer factories and recipes ("vq" | "rvq" | "fsq").

Every factory (``image_tokenizer``, ``audio_tokenizer``, ``video_tokenizer``) takes the same
quantizer arguments: ``quantizer`` (the kind), ``codebook_size``, ``num_quantizers``,
``quantizer_dropout``, ``codebook_dim``, ``dead_code_threshold`` and ``quantizer_options``
(a ``QuantizerOptions``: lookup and update settings), so every quantizer option is reachable
from a recipe's ``model:`` section (``quantizer_options: {cosine: true, beta: 0.5}``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from mmtok.errors import ConfigError
from mmtok.quantization.base import Quantizer
from mmtok.quantization.codebook import Init
from mmtok.quantization.fsq import FSQ
from mmtok.quantization.residual import ResidualVQ
from mmtok.quantization.vq import VectorQuantizer

CODEBOOK_OPTIONS = ("cosine", "ema", "decay", "beta", "dead_code_ratio", "init")  # vq / rvq only


@dataclass(frozen=True)
class QuantizerOptions:
    """Lookup and update settings of a quantizer (the library defaults unless set).

    cosine: vq / rvq: cosine-similarity lookup on the unit sphere (False: l2 distance).
    ema: vq / rvq: EMA codebook (False: learnable codebook trained by the codebook loss).
    decay: vq / rvq: EMA decay of the codebook statistics.
    beta: vq / rvq: commitment loss weight.
    dead_code_ratio: vq / rvq: relative dead-code restart threshold (used when the factory's
        ``dead_code_threshold`` is None; 0 disables restarts).
    init: vq / rvq: codebook init, "kmeans" (first batch), "data", "uniform" (the seed-style
        baseline of the benchmarks), "normal".
    levels: fsq: values per channel (K = their product).
    """

    cosine: bool = False
    ema: bool = True
    decay: float = 0.99
    beta: float = 0.25
    dead_code_ratio: float = 0.25
    init: Init = "kmeans"
    levels: tuple[int, ...] = (8, 5, 5, 5)

    def changed(self) -> list[str]:
        """Names of the fields set to something other than the default."""
        default = QuantizerOptions()
        return [f.name for f in dataclasses.fields(self)
                if getattr(self, f.name) != getattr(default, f.name)]  # fmt: skip


def build_quantizer(
    kind: str,
    dim: int,
    codebook_size: int,
    num_quantizers: int = 1,
    *,
    quantizer_dropout: float = 0.0,
    codebook_dim: int | None = None,
    dead_code_threshold: float | None = None,
    options: QuantizerOptions | None = None,
) -> Quantizer:
    """A quantizer with the library defaults, except where arguments say otherwise.

    kind: "vq" (VectorQuantizer), "rvq" (ResidualVQ of ``num_quantizers`` stages with
        ``quantizer_dropout``) or "fsq" (FSQ with ``options.levels``; ``codebook_size`` is
        ignored).
    dim: D, the latent size; codebook_dim: low-dimensional code size for vq / rvq.
    dead_code_threshold: vq / rvq absolute restart threshold (None: the relative default).
    options: the remaining settings (``QuantizerOptions``); one that does not apply to
        ``kind`` (``cosine`` for fsq, ``levels`` for vq) is a ConfigError, not ignored.
    """
    opt = options or QuantizerOptions()
    if kind not in ("vq", "rvq", "fsq"):
        raise ConfigError(f"quantizer must be vq|rvq|fsq, got {kind!r}")
    foreign = set(opt.changed()) - ({"levels"} if kind == "fsq" else set(CODEBOOK_OPTIONS))
    if foreign:
        raise ConfigError(f"quantizer_options: {', '.join(sorted(foreign))} do(es) not apply to "
                          f"quantizer {kind!r}")  # fmt: skip
    codebook = dict(codebook_dim=codebook_dim, dead_code_threshold=dead_code_threshold,
                    cosine=opt.cosine, ema=opt.ema, decay=opt.decay, beta=opt.beta,
                    dead_code_ratio=opt.dead_code_ratio, init=opt.init)  # fmt: skip
    if kind == "vq":
        return VectorQuantizer(dim, codebook_size, **codebook)
    if kind == "rvq":
        return ResidualVQ(dim, codebook_size, num_quantizers,
                          quantizer_dropout=quantizer_dropout, **codebook)  # fmt: skip
    return FSQ(dim, opt.levels)
