"""VideoTokenizer: ``[B, 3, T, H, W]`` in [-1, 1] <-> ids ``[B, Q, t, h, w]``, clip by clip.

Legend: B batch, T frames, H, W pixels, c = clip_frames, (s_t, s_h, s_w) downsample, Q code
streams, t latent frames (all clips), h = ceil(H / s_h), w = ceil(W / s_w).

Clip windows are the unit (docs/video.md): a video is cut into consecutive clips of c frames,
each tokenized independently; the last, shorter clip is padded (repeating its last frame) only
up to the next length the encoder accepts (a multiple of s_t; causal: 1 + a multiple of s_t).
Clip ids are concatenated along t in clip order, so ``encode(video)`` equals the per-clip
encodes concatenated, and ``decode`` returns the full-length video. ``video_tokenizer`` is the
factory the presets and recipes use.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from mmtok.errors import ConfigError
from mmtok.quantization import Quantizer
from mmtok.quantization.factory import QuantizerOptions, build_quantizer
from mmtok.tokenizer import Tokenizer
from mmtok.video.model import VideoDecoder, VideoEncoder, stage_strides


class VideoTokenizer(Tokenizer):
    """Video tokenizer (VideoGPT VQ-VAE shape) over independent clip windows.

    Args:
        encoder: VideoEncoder (its downsample and causal flag define the token grid).
        quantizer: any Quantizer with ``dim`` == the encoder's latent_dim.
        decoder: VideoDecoder with the same downsample, causal flag and latent_dim.
        clip_frames: c, frames per clip window: a multiple of s_t (causal: 1 + a multiple).
        fps: frame rate clips are sampled at when reading files (None: keep the source rate).
    """

    modality = "video"
    channels = 3

    def __init__(
        self,
        encoder: VideoEncoder,
        quantizer: Quantizer,
        decoder: VideoDecoder,
        clip_frames: int = 16,
        fps: float | None = None,
    ) -> None:
        super().__init__(encoder, quantizer, decoder)
        enc, dec = encoder.config, decoder.config
        if enc["latent_dim"] != quantizer.dim or dec["latent_dim"] != quantizer.dim:
            raise ConfigError(f"encoder / decoder latent_dim {enc['latent_dim']} / "
                              f"{dec['latent_dim']} != quantizer dim {quantizer.dim}")  # fmt: skip
        if (encoder.downsample, encoder.causal) != (decoder.downsample, decoder.causal):
            raise ConfigError(f"encoder downsample/causal {encoder.downsample}/{encoder.causal} "
                              f"!= decoder {decoder.downsample}/{decoder.causal}")  # fmt: skip
        if fps is not None and not fps > 0:
            raise ConfigError(f"fps must be a positive number or None, got {fps!r}")
        self.downsample = encoder.downsample
        self.causal = encoder.causal
        ok = isinstance(clip_frames, int) and clip_frames >= 1
        if not ok or self.valid_frames(clip_frames) != clip_frames:
            rule = "1 + a multiple of" if self.causal else "a multiple of"
            raise ConfigError(f"clip_frames must be {rule} s_t={self.downsample[0]}, "
                              f"got {clip_frames!r}")  # fmt: skip
        self.clip_frames, self.fps = clip_frames, fps

    # --- clip windows -------------------------------------------------------------------
    def latent_frames(self, frames: int) -> int:
        """Latent frames of one clip of ``frames`` (<= clip_frames) frames."""
        s = self.downsample[0]
        return 1 + math.ceil((frames - 1) / s) if self.causal else math.ceil(frames / s)

    def decoded_frames(self, latent: int) -> int:
        """Frames the decoder makes from ``latent`` latent frames."""
        s = self.downsample[0]
        return 1 + (latent - 1) * s if self.causal else latent * s

    def valid_frames(self, frames: int) -> int:
        """The shortest clip length >= ``frames`` the encoder accepts unpadded."""
        return self.decoded_frames(self.latent_frames(frames))

    def clip_windows(self, frames: int) -> list[tuple[int, int]]:
        """``[start, end)`` frame ranges of the clips of a ``frames``-frame video, in order."""
        c = self.clip_frames
        return [(a, min(a + c, frames)) for a in range(0, frames, c)]

    def token_grid(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """``(t, h, w)`` for an input ``(..., T, H, W)``: t sums the latent frames of all clips."""
        frames, height, width = input_shape[-3:]
        t = sum(self.latent_frames(b - a) for a, b in self.clip_windows(frames))
        _, sh, sw = self.downsample
        return (t, math.ceil(height / sh), math.ceil(width / sw))

    def _pad(self, clip: Tensor) -> Tensor:
        """One clip ``[B, 3, T<=c, H, W]`` -> valid length and multiples of s_h, s_w (edge
        replicate: the last frame, the last row, the last column)."""
        frames, height, width = clip.shape[2:]
        _, sh, sw = self.downsample
        extra = (self.valid_frames(frames) - frames, -height % sh, -width % sw)
        pads = [0, extra[2], 0, extra[1], 0, extra[0]]
        return F.pad(clip, pads, mode="replicate") if any(pads) else clip

    # --- the contract, per clip ---------------------------------------------------------
    def _latents(self, x: Tensor) -> tuple[Tensor, tuple[int, ...]]:
        """Encode each clip window: latents ``[B, N, D]`` of all clips (in t order), grid."""
        latents = [
            self.encoder(self._pad(x[:, :, a:b])).flatten(2)  # [B, D, t_clip * h * w]
            for a, b in self.clip_windows(x.shape[2])
        ]
        z = torch.cat(latents, dim=2).transpose(1, 2)  # [B, N, D]; t slowest, so clip order
        return z, self.token_grid(x.shape)

    def _decode_latents(self, q: Tensor, grid: tuple[int, ...], size: tuple[int, ...]) -> Tensor:
        """``q`` ``[B, N, D]`` -> video: decode each clip's latent frames, concatenate, crop."""
        z = q.transpose(1, 2).reshape(q.shape[0], q.shape[2], *grid)  # [B, D, t, h, w]
        per_clip = self.latent_frames(self.clip_frames)
        full, rest = divmod(grid[0], per_clip)
        chunks = [per_clip] * full + ([rest] if rest else [])
        video = torch.cat([self.decoder(zc) for zc in z.split(chunks, dim=2)], dim=2)
        return self._crop(video, size)  # only the last clip can be longer than its frames


