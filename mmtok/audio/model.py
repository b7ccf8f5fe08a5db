"""1D conv encoder/decoder of the audio tokenizer: one Jukebox VQ-VAE level, no attention.

Legend: B batch, C audio channels, T samples, D latent dim, hop = prod(strides), t = T / hop.

Encoder (Jukebox ``vqvae/encdec.py``, Dhariwal et al. 2020): per stage a strided Conv1d
(kernel 2s, stride s, padding s/2: length L -> L/s) and a residual stack of dilated Conv1d
blocks (dilation g**j for block j, g = ``dilation_growth``: 1, 3, 9, 27), then a kernel-3 conv
to D. The decoder mirrors it: a kernel-3 conv from D, per stage a residual stack (dilations
reversed) and a transposed conv (kernel 2s, stride s, padding s/2: L -> L*s), a kernel-3 conv
to C. No normalisation layers: an eval output never depends on the rest of the batch.

Exact windows: ``input_span`` walks the layers backwards and returns the input positions a
range of outputs depends on (the receptive field, from the layer configuration alone). A window
that holds that span reproduces those outputs of a single pass; see ``AudioTokenizer.encode``.

Pinned conv kernel (encoder): on CPU, ``F.conv1d`` picks oneDNN or the native im2col + GEMM
kernel by a size heuristic (batch 1 and C*T <= 20480 -> native), and oneDNN itself picks
kernels by shape (dilated convs, batch size); they round differently (~1e-7 relative), so a
window and the whole input could get latents that differ in the last bits. ``ExactConv1d``
always runs the native kernel in fp32 CPU inference, whose outputs are bit-identical for any
input length >= 12, offset and batch size (checked in tests/test_audio_model.py), so windowed
and batched encodes give the same ids as one pass. The decoder keeps the fast default kernels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from mmtok.configurable import Configurable
from mmtok.errors import ConfigError

_ELEMENTWISE = (nn.ReLU, nn.SiLU, nn.ELU, nn.LeakyReLU, nn.Identity)


class ExactConv1d(nn.Conv1d):
    """``nn.Conv1d`` that runs the native im2col + GEMM kernel in fp32 CPU inference (see top);
    on CUDA it runs cuDNN in full fp32 (no TF32) with deterministic algorithms."""

    def _conv_forward(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        if torch.is_grad_enabled() or x.dtype != torch.float32 or self.groups != 1:
            return super()._conv_forward(x, weight, bias)
        if x.device.type == "cuda":  # full fp32 (cuDNN convs default to TF32), fixed algorithms
            with torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=True,
                                            allow_tf32=False):  # fmt: skip
                return super()._conv_forward(x, weight, bias)
        if x.device.type != "cpu" or self.padding_mode != "zeros":
            return super()._conv_forward(x, weight, bias)
        k, s = (1, self.kernel_size[0]), (1, self.stride[0])
        p, d = (0, self.padding[0]), (1, self.dilation[0])
        x4, w4 = x.unsqueeze(2), weight.unsqueeze(2)  # [B, C, 1, T]: 1D as 2D
        if d == (1, 1):
            return torch.ops.aten.thnn_conv2d(x4, w4, k, bias, s, p).squeeze(2)
        return torch.ops.aten.slow_conv_dilated2d(x4, w4, k, bias, s, p, d).squeeze(2)


class ResBlock1d(nn.Module):
    """``x + conv1x1(relu(conv_k,dilated(relu(x))))`` at constant width (Jukebox ResConv1DBlock)."""

    def __init__(self, ch: int, dilation: int, kernel_size: int, conv: type[nn.Conv1d]) -> None:
        super().__init__()
        pad = dilation * (kernel_size - 1) // 2
        dilated = conv(ch, ch, kernel_size, padding=pad, dilation=dilation)
        self.net = nn.Sequential(nn.ReLU(), dilated, nn.ReLU(), conv(ch, ch, 1))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.net(x)


def res_stack(
    ch: int, depth: int, growth: int, kernel_size: int, conv: type[nn.Conv1d], reverse: bool = False
) -> list[nn.Module]:
    """``depth`` ResBlock1d with dilations growth**0 .. growth**(depth-1) (reversed if asked)."""
    dilations = [growth**j for j in range(depth)]
    return [
        ResBlock1d(ch, d, kernel_size, conv) for d in (dilations[::-1] if reverse else dilations)
    ]


def input_span(module: nn.Module, first: int, last: int) -> tuple[int, int]:
    """Input positions ``[a, b]`` (inclusive) that outputs ``first..last`` of ``module`` read.

    Exact for the layers of this file (zero-padded convs and transposed convs, residual blocks,
    elementwise activations, nn.Sequential); other modules raise ConfigError. Positions may
    fall outside the input (its zero padding).
    """
    if isinstance(module, nn.Sequential):
        for layer in reversed(module):
            first, last = input_span(layer, first, last)
        return first, last
    if isinstance(module, ResBlock1d):  # identity path + the block
        a, b = input_span(module.net, first, last)
        return min(a, first), max(b, last)
    if isinstance(module, nn.ConvTranspose1d):  # input i writes outputs i*s - p .. i*s - p + k - 1
        (k,), (s,), (p,) = module.kernel_size, module.stride, module.padding
        if module.dilation[0] != 1 or module.output_padding[0] != 0:
            raise ConfigError("input_span: transposed convs need dilation 1, output_padding 0")
        return math.ceil((first + p - k + 1) / s), (last + p) // s
    if isinstance(module, nn.Conv1d):  # output o reads inputs o*s - p .. o*s - p + d*(k-1)
        (k,), (s,), (d,) = module.kernel_size, module.stride, module.dilation
        p = module.padding[0] if isinstance(module.padding, tuple) else 0
        if module.padding_mode != "zeros" or isinstance(module.padding, str):
            raise ConfigError("input_span: convs need explicit zero padding")
        return first * s - p, last * s - p + d * (k - 1)
    if isinstance(module, _ELEMENTWISE):
        return first, last
    raise ConfigError(f"input_span: no rule for {type(module).__name__}")


def _check_stages(strides: Sequence[int], widths: Sequence[int], kernel_size: int) -> None:
    if not strides or any(s < 2 or s % 2 for s in strides):
        raise ConfigError(f"strides must be even numbers >= 2, got {list(strides)}")
    if len(widths) != len(strides) or any(w < 1 for w in widths):
        raise ConfigError(f"widths needs one positive width per stride ({len(strides)}), "
                          f"got {list(widths)}")  # fmt: skip
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ConfigError(f"kernel_size must be odd, got {kernel_size}")


class AudioEncoder(Configurable, nn.Module):
    """``[B, C, T]`` in [-1, 1] (T a multiple of hop) -> latents ``[B, D, T / hop]``.

    Args:
        latent_dim: D, channels of the output (= the quantizer's dim).
        strides: stride of each downsampling stage (even); hop = their product.
        widths: channels of each stage (same length as strides).
        res_depth: dilated residual blocks after each strided conv.
        dilation_growth: dilation of block j is dilation_growth**j (Jukebox: 3).
        kernel_size: kernel of the dilated convs (odd).
        in_channels: C, audio channels (1: mono).
    """

    def __init__(
        self,
        latent_dim: int = 64,
        strides: Sequence[int] = (2, 4, 4),
        widths: Sequence[int] = (16, 32, 64),
        res_depth: int = 3,
        dilation_growth: int = 3,
        kernel_size: int = 3,
        in_channels: int = 1,
    ) -> None:
        super().__init__()
        _check_stages(strides, widths, kernel_size)
        self.hop, self.in_channels = math.prod(strides), in_channels
        layers: list[nn.Module] = []
        for s, c_in, c_out in zip(strides, [in_channels, *widths], widths, strict=False):
            layers.append(ExactConv1d(c_in, c_out, 2 * s, stride=s, padding=s // 2))  # L -> L/s
            layers += res_stack(c_out, res_depth, dilation_growth, kernel_size, ExactConv1d)
        layers.append(ExactConv1d(widths[-1], latent_dim, 3, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def input_span(self, first: int, last: int) -> tuple[int, int]:
        """Samples ``[a, b]`` (inclusive) that latent frames ``first..last`` depend on."""
        return input_span(self.net, first, last)

    @property
    def receptive_field(self) -> int:
        """Samples one latent frame depends on."""
        a, b = self.input_span(0, 0)
        return b - a + 1


class AudioDecoder(Configurable, nn.Module):
    """Latents ``[B, D, t]`` -> ``[B, C, t * hop]`` (unbounded; ~[-1, 1] after training).

    Args: as AudioEncoder (stages mirrored, dilations reversed); out_channels: C.
    """

    def __init__(
        self,
        latent_dim: int = 64,
        strides: Sequence[int] = (2, 4, 4),
        widths: Sequence[int] = (16, 32, 64),
        res_depth: int = 3,
        dilation_growth: int = 3,
        kernel_size: int = 3,
        out_channels: int = 1,
    ) -> None:
        super().__init__()
        _check_stages(strides, widths, kernel_size)
        self.hop, self.out_channels = math.prod(strides), out_channels
        layers: list[nn.Module] = [nn.Conv1d(latent_dim, widths[-1], 3, padding=1)]
        outs = [widths[0], *widths[:-1]]
        for s, c_in, c_out in reversed(list(zip(strides, widths, outs, strict=True))):
            layers += res_stack(c_in, res_depth, dilation_growth, kernel_size, nn.Conv1d, True)
            layers.append(nn.ConvTranspose1d(c_in, c_out, 2 * s, stride=s, padding=s // 2))
        layers += [nn.ReLU(), nn.Conv1d(widths[0], out_channels, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)

    def input_span(self, first: int, last: int) -> tuple[int, int]:
        """Latent frames ``[a, b]`` (inclusive) that output samples ``first..last`` depend on."""
        return input_span(self.net, first, last)
