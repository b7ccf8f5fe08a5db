"""Streaming encode: long audio -> Tokens with memory bounded by a window, not by the length.

Legend: C channels, T samples at the tokenizer's ``sample_rate``, G channel groups coded alone
(C for a mono tokenizer given C channels, 1 for a joint multi-channel one), Q code streams,
t = ceil(T / hop), L samples of one encoder window.

``encode_blocks`` takes consecutive ``[C, T_block]`` blocks (e.g. ``iter_audio_blocks``) and
runs the tokenizer's exact windows (``AudioTokenizer.window_at`` / ``encode_windows``) as the
samples arrive. Each window holds the input span of its frames, and a window whose span is
not yet known to end inside the signal waits for more blocks, so the ids equal
``tok.encode(whole)`` bit for bit while only about one window, its receptive field and one
block are held (the ids, 8 bytes per code, still grow with the length).

``encode_file`` streams a file at the tokenizer's rate that way: ``iter_audio_blocks``
resamples block by block with the same rounding as resampling the whole file (see
``mmtok.audio.io``), so streamed ids == ``tok.encode(load_audio(...).samples[None])`` ids also
when the file's rate differs. Container formats PyAV decodes (MP4, M4A, ...) are decoded
whole first (``iter_audio_blocks``); WAV / FLAC / OGG / MP3 are streamed.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

import torch
from einops import rearrange
from torch import Tensor

from mmtok.audio.tokenizer import AudioTokenizer
from mmtok.errors import InputError
from mmtok.tokenizer import eval_mode
from mmtok.tokens import Tokens

DEFAULT_BLOCK_S = 10.0  # seconds read from disk at a time


@dataclass
class _Buffer:
    """Samples ``[lo, hi)`` of a stream as ``data`` ``[C, hi - lo]``."""

    data: Tensor | None = None
    lo: int = 0
    hi: int = 0

    def append(self, block: Tensor) -> None:
        self.data = block if self.data is None else torch.cat([self.data, block], 1)
        self.hi += block.shape[1]

    def drop_before(self, start: int) -> None:
        if start > self.lo:
            self.data, self.lo = self.data[:, start - self.lo :], start

    def span(self, start: int, stop: int) -> Tensor:
        """Samples ``[start, stop)``, the last one repeated past ``hi`` (``_slice``'s padding)."""
        part = self.data[:, start - self.lo : min(stop, self.hi) - self.lo]
        if stop > self.hi:
            part = torch.cat([part, part[:, -1:].expand(-1, stop - self.hi)], 1)
        return part


@dataclass
class _Ids:
    """int32 ids ``[G, Q, n]`` in frame order, in one buffer that doubles when full: no small
    long-lived allocations scattered through the heap (they would pin freed pages, and RSS
    would grow with the length of the stream)."""

    data: Tensor | None = None
    n: int = 0

    def append(self, part: Tensor) -> None:
        need = self.n + part.shape[2]
        if self.data is None or need > self.data.shape[2]:
            cap = max(need, 2 * (0 if self.data is None else self.data.shape[2]), 1 << 14)
            grown = part.new_empty(*part.shape[:2], cap, dtype=torch.int32)
            if self.data is not None:
                grown[:, :, : self.n] = self.data[:, :, : self.n]
            self.data = grown
        self.data[:, :, self.n : need] = part
        self.n = need

    def result(self) -> Tensor:
        """int64 ids ``[G, Q, n]`` (the buffer is released)."""
        out, self.data = self.data[:, :, : self.n].long(), None
        return out


@dataclass
class _Windows:
    """Windows waiting for one stacked encoder call, and the ids of those already encoded."""

    tok: AudioTokenizer
    n_q: int | None
    pending: list[tuple[list[Tensor], int, int]] = field(default_factory=list)  # G segs, a, b
    samples: int = 0
    done: _Ids = field(default_factory=_Ids)

    def add(self, segments: list[Tensor], a: int, b: int) -> None:
        self.pending.append((segments, a, b))
        self.samples += sum(s.numel() for s in segments)
        if self.samples >= self.tok.batch_samples or segments[0].device.type != "cpu":
            self.flush()

    def flush(self) -> None:
        """Encode the pending windows, those of equal length stacked (batch-invariant ids)."""
        results: list[list[Tensor]] = [[] for _ in self.pending]
        lengths = sorted({segs[0].shape[1] for segs, _, _ in self.pending})
        for length in lengths:
            calls = [(i, g) for i, (segs, _, _) in enumerate(self.pending)
                     if segs[0].shape[1] == length for g in range(len(segs))]  # fmt: skip
            per_call = self.tok.windows_per_call(length, self.pending[0][0][0].device)
            for k in range(0, len(calls), per_call):
                chunk = calls[k : k + per_call]
                parts = self.tok.encode_windows(
                    [self.pending[i][0][g] for i, g in chunk],
                    [self.pending[i][1:] for i, _ in chunk], self.n_q)  # fmt: skip
                for (i, _), part in zip(chunk, parts, strict=True):
                    results[i].append(part)  # groups of a window arrive in order g = 0, 1, ...
        for r in results:
            self.done.append(torch.stack(r))  # [G, Q, frames of the window]
        self.pending, self.samples = [], 0


def _check_block(tok: AudioTokenizer, block: object, index: int, channels: int | None) -> int:
    """InputError unless ``block`` is a finite float ``[C, n]`` this tokenizer can code, C as
    in the blocks before it; returns C."""
    name = f"blocks[{index}]"
    if not isinstance(block, Tensor) or block.ndim != 2 or block.shape[1] == 0:
        got = list(block.shape) if isinstance(block, Tensor) else type(block).__name__
        raise InputError(f"{name}: expected a non-empty [C, T_block] float tensor, got {got}")
    if channels is not None and block.shape[0] != channels:
        raise InputError(f"{name}: {block.shape[0]} channels, the blocks before had {channels}")
    if tok.channels == 1:
        tok.check_input(block[:, None], name)  # each channel coded alone
    else:
        tok.check_input(block[None], name)
    return block.shape[0]


def encode_blocks(
    tok: AudioTokenizer,
    blocks: Iterable[Tensor],
    *,
    n_q: int | None = None,
    window: int | None = None,
) -> Tokens:
    """Consecutive blocks ``[C, T_block]`` (float in [-1, 1] at ``tok.sample_rate``, any
    lengths) -> the Tokens of their concatenation, equal to ``tok.encode(cat(blocks)[None])``.

    A mono tokenizer codes each of C > 1 channels alone (ids ``[1, C * Q, t]``,
    ``Tokens.channels == C``), as ``AudioTokenizer.encode`` does. n_q / window: as in
    ``encode``. Memory: one window's input span, one block and the pending windows of one
    stacked encoder call (``tok.batch_samples``), whatever the length.
    """
    w, hop = tok._window_frames(window), tok.hop
    buf, windows = _Buffer(), _Windows(tok, n_q)
    channels, first, ended, index = None, 0, False, 0
    param = next(tok.encoder.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    source = iter(blocks)
    with eval_mode(tok):
        while True:
            frames = math.ceil(buf.hi / hop) if ended else None
            if ended and first >= frames:
                break
            start, stop, _, end = tok.window_at(first, w, frames)
            if not ended and stop > buf.hi:  # the window's span may still grow: read on
                block = next(source, None)
                if block is None:
                    ended = True
                    if buf.hi == 0:
                        raise InputError("blocks: no audio (the stream held no samples)")
                else:
                    channels = _check_block(tok, block, index, channels)
                    buf.append(tok.cast_input(block.to(device)))
                    index += 1
                continue
            seg = buf.span(start, stop)  # [C, L]
            groups = list(seg[:, None]) if tok.channels == 1 else [seg]  # G x [C / G, L]
            windows.add(groups, first - start // hop, end - start // hop)
            buf.drop_before(start)  # later windows start at or after this one
            first = end
        windows.flush()
    ids = windows.done.result()  # [G, Q, t]
    return tok.make_tokens(rearrange(ids, "g q t -> 1 (g q) t"), buf.hi, ids.shape[0])


def encode_file(
    tok: AudioTokenizer,
    path: str | os.PathLike,
    *,
    channels: str = "keep",
    n_q: int | None = None,
    window: int | None = None,
    block_s: float = DEFAULT_BLOCK_S,
) -> Tokens:
    """Stream ``path`` from disk in blocks of ``block_s`` seconds and encode it.

    channels: "keep" (every channel of the file; a mono tokenizer codes each alone) or "mono"
        (mixed down first; only for a mono tokenizer). A joint multi-channel tokenizer gets
        its channel count (a mono file is repeated, see ``load_audio``).
    The Tokens record the file's sample rate and channel count (``source_sample_rate``,
    ``source_channels``) so a writer can give the decoded audio back at the file's rate.
    """
    from mmtok.audio.io import audio_info, iter_audio_blocks

    if channels not in ("keep", "mono"):
        raise InputError(f"channels: expected 'keep' or 'mono', got {channels!r}")
    if channels == "mono" and tok.channels != 1:
        raise InputError(f"{str(path)!r}: channels='mono' needs a mono tokenizer; this one "
                         f"codes {tok.channels} channels jointly")  # fmt: skip
    info = audio_info(path)
    policy = channels if tok.channels == 1 else tok.channels
    tokens = encode_blocks(tok, iter_audio_blocks(path, tok.sample_rate, block_s, policy),
                           n_q=n_q, window=window)  # fmt: skip
    return replace(tokens, source_sample_rate=info["sample_rate"],
                   source_channels=info["channels"])  # fmt: skip
