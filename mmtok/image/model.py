"""2D conv encoder/decoder of the image tokenizer (VQ-VAE / VQGAN shape, no attention).

Legend: B batch, C=3 image channels, H, W pixels, D latent dim, h = H/f, w = W/f for a
downsample factor f (a power of two: 4, 8, 16).

Encoder: stem conv, then log2(f) stages of [stride-2 conv, residual blocks], then a 1x1 conv to
D. Decoder mirrors it with transposed convs. No batch statistics anywhere (no BatchNorm), so
eval-mode outputs of one sample never depend on the rest of the batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor, nn

from mmtok.configurable import Configurable
from mmtok.errors import ConfigError


class ResBlock2d(nn.Module):
    """x + conv3x3(silu(conv3x3(silu(x)))) at constant channel count."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.SiLU(), nn.Conv2d(ch, ch, 3, padding=1), nn.SiLU(),
                                 nn.Conv2d(ch, ch, 3, padding=1))  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:
        return x + self.net(x)


def _stage_channels(hidden: int, channel_mult: Sequence[int], downsample: int) -> list[int]:
    n = int(math.log2(downsample)) if downsample > 1 else 0
    if downsample < 2 or 2**n != downsample:
        raise ConfigError(f"downsample must be a power of two >= 2, got {downsample}")
    if len(channel_mult) != n:
        raise ConfigError(f"channel_mult needs {n} entries for downsample {downsample}, "
                          f"got {list(channel_mult)}")  # fmt: skip
    return [hidden] + [hidden * m for m in channel_mult]


class ImageEncoder(Configurable, nn.Module):
    """``[B, 3, H, W]`` in [-1, 1] (H, W multiples of f) -> ``[B, D, H/f, W/f]``.

    Args:
        latent_dim: D, channels of the output (= the quantizer's dim).
        hidden: channels after the stem.
        channel_mult: channel multiplier of each of the log2(f) downsampling stages.
        downsample: f, total downsampling per side.
        res_blocks: residual blocks after each stage.
        in_channels: image channels (3).
    """

    def __init__(
        self,
        latent_dim: int = 64,
        hidden: int = 64,
        channel_mult: Sequence[int] = (1, 2, 2),
        downsample: int = 8,
        res_blocks: int = 1,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        chs = _stage_channels(hidden, channel_mult, downsample)
        self.downsample = downsample
        layers: list[nn.Module] = [nn.Conv2d(in_channels, hidden, 3, padding=1)]
        for c_in, c_out in zip(chs[:-1], chs[1:], strict=True):
            layers += [nn.SiLU(), nn.Conv2d(c_in, c_out, 4, stride=2, padding=1)]
            layers += [ResBlock2d(c_out) for _ in range(res_blocks)]
        layers += [nn.SiLU(), nn.Conv2d(chs[-1], latent_dim, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class ImageDecoder(Configurable, nn.Module):
    """``[B, D, h, w]`` -> ``[B, 3, h*f, w*f]`` (unbounded; ~[-1, 1] after training).

    Args: as ImageEncoder (mirrored); out_channels: image channels (3).
    """

    def __init__(
        self,
        latent_dim: int = 64,
        hidden: int = 64,
        channel_mult: Sequence[int] = (1, 2, 2),
        downsample: int = 8,
        res_blocks: int = 1,
        out_channels: int = 3,
    ) -> None:
        super().__init__()
        chs = _stage_channels(hidden, channel_mult, downsample)[::-1]
        layers: list[nn.Module] = [nn.Conv2d(latent_dim, chs[0], 3, padding=1)]
        for c_in, c_out in zip(chs[:-1], chs[1:], strict=True):
            layers += [ResBlock2d(c_in) for _ in range(res_blocks)]
            layers += [nn.SiLU(), nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1)]
        layers += [nn.SiLU(), nn.Conv2d(chs[-1], out_channels, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)
