"""AudioTokenizer: waveform ``[B, C, T]`` in [-1, 1] <-> ids ``[B, Q, t]``, t = ceil(T / hop).

Legend: B batch, C audio channels, T samples at ``sample_rate``, D latent dim, hop samples per
token, t frames, Q code streams (n_q of a residual VQ), K codebook size.

One Jukebox level (Dhariwal et al. 2020): an AudioEncoder, any Quantizer, an AudioDecoder.
Levels are independent tokenizers (hops 8 / 32 / 128 by default); ``MultiLevelAudioTokenizer``
encodes all of them for dataset prep. ``audio_tokenizer`` is the factory presets and recipes use.

Long inputs: ``encode`` runs in windows of ``window`` frames; each window reads the exact
receptive field of its frames (``AudioEncoder.input_span``) rounded out to the hop grid, so its
ids equal those of a single pass over the whole input while memory stays bounded by the window.
Windows of equal length (from any clip) are stacked into one encoder call. ``decode`` is
windowed the same way with the decoder's span, so there are no seams.
"""

from __future__ import annotations

import inspect
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from mmtok.audio.model import AudioDecoder, AudioEncoder
from mmtok.errors import ConfigError, InputError
from mmtok.quantization import Quantizer
from mmtok.quantization.factory import QuantizerOptions, build_quantizer
from mmtok.tokenizer import Tokenizer, eval_mode
from mmtok.tokens import Tokens

DEFAULT_SAMPLE_RATE = 22050
MIN_WINDOW = 16  # frames; keeps every encoder GEMM >= 12 columns wide (see audio/model.py)
GPU_ROWS = 1024  # latent rows per quantizer call on GPU (one GEMM shape, see _quantize_rows)


