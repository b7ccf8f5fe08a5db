"""3D conv + axial-attention encoder/decoder of the video tokenizer (VideoGPT VQ-VAE shape).

Legend: B batch, C channels, T frames, H, W pixels, D latent dim, (s_t, s_h, s_w) downsample
per axis (powers of two), t = T / s_t (causal: 1 + (T - 1) / s_t), h = H / s_h, w = W / s_w.

VideoGPT (Yan et al., 2021): strided 3D convs down to the latent grid (stride 2 per stage on
each axis that still needs it), residual blocks with axial attention along T, H and W at the
latent resolution, transposed 3D convs back up. Norms are GroupNorm per sample and per frame
(no BatchNorm), so eval outputs of one sample never depend on the rest of the batch.

Causal mode (MAGVIT-v2, Cosmos): time convs pad on the left only (replicating the first frame),
temporal attention is masked, norms never mix frames, and each stride-2 time upsampling drops
its last frame. Latent frame i then sees frames <= s_t * i only: the first frame is coded alone
(an image is a 1-frame video) and 1 + k * s_t frames <-> 1 + k latent frames.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from mmtok.configurable import Configurable
from mmtok.errors import ConfigError

Triple = tuple[int, int, int]

# axial attention layouts: the attended axis becomes the sequence, the other two join the batch
_AXIS_IN = {
    "t": "b (three n d) t h w -> three (b h w) n t d",
    "h": "b (three n d) t h w -> three (b t w) n h d",
    "w": "b (three n d) t h w -> three (b t h) n w d",
}
_AXIS_OUT = {
    "t": "(b h w) n t d -> b (n d) t h w",
    "h": "(b t w) n h d -> b (n d) t h w",
    "w": "(b t h) n w d -> b (n d) t h w",
}


def _triple(v: int | Sequence[int]) -> Triple:
    t = (v, v, v) if isinstance(v, int) else tuple(v)
    if len(t) != 3:
        raise ConfigError(f"expected an int or 3 values (t, h, w), got {v!r}")
    return t  # type: ignore[return-value]


def _use_onednn(x: Tensor) -> bool:
    """No-grad fp32 CPU run with oneDNN available (see ``Conv3d``)."""
    return (
        x.device.type == "cpu"
        and x.dtype == torch.float32
        and not torch.is_grad_enabled()
        and torch.backends.mkldnn.is_available()
        and torch.backends.mkldnn.enabled
    )


class Conv3d(nn.Conv3d):
    """``[B, C_in, T, H, W]`` -> ``[B, C_out, T', H', W']``, padding ``(k - s) // 2`` per side
    (a stride-2 kernel-4 axis halves, a stride-1 kernel-3 axis keeps its size); causal: the time
    axis gets ``k_t - 1`` replicated first frames on the left instead (T' = (T - 1) // s_t + 1).

    Without autograd on CPU fp32 it calls oneDNN directly: PyTorch otherwise runs small batch-1
    convs with a different kernel (slow_conv3d) than batch > 1, the last bits differ, and eval
    encode would not be bitwise batch-invariant (it is also ~1.7x faster at batch 1).
    """

    def __init__(
        self, c_in: int, c_out: int, kernel: int | Sequence[int] = 3,
        stride: int | Sequence[int] = 1, causal: bool = False,
    ) -> None:  # fmt: skip
        k, s = _triple(kernel), _triple(stride)
        pad = [(ki - si) // 2 for ki, si in zip(k, s, strict=True)]
        if causal:
            pad[0] = 0
        super().__init__(c_in, c_out, k, s, padding=tuple(pad))
        self.causal_pad = k[0] - 1 if causal else 0

    def forward(self, x: Tensor) -> Tensor:
        if self.causal_pad:
            x = F.pad(x, (0, 0, 0, 0, self.causal_pad, 0), mode="replicate")
        if _use_onednn(x):
            return torch.ops.aten.mkldnn_convolution(
                x, self.weight, self.bias, self.padding, self.stride, self.dilation, self.groups
            )
        return super().forward(x)


class ConvTranspose3d(nn.ConvTranspose3d):
    """Upsampling by ``stride`` (1 or 2 per axis): kernel 4 / padding 1 on a stride-2 axis
    (exactly 2x), kernel 3 / padding 1 on a stride-1 axis. Causal: a stride-1 time axis uses
    kernel 1, a stride-2 time axis drops its last output frame (t -> 2t - 1); output frame j
    then depends on latent frames <= ceil(j / 2) only."""

    def __init__(self, c_in: int, c_out: int, stride: Sequence[int], causal: bool) -> None:
        s = _triple(stride)
        k, p = [4 if si == 2 else 3 for si in s], [1, 1, 1]
        if causal and s[0] == 1:
            k[0], p[0] = 1, 0
        super().__init__(c_in, c_out, tuple(k), s, padding=tuple(p))
        self.drop_last = causal and s[0] == 2

    def forward(self, x: Tensor) -> Tensor:
        y = super().forward(x)
        return y[:, :, :-1] if self.drop_last else y


class FrameNorm(nn.GroupNorm):
    """GroupNorm (gcd(C, 32) groups) over (C, H, W) of each frame of each sample: no batch
    statistics, and no statistics across time (causal mode stays causal)."""

    def __init__(self, ch: int) -> None:
        super().__init__(math.gcd(ch, 32), ch)

    def forward(self, x: Tensor) -> Tensor:
        b = x.shape[0]
        y = super().forward(rearrange(x, "b c t h w -> (b t) c h w"))
        return rearrange(y, "(b t) c h w -> b c t h w", b=b)


class ResBlock3d(nn.Module):
    """x + conv3(silu(norm(conv3(silu(norm(x)))))) at constant channel count."""

    def __init__(self, ch: int, causal: bool = False) -> None:
        super().__init__()
        self.net = nn.Sequential(
            FrameNorm(ch), nn.SiLU(), Conv3d(ch, ch, 3, causal=causal),
            FrameNorm(ch), nn.SiLU(), Conv3d(ch, ch, 3, causal=causal),
        )  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:
        return x + self.net(x)


class AxialAttention(nn.Module):
    """Multi-head self-attention along T, H and W separately (VideoGPT ``AxialBlock``).

    ``[B, C, T, H, W]`` -> same shape. Each axis has its own q, k, v (one 1x1x1 conv makes all
    nine: channels ``[axis t | h | w]``, each ``[q | k | v]``, each ``(heads, C / heads)``); the
    three attended outputs are concatenated and projected back to C (= the sum of three per-axis
    output projections). ``causal`` masks attention along T to earlier frames.
    """

    def __init__(self, ch: int, heads: int, causal: bool = False) -> None:
        super().__init__()
        if heads < 1 or ch % heads:
            raise ConfigError(f"attention heads must divide channels {ch}, got {heads}")
        self.heads, self.causal = heads, causal
        self.qkv = Conv3d(ch, 9 * ch, 1)
        self.proj = Conv3d(3 * ch, ch, 1)

    def forward(self, x: Tensor) -> Tensor:
        b, _, t, h, w = x.shape
        per_axis = self.qkv(x).chunk(3, dim=1)  # 3 x [B, 3C, T, H, W]
        outs = []
        for axis, qkv in zip("thw", per_axis, strict=True):
            # [B', n, L, d]; contiguous, as for B > 1 (SDPA's result depends on the strides)
            q, k, v = rearrange(qkv, _AXIS_IN[axis], three=3, n=self.heads).contiguous()
            o = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal and axis == "t")
            outs.append(rearrange(o, _AXIS_OUT[axis], b=b, t=t, h=h, w=w))
        return self.proj(torch.cat(outs, dim=1))


class AttentionResBlock(nn.Module):
    """ResBlock3d, then x + AxialAttention(norm(x)) (VideoGPT ``AttentionResidualBlock``)."""

    def __init__(self, ch: int, heads: int, causal: bool = False) -> None:
        super().__init__()
        self.res = ResBlock3d(ch, causal)
        self.norm = FrameNorm(ch)
        self.attn = AxialAttention(ch, heads, causal)

    def forward(self, x: Tensor) -> Tensor:
        x = self.res(x)
        return x + self.attn(self.norm(x))


def stage_strides(downsample: Sequence[int]) -> list[Triple]:
    """Per-stage (t, h, w) strides: log2(max factor) stages, stride 2 on an axis while it still
    needs downsampling (VideoGPT), e.g. (2, 4, 4) -> [(2, 2, 2), (1, 2, 2)]."""
    ds = tuple(downsample)
    ok = len(ds) == 3 and all(isinstance(d, int) and d >= 1 and not d & (d - 1) for d in ds)
    if not ok or max(ds) < 2:
        raise ConfigError(f"downsample must be 3 powers of two (t, h, w), one >= 2, got {ds}")
    n = max(ds).bit_length() - 1
    return [tuple(2 if i < d.bit_length() - 1 else 1 for d in ds) for i in range(n)]  # type: ignore[misc]


def _stage_channels(hidden: int, channel_mult: Sequence[int], stages: int) -> list[int]:
    if len(channel_mult) != stages:
        raise ConfigError(f"channel_mult needs {stages} entries (one per stride-2 stage), "
                          f"got {list(channel_mult)}")  # fmt: skip
    return [hidden] + [hidden * m for m in channel_mult]


class VideoEncoder(Configurable, nn.Module):
    """``[B, 3, T, H, W]`` in [-1, 1] (T, H, W valid for the downsample) -> ``[B, D, t, h, w]``.

    Args:
        latent_dim: D, channels of the output (= the quantizer's dim).
        hidden: channels after the stem.
        channel_mult: channel multiplier of each stride-2 stage (log2(max(downsample)) entries).
        downsample: (s_t, s_h, s_w), powers of two, e.g. (4, 4, 4), (2, 4, 4), (1, 8, 8).
        res_blocks: residual blocks after each downsampling conv.
        attn_blocks: residual + axial attention blocks at the latent resolution.
        heads: attention heads (must divide hidden * channel_mult[-1]).
        causal: causal time padding / attention: the first frame is coded alone.
        in_channels: video channels (3).
    """

    def __init__(
        self,
        latent_dim: int = 64,
        hidden: int = 64,
        channel_mult: Sequence[int] = (1, 2),
        downsample: Sequence[int] = (4, 4, 4),
        res_blocks: int = 1,
        attn_blocks: int = 1,
        heads: int = 4,
        causal: bool = False,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        strides = stage_strides(downsample)
        chs = _stage_channels(hidden, channel_mult, len(strides))
        self.downsample, self.causal = tuple(downsample), causal
        layers: list[nn.Module] = [Conv3d(in_channels, hidden, 3, causal=causal)]
        for c_in, c_out, s in zip(chs[:-1], chs[1:], strides, strict=True):
            kernel = [4 if si == 2 else 3 for si in s]
            layers += [nn.SiLU(), Conv3d(c_in, c_out, kernel, s, causal=causal)]
            layers += [ResBlock3d(c_out, causal) for _ in range(res_blocks)]
        layers += [AttentionResBlock(chs[-1], heads, causal) for _ in range(attn_blocks)]
        layers += [FrameNorm(chs[-1]), nn.SiLU(), Conv3d(chs[-1], latent_dim, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class VideoDecoder(Configurable, nn.Module):
    """``[B, D, t, h, w]`` -> ``[B, 3, T, H, W]`` (unbounded; ~[-1, 1] after training), with
    T = t * s_t (causal: 1 + (t - 1) * s_t), H = h * s_h, W = w * s_w.

    Args: as VideoEncoder (mirrored: attention blocks first, then transposed-conv stages);
    out_channels: video channels (3).
    """

    def __init__(
        self,
        latent_dim: int = 64,
        hidden: int = 64,
        channel_mult: Sequence[int] = (1, 2),
        downsample: Sequence[int] = (4, 4, 4),
        res_blocks: int = 1,
        attn_blocks: int = 1,
        heads: int = 4,
        causal: bool = False,
        out_channels: int = 3,
    ) -> None:
        super().__init__()
        strides = stage_strides(downsample)[::-1]
        chs = _stage_channels(hidden, channel_mult, len(strides))[::-1]
        self.downsample, self.causal = tuple(downsample), causal
        layers: list[nn.Module] = [Conv3d(latent_dim, chs[0], 3, causal=causal)]
        layers += [AttentionResBlock(chs[0], heads, causal) for _ in range(attn_blocks)]
        for c_in, c_out, s in zip(chs[:-1], chs[1:], strides, strict=True):
            layers += [ResBlock3d(c_in, causal) for _ in range(res_blocks)]
            layers += [nn.SiLU(), ConvTranspose3d(c_in, c_out, s, causal)]
        layers += [FrameNorm(chs[-1]), nn.SiLU(), Conv3d(chs[-1], out_channels, 3, causal=causal)]
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)
