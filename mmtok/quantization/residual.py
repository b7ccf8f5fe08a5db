"""ResidualVQ: n_q VectorQuantizer stages, each coding the residual of the ones before.

Legend: B batch, N vectors per sample, D dim, Q = n_q stages, K codes per stage.

SoundStream / EnCodec residual VQ with quantizer dropout (a random number of active stages
per training batch) so one model serves several bitrates; ``n_q=`` picks the number of stages
explicitly in train and eval mode, and ``decode_ids`` accepts any prefix of the stages.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mmtok.errors import ConfigError, InputError
from mmtok.quantization.base import Quantizer, QuantizerOutput, check_ids, check_latents
from mmtok.quantization.codebook import Init, StepRng
from mmtok.quantization.metrics import to_host
from mmtok.quantization.vq import VectorQuantizer


class ResidualVQ(Quantizer):
    """Residual vector quantiser; ids ``[B, N, n]`` for the n active stages.

    Args:
        dim: D, input / output feature size.
        codebook_size: K, codes per stage.
        num_quantizers: Q, number of stages.
        quantizer_dropout: probability that a training batch uses a random number of stages
            (uniform in 1..Q, identical on every rank); 0 disables.
        codebook_dim: code size per stage (low-dimensional lookup; default D).
        ema: EMA codebooks (default) or learnable ones trained by the codebook loss.
        decay: EMA decay of every stage.
        beta: commitment weight of every stage.
        cosine: cosine lookup in every stage.
        dead_code_threshold: absolute restart threshold of every stage (0 disables; None:
            relative, ``dead_code_ratio`` x the stage's mean EMA count per code).
        dead_code_ratio: relative restart threshold of every stage (see VectorQuantizer).
        init: codebook init of every stage (see VectorQuantizer).
        seed: base seed; stage i uses seed + i + 1, the dropout draw uses seed.
    """

    def __init__(
        self,
        dim: int,
        codebook_size: int,
        num_quantizers: int,
        *,
        quantizer_dropout: float = 0.0,
        codebook_dim: int | None = None,
        ema: bool = True,
        decay: float = 0.99,
        beta: float = 0.25,
        cosine: bool = False,
        dead_code_threshold: float | None = None,
        dead_code_ratio: float = 0.25,
        init: Init = "kmeans",
        seed: int = 0,
    ) -> None:
        super().__init__()
        if num_quantizers < 1:
            raise ConfigError(f"num_quantizers must be >= 1, got {num_quantizers}")
        if not 0.0 <= quantizer_dropout <= 1.0:
            raise ConfigError(f"quantizer_dropout must be in [0, 1], got {quantizer_dropout}")
        self.dim, self.codebook_size, self.num_codebooks = dim, codebook_size, num_quantizers
        self.quantizer_dropout = quantizer_dropout
        self.layers = nn.ModuleList(
            VectorQuantizer(
                dim, codebook_size, codebook_dim=codebook_dim, ema=ema, decay=decay, beta=beta,
                cosine=cosine, dead_code_threshold=dead_code_threshold,
                dead_code_ratio=dead_code_ratio, init=init, seed=seed + i + 1,
            )
            for i in range(num_quantizers)
        )  # fmt: skip
        self.rng = StepRng(seed)

    def active_stages(self, n_q: int | None) -> int:
        """Stages to run: ``n_q`` if given, else a dropout draw in training, else Q."""
        if n_q is not None:
            if not 1 <= n_q <= self.num_codebooks:
                raise InputError(f"n_q must be in [1, {self.num_codebooks}], got {n_q}")
            return n_q
        if not self.training or self.quantizer_dropout == 0.0:
            return self.num_codebooks
        g = self.rng.generator(salt=3)
        self.rng.advance()
        if float(torch.rand((), generator=g)) >= self.quantizer_dropout:
            return self.num_codebooks
        return int(torch.randint(1, self.num_codebooks + 1, (), generator=g))

    def forward(self, x: Tensor, n_q: int | None = None) -> QuantizerOutput:
        """``x`` ``[B, N, D]`` -> quantized ``[B, N, D]`` (sum of stages), ids ``[B, N, n]``."""
        check_latents(x, self.dim)
        n = self.active_stages(n_q)
        residual = x.float()
        out = torch.zeros_like(residual)
        loss = residual.new_zeros(())
        ids, metrics = [], {}
        for i, layer in enumerate(self.layers[:n]):
            q, idx, stage_loss, stage_metrics = layer.quantize(residual)
            residual = residual - q
            out = out + q
            loss = loss + stage_loss
            ids.append(idx)
            metrics.update({f"{k}_q{i}": v for k, v in stage_metrics.items()})
        host = to_host(metrics)
        for name in ("perplexity", "used_codes", "dead_codes"):
            host[name] = sum(host[f"{name}_q{i}"] for i in range(n)) / (
                n if name != "dead_codes" else 1
            )
        host["active_stages"] = float(n)
        return QuantizerOutput(out.to(x.dtype), torch.stack(ids, dim=-1), loss, host)

    def encode(self, x: Tensor, n_q: int | None = None) -> Tensor:
        """Ids only: ``[B, N, D]`` -> ``[B, N, n]`` int64. In eval mode each stage's code
        search and the lookup its residual needs (no loss, metrics or usage count), the same
        ids as ``forward``; in train mode ``forward`` (codebook updates, dropout)."""
        if self.training:
            return self.forward(x, n_q=n_q).ids
        check_latents(x, self.dim)
        n = self.active_stages(n_q)
        ids = []
        with torch.no_grad(), torch.autocast(device_type=x.device.type, enabled=False):
            residual = x.float()  # [B, N, D]
            for i, layer in enumerate(self.layers[:n]):
                ids.append(layer.nearest(residual))  # [B, N]
                if i + 1 < n:  # the flat lookup of quantize: the same rounding as forward
                    codes = layer.codes(ids[-1].reshape(-1)).reshape(residual.shape)
                    residual = residual - codes
        return torch.stack(ids, dim=-1)

    def decode_ids(self, ids: Tensor) -> Tensor:
        """``ids`` ``[B, N, n]`` (the first n <= Q stages) -> ``[B, N, D]`` fp32."""
        check_ids(ids, self.num_codebooks, self.codebook_size)
        out = torch.zeros(*ids.shape[:-1], self.dim, device=ids.device)
        for i in range(ids.shape[-1]):
            out = out + self.layers[i].decode_ids(ids[..., i : i + 1])
        return out

    def reset_usage(self) -> None:
        for layer in self.layers:
            layer.reset_usage()

    def usage_histograms(self) -> dict[str, Tensor]:
        """``{"stage0": [K], "stage1": [K], ...}`` int64: codes emitted per stage by ``forward``
        since ``reset_usage``."""
        return {f"stage{i}": layer.codebook.usage.detach().clone()
                for i, layer in enumerate(self.layers)}  # fmt: skip