class AudioTokenizer(Tokenizer):
    """Waveform tokenizer, one level. ``token_rate`` = sample_rate / hop tokens per second.

    Args:
        encoder: AudioEncoder (its in_channels == channels).
        quantizer: any Quantizer over D = encoder latent_dim (VQ, residual VQ, FSQ).
        decoder: AudioDecoder mirroring the encoder (same hop, out_channels == channels).
        sample_rate: Hz of the waveforms it reads and writes (default 22050, Jukebox used 44100).
        channels: C, 1 for mono, 2 for stereo.
    """

    modality = "audio"
    window_samples = 1 << 17  # default window (~6 s at 22.05 kHz), rounded to whole frames
    batch_samples = 1 << 18  # most input samples in one encoder call when windows are stacked

    def __init__(
        self,
        encoder: AudioEncoder,
        quantizer: Quantizer,
        decoder: AudioDecoder,
        sample_rate: int = DEFAULT_SAMPLE_RATE,
        channels: int = 1,
    ) -> None:
        super().__init__(encoder, quantizer, decoder)
        dims = (encoder.config["latent_dim"], decoder.config["latent_dim"])
        if dims != (quantizer.dim, quantizer.dim):
            raise ConfigError(f"encoder/decoder latent_dim {dims} != quantizer dim {quantizer.dim}")
        if encoder.in_channels != channels or decoder.out_channels != channels:
            raise ConfigError(f"encoder in_channels {encoder.in_channels} / decoder out_channels "
                              f"{decoder.out_channels} != channels {channels}")  # fmt: skip
        if encoder.hop != decoder.hop:
            raise ConfigError(f"encoder hop {encoder.hop} != decoder hop {decoder.hop}")
        if not isinstance(sample_rate, int) or sample_rate < 1:
            raise ConfigError(f"sample_rate must be a positive int (Hz), got {sample_rate!r}")
        self.sample_rate, self.channels = sample_rate, channels
        self.downsample = (encoder.hop,)

    @property
    def hop(self) -> int:
        """Samples per token frame (product of the encoder strides)."""
        return self.downsample[0]

    @property
    def token_rate(self) -> float:
        """Token frames per second: sample_rate / hop."""
        return self.sample_rate / self.hop

    def bitrate(self, n_q: int | None = None) -> float:
        """Bits per second: token_rate * n_q (default Q) * log2(K)."""
        return self.quantizer.bitrate(self.token_rate, n_q)

    @property
    def receptive_field(self) -> int:
        """Input samples one token depends on (from the encoder's layer configuration)."""
        return self.encoder.receptive_field

    def check_input(self, x: Tensor, name: str = "x") -> None:
        """As ``Tokenizer.check_input``; the NaN/inf scan runs in blocks, so checking a long
        input makes no input-sized temporary."""
        if isinstance(x, Tensor) and x.ndim == 3 and x.shape[1] == self.channels and x.numel():
            if x.is_floating_point():
                if not all(bool(torch.isfinite(b).all()) for b in x.split(1 << 20, dim=-1)):
                    raise InputError(f"{name}: tensor is empty or contains NaN/inf")
                return
        super().check_input(x, name)

    def _window_frames(self, window: int | None) -> int:
        w = window if window is not None else self.window_samples // self.hop
        if not isinstance(w, int) or w < 1:
            raise InputError(f"window: expected a positive number of frames, got {w!r}")
        return max(w, MIN_WINDOW)

    # --- encode -------------------------------------------------------------------------
    def _plan(self, frames: int, window: int) -> list[tuple[int, int, int, int]]:
        """Windows ``(start, stop, first, end)``: samples [start, stop) (hop-aligned) give
        frames [first, end) exactly; ``frames`` = the padded clip's frame count."""
        return [self.window_at(first, window, frames) for first in range(0, frames, window)]

    def window_at(
        self, first: int, window: int, frames: int | None = None
    ) -> tuple[int, int, int, int]:
        """The window ``(start, stop, first, end)`` of ``_plan`` that begins at frame ``first``;
        ``frames`` None: a clip not known to end before the window's span (a stream)."""
        end = first + window if frames is None else min(frames, first + window)
        a, b = self.encoder.input_span(first, end - 1)  # samples read, inclusive
        stop = -(-(b + 1) // self.hop)
        stop = stop if frames is None else min(frames, stop)
        return max(0, a // self.hop) * self.hop, stop * self.hop, first, end

    @staticmethod
    def _slice(x: Tensor, start: int, stop: int) -> Tensor:
        """``x[:, start:stop]`` of a ``[C, T]`` clip, edge-replicated past its end."""
        part = x[:, start : min(stop, x.shape[1])]
        if stop > x.shape[1]:
            part = F.pad(part[None], (0, stop - x.shape[1]), mode="replicate")[0]
        return part

    def _encode_ids(self, clips: Sequence[Tensor], n_q: int | None, window: int) -> list[Tensor]:
        """ids ``[Q, t_i]`` per clip ``[C, T_i]``; on CPU windows of equal length share calls."""
        jobs: dict[int, list[tuple[int, int, int, int, int]]] = {}
        for i, clip in enumerate(clips):
            for start, stop, first, end in self._plan(math.ceil(clip.shape[1] / self.hop), window):
                jobs.setdefault(stop - start, []).append((i, start, stop, first, end))
        out: list[Tensor | None] = [None] * len(clips)
        for length, group in sorted(jobs.items()):
            per_call = self.windows_per_call(length, clips[0].device)
            for k in range(0, len(group), per_call):
                calls = group[k : k + per_call]
                segments = [self._slice(clips[i], s, e) for i, s, e, _, _ in calls]
                keep = [(f - s // self.hop, e - s // self.hop) for _, s, _, f, e in calls]
                parts = self.encode_windows(segments, keep, n_q)
                for (i, _, _, f, e), part in zip(calls, parts, strict=True):
                    if out[i] is None:
                        t = math.ceil(clips[i].shape[1] / self.hop)
                        out[i] = part.new_zeros(part.shape[0], t)
                    out[i][:, f:e] = part
        return out  # type: ignore[return-value]

    def windows_per_call(self, length: int, device: torch.device) -> int:
        """Windows of ``length`` samples stacked into one encoder call: up to ``batch_samples``
        on CPU; 1 on GPU (cuDNN picks algorithms by batch size, which would change ids)."""
        return max(1, self.batch_samples // length) if device.type == "cpu" else 1

    def encode_windows(
        self, segments: Sequence[Tensor], keep: Sequence[tuple[int, int]], n_q: int | None
    ) -> list[Tensor]:
        """Equal-length windows ``[C, L]`` (L a multiple of the hop) -> ids ``[Q, b - a]`` of
        latent frames ``[a, b)`` of each, in one encoder call; run under ``eval_mode``.

        The building block of exact windows (``encode``, ``mmtok.audio.stream``): a window
        that holds the ``input_span`` of its kept frames gives the ids of a single pass."""
        z = self.encoder(torch.stack(list(segments)))  # [n, D, L / hop]
        kept = [z[j, :, a:b] for j, (a, b) in enumerate(keep)]  # [D, frames kept] each
        ids = self._quantize_rows(torch.cat(kept, 1).t(), n_q).t()  # [Q, sum of frames]
        return list(ids.split([b - a for a, b in keep], 1))

    def _quantize_rows(self, z: Tensor, n_q: int | None) -> Tensor:
        """``z`` ``[n, D]`` -> ids ``[n, Q]``, each row's ids independent of the others'.

        The code search is a GEMM, and a GEMM of another shape may round the distances
        differently (enough to flip exact ties between duplicate codes). On CPU, MKL's sgemm
        rounds a row the same for any row count >= 8, so rows are zero-padded to a multiple of
        16; cuBLAS picks kernels by shape, so on GPU rows go in blocks of exactly GPU_ROWS."""
        n, cpu = z.shape[0], z.device.type == "cpu"
        z = F.pad(z, (0, 0, 0, -n % (16 if cpu else GPU_ROWS))).contiguous()
        blocks = [z] if cpu else z.split(GPU_ROWS)
        return torch.cat([self.quantizer.encode(b[None], n_q=n_q)[0] for b in blocks])[:n]

    def make_tokens(self, ids: Tensor, size: int, channels: int = 1) -> Tokens:
        """Tokens of ids ``[B, G * Q, t]`` (G = ``channels`` groups coded alone) for T = size."""
        return Tokens(ids, (size,), self.codebook_size, self.modality, self.fingerprint(),
                      self.name, channels=channels)  # fmt: skip

    def _fold(self, x: Tensor) -> tuple[Tensor, int]:
        """``[B, C, T]`` -> (``[B * C, 1, T]``, C) when a mono model gets C > 1 channels (each
        coded alone); else (x, 1)."""
        if self.channels == 1 and isinstance(x, Tensor) and x.ndim == 3 and x.shape[1] > 1:
            return rearrange(x, "b c t -> (b c) 1 t"), x.shape[1]
        return x, 1

    def encode(self, x: Tensor, *, n_q: int | None = None, window: int | None = None) -> Tokens:
        """``x`` ``[B, C, T]`` float in [-1, 1] -> Tokens (ids ``[B, Q, ceil(T / hop)]`` int64).

        n_q: code streams to use (residual VQ; default all). window: frames per encoder window
        (default ``window_samples // hop``); the ids do not depend on it. Eval behaviour,
        deterministic and batch-invariant; clips of different lengths: ``encode_clips``.
        Floating input of any dtype is cast to the model's (``Tokenizer.cast_input``).

        A mono model (``channels == 1``) given C > 1 channels codes each channel alone: ids
        ``[B, C * Q, t]``, channel c's Q streams at ``[:, c*Q:(c+1)*Q]`` (equal to encoding
        that channel by itself), ``Tokens.channels == C``; ``decode`` gives C channels back.
        """
        x, groups = self._fold(x)
        self.check_input(x)
        x, w = self.cast_input(x), self._window_frames(window)
        with eval_mode(self):
            ids = self._encode_ids(list(x), n_q, w)
        ids = torch.stack(ids) if len(ids) > 1 else ids[0][None]  # no copy for one clip
        ids = rearrange(ids, "(b g) q t -> b (g q) t", g=groups)  # a view
        return self.make_tokens(ids, x.shape[2], groups)

    def encode_clips(
        self, clips: Sequence[Tensor], *, n_q: int | None = None, window: int | None = None
    ) -> list[Tokens]:
        """Clips ``[C, T_i]`` of any lengths -> one Tokens (ids ``[1, Q, t_i]``) per clip.

        Encoded together (windows of equal length stacked), with the ids of each clip alone.
        A mono model codes each channel of a multi-channel clip alone, as ``encode`` does.
        """
        if isinstance(clips, Tensor) or not len(clips):
            raise InputError("clips: expected a non-empty list of [C, T] tensors")
        folded = []  # (clip [B * C, 1, T] or [1, C, T], C or 1) per clip
        for i, clip in enumerate(clips):
            folded.append(self._fold(clip[None] if isinstance(clip, Tensor) else clip))
            self.check_input(folded[-1][0], f"clips[{i}]")
        w = self._window_frames(window)
        with eval_mode(self):
            ids = self._encode_ids([self.cast_input(c) for x, _ in folded for c in x], n_q, w)
        out, i = [], 0
        for x, groups in folded:
            t = rearrange(torch.stack(ids[i : i + groups]), "g q t -> 1 (g q) t")
            out.append(self.make_tokens(t, x.shape[2], groups))
            i += groups
        return out

    # --- decode -------------------------------------------------------------------------
    def decode(self, tokens: Tokens | Tensor, *, window: int | None = None) -> Tensor:
        """Tokens (or ids ``[B, Q, t]``) -> ``[B, C, T]`` float in [-1, 1] (cropped to T).

        window: frames per decoder window (default ``window_samples // hop``); each window
        reads the latent frames its samples depend on, so the output has no seams. Tokens with
        ``channels`` G > 1 (a mono model's channels coded alone) decode to G channels.
        """
        groups = tokens.channels if isinstance(tokens, Tokens) else 1
        if groups > 1:
            ids, _ = self.unpack_tokens(tokens, 1)
            ids = rearrange(ids, "b (g q) t -> (b g) q t", g=groups)
            y = self.decode(replace(tokens, ids=ids, channels=1), window=window)
            return rearrange(y, "(b g) c t -> b (g c) t", g=groups)
        ids, size = self.unpack_tokens(tokens, 1)
        size = size[0] if size else ids.shape[2] * self.hop
        w, t, hop = self._window_frames(window), ids.shape[2], self.hop
        with eval_mode(self):
            out = torch.empty(ids.shape[0], self.channels, t * hop, device=ids.device)
            for first in range(0, t, w):
                end = min(t, first + w)
                a, b = self.decoder.input_span(first * hop, end * hop - 1)  # frames read
                a, b = max(0, a), min(t - 1, b)
                q = self.quantizer.decode_ids(ids[:, :, a : b + 1].transpose(1, 2))  # [B, n, D]
                y = self.decoder(q.transpose(1, 2))  # [B, C, n * hop]
                out[..., first * hop : end * hop] = y[..., (first - a) * hop : (end - a) * hop]
        return out[..., :size].clamp(-1, 1)


# --- factories ---------------------------------------------------------------------------
def hop_strides(hop: int) -> tuple[int, ...]:
    """Stages for a power-of-two hop: a stride 2 first if needed, then 4s (8 -> (2, 4))."""
    n = hop.bit_length() - 1
    if hop < 2 or 2**n != hop:
        raise ConfigError(f"hop must be a power of two >= 2, got {hop}")
    return (2,) * (n % 2) + (4,) * (n // 2)


def audio_tokenizer(
    hop: int = 32,
    width: int = 16,
    latent_dim: int = 64,
    res_depth: int = 3,
    quantizer: str = "vq",
    codebook_size: int = 1024,
    num_quantizers: int = 1,
    quantizer_dropout: float = 0.0,
    sample_rate: int = DEFAULT_SAMPLE_RATE,
    channels: int = 1,
    dead_code_threshold: float | None = None,
    decoder_width: int | None = None,
    codebook_dim: int | None = None,
    quantizer_options: QuantizerOptions | None = None,
) -> AudioTokenizer:
    """Factory: one level, stages ``hop_strides(hop)``, widths width x1, x2, x4 ... (<= x8).

    ``decoder_width``: the decoder's ``width`` (None: ``width``). A wide decoder with a narrow
    encoder keeps encoding fast (the encoder is what ``encode`` runs) while the decoder gets
    the capacity to reconstruct from the codes.

    ``dead_code_threshold``: absolute restart threshold of vq / rvq (None: the relative
    default, see ``Codebook``); ``codebook_dim``: low-dimensional codes of vq / rvq;
    ``quantizer_options``: cosine / ema / decay / beta / dead_code_ratio / fsq levels
    (``QuantizerOptions``). The quantizer arguments are the same in every factory.

    ``quantizer="rvq"`` with ``quantizer_dropout > 0`` gives one model for several bitrates
    (``encode(x, n_q=...)``).
    """
    strides = hop_strides(hop)

    def widths(w: int) -> tuple[int, ...]:
        return tuple(w * min(2**i, 8) for i in range(len(strides)))

    kw = dict(latent_dim=latent_dim, strides=strides, res_depth=res_depth)
    q = build_quantizer(quantizer, latent_dim, codebook_size, num_quantizers,
                        quantizer_dropout=quantizer_dropout, codebook_dim=codebook_dim,
                        dead_code_threshold=dead_code_threshold,
                        options=quantizer_options)  # fmt: skip
    enc = AudioEncoder(**kw, widths=widths(width), in_channels=channels)
    dec = AudioDecoder(**kw, widths=widths(decoder_width or width), out_channels=channels)
    return AudioTokenizer(enc, q, dec, sample_rate, channels)


class MultiLevelAudioTokenizer(nn.Module):
    """Independent levels (one AudioTokenizer per hop, as in Jukebox) encoded together.

    Args: levels: AudioTokenizers with distinct hops, one sample_rate and channel count.
    ``save_pretrained`` writes one checkpoint folder per level (``hop8/``, ``hop32/`` ...).
    """

    def __init__(self, levels: Sequence[AudioTokenizer]) -> None:
        super().__init__()
        levels = sorted(levels, key=lambda t: t.hop)
        hops = [t.hop for t in levels]
        if not levels or len(set(hops)) != len(hops):
            raise ConfigError(f"levels need distinct hops, got {hops}")
        if len({(t.sample_rate, t.channels) for t in levels}) != 1:
            raise ConfigError("levels must share sample_rate and channels")
        self.levels = nn.ModuleList(levels)
        self.sample_rate, self.channels = levels[0].sample_rate, levels[0].channels

    @property
    def hops(self) -> tuple[int, ...]:
        return tuple(t.hop for t in self.levels)

    def level(self, hop: int) -> AudioTokenizer:
        """The level with this hop (KeyError names the hops there are)."""
        for t in self.levels:
            if t.hop == hop:
                return t
        raise KeyError(f"no level with hop {hop}; hops are {self.hops}")

    def encode(self, x: Tensor, *, n_q: int | None = None) -> dict[int, Tokens]:
        """``[B, C, T]`` -> {hop: Tokens} for every level."""
        return {t.hop: t.encode(x, n_q=n_q) for t in self.levels}

    def encode_clips(
        self, clips: Sequence[Tensor], *, n_q: int | None = None
    ) -> dict[int, list[Tokens]]:
        """Clips ``[C, T_i]`` -> {hop: one Tokens per clip} for every level."""
        return {t.hop: t.encode_clips(clips, n_q=n_q) for t in self.levels}

    def decode(self, tokens: dict[int, Tokens]) -> dict[int, Tensor]:
        """{hop: Tokens} -> {hop: ``[B, C, T]``}, each level decoded on its own."""
        return {hop: self.level(hop).decode(t) for hop, t in tokens.items()}

    def save_pretrained(self, path: str | os.PathLike) -> None:
        for t in self.levels:
            t.save_pretrained(Path(path) / f"hop{t.hop}")

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike) -> MultiLevelAudioTokenizer:
        folders = sorted(Path(path).glob("hop*/"))
        if not folders:
            raise InputError(f"{str(path)!r}: no hop*/ level checkpoints")
        return cls([AudioTokenizer.from_pretrained(f) for f in folders])

    @classmethod
    def from_levels(
        cls, names: Sequence[str | os.PathLike] | None = None
    ) -> MultiLevelAudioTokenizer:
        """One level per preset name / checkpoint folder in ``names`` (default: the bundled
        44.1 kHz Jukebox levels ``mmtok.presets.MUSIC_LEVELS``: ``music44-hop8``,
        ``music44-hop32``, ``music44-hop128``)."""
        if names is None:
            from mmtok.presets import MUSIC_LEVELS, list_presets

            names = [n for n in MUSIC_LEVELS if n in list_presets()]
        if not names:
            raise InputError("no audio levels: name presets or checkpoint folders")
        return cls([AudioTokenizer.from_pretrained(n) for n in names])


def multilevel_audio_tokenizer(
    hops: Sequence[int] = (8, 32, 128), level: Mapping[str, Any] | None = None
) -> MultiLevelAudioTokenizer:
    """Factory: one ``audio_tokenizer(hop, **level)`` per hop, every level the same but for
    its hop.

    hops: the levels' hops (Jukebox: 8, 32, 128).
    level: keyword arguments of ``audio_tokenizer`` other than ``hop`` (all of them are
        reachable, none is re-listed here; an unknown name is a ConfigError). Levels that
        differ in more than the hop: ``MultiLevelAudioTokenizer([audio_tokenizer(...), ...])``.
    """
    level = dict(level or {})
    known = [name for name in inspect.signature(audio_tokenizer).parameters if name != "hop"]
    unknown = sorted(set(level) - set(known))
    if unknown:
        raise ConfigError(f"level: unknown audio_tokenizer argument(s) {', '.join(unknown)} "
                          f"(known: {', '.join(known)})")  # fmt: skip
    return MultiLevelAudioTokenizer([audio_tokenizer(hop, **level) for hop in hops])
