"""Tokenizer: the encode/decode contract shared by the image, audio and video tokenizers.

Legend: B batch, C channels, S spatial/temporal axes of the input ((H, W), (T,), (T, H, W)),
D latent dim, grid = ceil(S / downsample), N = prod(grid), Q code streams.

A tokenizer is assembled by injection: ``encoder`` maps ``[B, C, *S]`` -> ``[B, D, *grid]``,
``quantizer`` sees ``[B, N, D]`` only, ``decoder`` maps ``[B, D, *grid]`` -> ``[B, C, *S']``.
Inputs whose size is not a multiple of the downsampling are padded (edge replicate) inside
``encode`` and cropped back in ``decode``, so ``decode(encode(x)).shape == x.shape``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from safetensors.torch import save as safetensors_bytes
from torch import Tensor, nn

from mmtok.configurable import Configurable, to_spec
from mmtok.errors import InputError
from mmtok.quantization import Quantizer, QuantizerOutput
from mmtok.tokens import Tokens


@dataclass
class TokenizerOutput:
    """Training forward: reconstruction (same shape as the input) + the quantizer output."""

    recon: Tensor
    quant: QuantizerOutput


@contextlib.contextmanager
def eval_mode(module: nn.Module) -> Iterator[None]:
    """Run a block in eval + inference mode with full-fp32 kernels, restoring state after.

    TF32 is switched off for the block: with it, cuDNN/cuBLAS round differently for different
    batch sizes and batched ids would differ from per-sample ids on CUDA.
    """
    flags = [(m, m.training) for m in module.modules()]
    tf32 = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    for m in module.modules():
        m.training = False
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        with torch.inference_mode():
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
        for m, was_training in flags:
            m.training = was_training


def state_digest(module: nn.Module) -> str:
    """sha256 of the module's weights serialised as safetensors (== model.safetensors' hash)."""
    state = {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}
    return hashlib.sha256(safetensors_bytes(state)).hexdigest()


class Tokenizer(Configurable, nn.Module):
    """Base class. Subclasses set ``modality``, ``channels`` and ``downsample`` (per grid axis)."""

    modality: ClassVar[str] = ""
    channels: int
    downsample: tuple[int, ...]

    def __init__(self, encoder: nn.Module, quantizer: Quantizer, decoder: nn.Module) -> None:
        super().__init__()
        self.encoder, self.quantizer, self.decoder = encoder, quantizer, decoder
        self.name = ""  # preset name or checkpoint path, set by from_pretrained
        self._fingerprint: str | None = None

    @property
    def codebook_size(self) -> int:
        return self.quantizer.codebook_size

    @property
    def num_codebooks(self) -> int:
        return self.quantizer.num_codebooks

    def train(self, mode: bool = True) -> Tokenizer:
        if mode:
            self._fingerprint = None  # weights may change while training
        return super().train(mode)

    def fingerprint(self) -> str:
        """16 hex chars identifying config + weights; cached in eval mode."""
        if self._fingerprint is None or self.training:
            config = json.dumps(to_spec(self), sort_keys=True)
            digest = hashlib.sha256((config + state_digest(self)).encode()).hexdigest()[:16]
            if self.training:
                return digest
            self._fingerprint = digest
        return self._fingerprint

    # --- shapes -------------------------------------------------------------------------
    def check_input(self, x: Tensor, name: str = "x") -> None:
        """InputError unless ``x`` is a finite float ``[B, C, *S]`` tensor."""
        rank = 2 + len(self.downsample)
        if not isinstance(x, Tensor) or x.ndim != rank or x.shape[1] != self.channels:
            got = list(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise InputError(f"{name}: expected [B, {self.channels}, "
                             f"{', '.join('S' * (rank - 2))}] float tensor, got {got}")  # fmt: skip
        if not x.is_floating_point():
            raise InputError(f"{name}: expected a float tensor in [-1, 1], got {x.dtype}")
        if x.numel() == 0 or not torch.isfinite(x).all():
            raise InputError(f"{name}: tensor is empty or contains NaN/inf")

    def cast_input(self, x: Tensor) -> Tensor:
        """A checked float ``x`` in the dtype of the encoder weights (float32 unless the model
        was converted): fp16 / bf16 / fp64 input is cast, not refused (ids are those of the
        cast values); a no-op when the dtype already matches."""
        weight = next(self.encoder.parameters(), None)
        return x.to(weight.dtype if weight is not None else torch.float32)

    def token_grid(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Token grid for an input of shape ``(..., *S)`` (only the last len(S) axes count)."""
        spatial = tuple(input_shape[-len(self.downsample) :])
        return tuple(math.ceil(s / d) for s, d in zip(spatial, self.downsample, strict=True))

    def _pad(self, x: Tensor) -> Tensor:
        grid = self.token_grid(x.shape)
        pads: list[int] = []
        for s, g, d in reversed(list(zip(x.shape[2:], grid, self.downsample, strict=True))):
            pads += [0, g * d - s]
        return F.pad(x, pads, mode="replicate") if any(pads) else x

    def _crop(self, y: Tensor, size: tuple[int, ...]) -> Tensor:
        return y[(..., *(slice(0, s) for s in size))]

    # --- the contract -------------------------------------------------------------------
    def _latents(self, x: Tensor) -> tuple[Tensor, tuple[int, ...]]:
        """``x`` ``[B, C, *S]`` -> (latents ``[B, N, D]`` for the quantizer, token grid)."""
        z = self.encoder(self._pad(x))  # [B, D, *grid]
        return z.flatten(2).transpose(1, 2), tuple(z.shape[2:])

    def _decode_latents(self, q: Tensor, grid: tuple[int, ...], size: tuple[int, ...]) -> Tensor:
        z = q.transpose(1, 2).reshape(q.shape[0], q.shape[2], *grid)  # [B, D, *grid]
        return self._crop(self.decoder(z), size)

    def forward(self, x: Tensor, n_q: int | None = None) -> TokenizerOutput:
        """Training path: ``x`` ``[B, C, *S]`` -> reconstruction (same shape) + quantizer output."""
        self.check_input(x)
        z, grid = self._latents(x)
        out = self.quantizer(z, n_q=n_q)
        return TokenizerOutput(self._decode_latents(out.quantized, grid, x.shape[2:]), out)

    def encode(self, x: Tensor, *, n_q: int | None = None) -> Tokens:
        """``x`` ``[B, C, *S]`` float in [-1, 1] -> Tokens (ids ``[B, Q, *grid]`` int64).

        Always runs with eval behaviour, deterministic and batch-invariant, through the
        quantizer's ids-only path (``Quantizer.encode``: no codebook update, no usage count).
        Any floating dtype is accepted and cast to the model's (``cast_input``); an integer or
        bool tensor raises InputError naming its dtype.
        """
        self.check_input(x)
        x = self.cast_input(x)
        with eval_mode(self):
            z, grid = self._latents(x)
            flat_ids = self.quantizer.encode(z, n_q=n_q)  # [B, N, Q]
        b, n, q = flat_ids.shape
        ids = flat_ids.transpose(1, 2).reshape(b, q, *grid)
        return Tokens(ids, tuple(x.shape[2:]), self.codebook_size, self.modality,
                      self.fingerprint(), self.name)  # fmt: skip

    def unpack_tokens(self, tokens: Tokens | Tensor, grid_axes: int) -> tuple[Tensor, tuple | None]:
        """``(ids [B, Q, *grid], input size or None)`` of Tokens (refused when another tokenizer
        made them) or of raw ids; InputError unless the ids have ``grid_axes`` grid axes."""
        if isinstance(tokens, Tokens):
            if tokens.tokenizer_id and tokens.tokenizer_id != self.fingerprint():
                raise InputError(
                    f"tokens: made by tokenizer {tokens.tokenizer_id} "
                    f"({tokens.tokenizer_name or 'unknown'}), this is {self.fingerprint()} "
                    f"({self.name or 'unnamed'}); decode them with the tokenizer that made them"
                )
            ids, size = tokens.ids, tokens.input_size
        else:
            ids, size = tokens, None
        if not isinstance(ids, Tensor) or ids.ndim != 2 + grid_axes:
            raise InputError(f"tokens: expected ids [B, Q, {grid_axes} grid axes], "
                             f"got {getattr(ids, 'shape', type(ids).__name__)}")  # fmt: skip
        return ids, size

    def decode(self, tokens: Tokens | Tensor) -> Tensor:
        """Tokens (or raw ids ``[B, Q, *grid]``) -> ``[B, C, *S]`` float (cropped to input_size)."""
        ids, size = self.unpack_tokens(tokens, len(self.downsample))
        grid = tuple(ids.shape[2:])
        size = size or tuple(g * d for g, d in zip(grid, self.downsample, strict=True))
        with eval_mode(self):
            q = self.quantizer.decode_ids(ids.flatten(2).transpose(1, 2))  # [B, N, D]
            return self._decode_latents(q, grid, size).clamp(-1, 1)

    # --- checkpoints --------------------------------------------------------------------
    def save_pretrained(self, path: str | os.PathLike) -> None:
        from mmtok.checkpoint import save_pretrained

        save_pretrained(self, path)

    @classmethod
    def from_pretrained(cls, path_or_preset: str | os.PathLike) -> Tokenizer:
        from mmtok.checkpoint import load_pretrained

        model = load_pretrained(path_or_preset)
        if not isinstance(model, cls):
            raise InputError(
                f"{path_or_preset}: holds a {type(model).__name__}, not a {cls.__name__}"
            )
        return model
