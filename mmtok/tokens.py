"""Tokens: the ids a tokenizer produced plus what is needed to decode them.

Legend: B batch, G channel groups coded alone (1 unless a mono audio tokenizer coded a
multi-channel input channel by channel), Q code streams per position of one group, S = G * Q
streams on the ids' axis 1, grid = (h, w) image | (t,) audio | (t, h, w) video,
L = S * prod(grid) flattened length.

``flatten`` gives the sequence a model sees: raster order over the grid (t, then h, then w),
the S codes of one position adjacent (channel 0's Q codes, then channel 1's ...).
``unflatten`` inverts it. ``save``/``load`` keep the ids and metadata in one safetensors file
(no pickle); files written before the channel fields existed load with their defaults.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, replace

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from mmtok.errors import InputError
from mmtok.fileutil import atomic_path, require_file

TOKENS_FORMAT = "mmtok.tokens/1"
# Written only when ids hold several channel groups, so that older mmtok versions (which know
# /1 only) refuse such a file instead of decoding the channels as residual stages.
TOKENS_FORMAT_CHANNELS = "mmtok.tokens/2"


@dataclass
class Tokens:
    """ids ``[B, G * Q, *grid]`` int64 in ``[0, codebook_size)`` with their provenance.

    input_size: spatial/temporal size of the original input per sample ((H, W), (T,), (T, H, W)),
        so ``decode`` crops the padding back off.
    tokenizer_id: fingerprint (config + weights hash) of the tokenizer that made the ids.
    tokenizer_name: preset name or checkpoint path the tokenizer was loaded from ("" if unknown).
    channels: G, channel groups on the ids' axis 1, channel-major: ids ``[:, c*Q:(c+1)*Q]``
        are channel c coded alone by a mono audio tokenizer (equal to encoding that channel
        by itself). 1 for everything else: a mono input, a joint multi-channel model (its Q
        streams cover all its channels), images, video.
    source_sample_rate: Hz of the file the audio came from (0: unknown / not audio), so a
        writer can resample the decoded audio back to it.
    source_channels: channels of that file (0: unknown / not audio); differs from
        ``channels`` when the file was mixed down (or a joint model coded it).
    """

    ids: Tensor
    input_size: tuple[int, ...]
    codebook_size: int
    modality: str
    tokenizer_id: str = ""
    tokenizer_name: str = ""
    channels: int = 1
    source_sample_rate: int = 0
    source_channels: int = 0

    def __post_init__(self) -> None:
        if self.channels != 1 and (self.channels < 1 or self.ids.shape[1] % self.channels):
            raise InputError(f"tokens: ids axis 1 ({list(self.ids.shape)}) must hold "
                             f"channels={self.channels} equal groups of code streams")  # fmt: skip

    @property
    def grid(self) -> tuple[int, ...]:
        return tuple(self.ids.shape[2:])

    @property
    def num_codebooks(self) -> int:
        """Q, code streams per position of one channel group (ids axis 1 / channels)."""
        return self.ids.shape[1] // self.channels

    def flatten(self) -> Tensor:
        """``[B, L]`` ids in raster order over the grid, the Q codes of a position adjacent."""
        b, q = self.ids.shape[:2]
        return self.ids.reshape(b, q, -1).transpose(1, 2).reshape(b, -1)

    def unflatten(self, seq: Tensor) -> Tokens:
        """Inverse of ``flatten``: ``seq`` ``[B, L]`` -> Tokens with this grid and metadata."""
        q, grid = self.ids.shape[1], self.grid  # S = G * Q streams
        if seq.ndim != 2 or seq.shape[1] != q * math.prod(grid):
            raise InputError(
                f"seq: expected [B, {q * math.prod(grid)}] for grid {grid} x {q} streams, "
                f"got {list(seq.shape)}"
            )
        ids = seq.reshape(seq.shape[0], -1, q).transpose(1, 2).reshape(seq.shape[0], q, *grid)
        return replace(self, ids=ids)

    def to(self, device: str | torch.device) -> Tokens:
        return replace(self, ids=self.ids.to(device))

    def save(self, path: str | os.PathLike) -> None:
        """Write ids and metadata to one safetensors file, atomically."""
        meta = {
            "format": TOKENS_FORMAT if self.channels == 1 else TOKENS_FORMAT_CHANNELS,
            "input_size": json.dumps(list(self.input_size)),
            "codebook_size": str(self.codebook_size),
            "modality": self.modality,
            "tokenizer_id": self.tokenizer_id,
            "tokenizer_name": self.tokenizer_name,
            "channels": str(self.channels),
            "source_sample_rate": str(self.source_sample_rate),
            "source_channels": str(self.source_channels),
        }
        with atomic_path(path) as tmp:
            save_file({"ids": self.ids.contiguous().cpu()}, str(tmp), metadata=meta)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Tokens:
        """Read a file written by ``save``; InputError naming the path if it is not one."""
        p = require_file(path, "token file")
        try:
            from safetensors import safe_open

            with safe_open(str(p), framework="pt") as f:
                meta = f.metadata() or {}
            ids = load_file(str(p))["ids"]
        except (SafetensorError, OSError, KeyError, ValueError) as e:
            raise InputError(f"token file {str(p)!r} is not a valid mmtok token file: {e}") from e
        if meta.get("format") not in (TOKENS_FORMAT, TOKENS_FORMAT_CHANNELS):
            known = f"{TOKENS_FORMAT!r} or {TOKENS_FORMAT_CHANNELS!r}"
            raise InputError(f"token file {str(p)!r}: format {meta.get('format')!r}, "
                             f"expected {known}")  # fmt: skip
        return cls(
            ids=ids,
            input_size=tuple(json.loads(meta["input_size"])),
            codebook_size=int(meta["codebook_size"]),
            modality=meta["modality"],
            tokenizer_id=meta["tokenizer_id"],
            tokenizer_name=meta.get("tokenizer_name", ""),
            channels=int(meta.get("channels", 1)),  # absent in files of older versions
            source_sample_rate=int(meta.get("source_sample_rate", 0)),
            source_channels=int(meta.get("source_channels", 0)),
        )