def video_tokenizer(
    downsample: Sequence[int] = (4, 4, 4),
    hidden: int = 64,
    latent_dim: int = 64,
    res_blocks: int = 1,
    attn_blocks: int = 1,
    causal: bool = False,
    clip_frames: int | None = None,
    fps: float | None = None,
    quantizer: str = "vq",
    codebook_size: int = 1024,
    num_quantizers: int = 1,
    codebook_dim: int | None = None,
    dead_code_threshold: float | None = None,
    quantizer_dropout: float = 0.0,
    quantizer_options: QuantizerOptions | None = None,
) -> VideoTokenizer:
    """Factory: VideoGPT-style 3D conv + axial attention tokenizer, channels x1, x2, x2, ...
    over log2(max(downsample)) stages; 4 attention heads (fewer if the channels need it).

    clip_frames: None gives 16, or 17 (= 1 + 4 * 4) when causal with s_t = 4 (in general
    4 * s_t, or 1 + 4 * s_t when causal). quantizer: "vq" (EMA codebook with restarts) |
    "rvq" | "fsq"; dead_code_threshold: absolute restart threshold of vq / rvq (None: the
    relative default, see ``Codebook``); quantizer_dropout: rvq stage dropout;
    quantizer_options: cosine / ema / decay / beta / dead_code_ratio / fsq levels
    (``QuantizerOptions``). The quantizer arguments are the same in every factory.
    """
    n = len(stage_strides(downsample))
    mult = tuple(min(2**i, 2) for i in range(n))
    heads = math.gcd(hidden * mult[-1], 4)
    kw = dict(latent_dim=latent_dim, hidden=hidden, channel_mult=mult,
              downsample=tuple(downsample), res_blocks=res_blocks, attn_blocks=attn_blocks,
              heads=heads, causal=causal)  # fmt: skip
    q = build_quantizer(quantizer, latent_dim, codebook_size, num_quantizers,
                        quantizer_dropout=quantizer_dropout, codebook_dim=codebook_dim,
                        dead_code_threshold=dead_code_threshold,
                        options=quantizer_options)  # fmt: skip
    if clip_frames is None:
        clip_frames = 4 * downsample[0] + int(causal)
    return VideoTokenizer(VideoEncoder(**kw), q, VideoDecoder(**kw), clip_frames, fps)
