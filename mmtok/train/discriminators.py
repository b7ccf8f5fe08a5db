"""Discriminators for adversarial tokenizer training, and the registry a recipe picks them from.

Legend: B batch, C channels, T samples, F frequency bins, t STFT frames, H, W pixels,
P period, w the recipe's ``adversarial.channels`` (base width).

A discriminator maps a batch in the tokenizer's input layout (audio ``[B, C, T]``, image
``[B, 3, H, W]``, video ``[B, 3, T, H, W]``, all in [-1, 1]) to a ``DiscriminatorOutput``:
``logits``, one map per sub-discriminator (any shape ``[B, ...]``; higher means "real"), and
``features``, every hidden activation in a fixed order (what feature matching compares).

- ``mrstft``: multi-resolution STFT discriminator (EnCodec's MS-STFTD, DAC): 2D convolutions
  over the log-magnitude spectrogram at FFT 2048 / 1024 / 512 (hop = FFT / 4), strided along
  frequency, dilated along time.
- ``mpd``: multi-period discriminator (HiFi-GAN, Kong et al. 2020): the waveform folded into
  ``[T / P, P]`` for periods 2, 3, 5, 7, 11, 2D convolutions with ``(5, 1)`` kernels.
- ``patch``: PatchGAN (Isola et al. 2017, as in VQGAN and LlamaGen): a logit per overlapping
  patch; video is judged frame by frame (frames folded into the batch).

Every convolution is weight-normalised; there is no batch norm, so a sample's logits do not
depend on the rest of its batch. Entries of ``DISCRIMINATORS`` are made for the tokenizer
being trained (its channel count) with the recipe's base width.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm

from mmtok.tokenizer import Tokenizer

SLOPE = 0.2  # LeakyReLU slope of every discriminator here
STFT_SIZES = (2048, 1024, 512)
PERIODS = (2, 3, 5, 7, 11)


@dataclass
class DiscriminatorOutput:
    """logits: one map ``[B, ...]`` per sub-discriminator; features: hidden activations."""

    logits: list[Tensor]
    features: list[Tensor]


def merge(outputs: Sequence[DiscriminatorOutput]) -> DiscriminatorOutput:
    """One output holding the logits and features of ``outputs`` in order."""
    return DiscriminatorOutput([t for o in outputs for t in o.logits],
                               [t for o in outputs for t in o.features])  # fmt: skip


class _ConvStack(nn.Module):
    """Convolutions with LeakyReLU (each activation a feature), then a linear head (logits)."""

    def __init__(self, convs: Sequence[nn.Module], head: nn.Module) -> None:
        super().__init__()
        self.convs = nn.ModuleList(weight_norm(c) for c in convs)
        self.head = weight_norm(head)

    def forward(self, h: Tensor) -> DiscriminatorOutput:
        features = []
        for conv in self.convs:
            h = F.leaky_relu(conv(h), SLOPE)
            features.append(h)
        return DiscriminatorOutput([self.head(h)], features)


# --- audio ------------------------------------------------------------------------------------
class SpectrogramDiscriminator(nn.Module):
    """One resolution of ``mrstft``: log-magnitude STFT ``[B, C, t, F]`` -> 2D convolutions.

    Args:
        channels: C, audio channels of the input.
        width: convolution channels.
        n_fft: FFT size (hop n_fft / 4, Hann window).
    """

    def __init__(self, channels: int, width: int, n_fft: int) -> None:
        super().__init__()
        self.n_fft = n_fft
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        convs = [nn.Conv2d(channels, width, (3, 9), padding=(1, 4))]
        convs += [nn.Conv2d(width, width, (3, 9), stride=(1, 2), dilation=(d, 1), padding=(d, 4))
                  for d in (1, 2, 4)]  # fmt: skip
        convs.append(nn.Conv2d(width, width, (3, 3), padding=(1, 1)))
        self.stack = _ConvStack(convs, nn.Conv2d(width, 1, (3, 3), padding=(1, 1)))

    def forward(self, x: Tensor) -> DiscriminatorOutput:
        b = x.shape[0]
        spec = torch.stft(x.reshape(-1, x.shape[-1]).float(), self.n_fft, self.n_fft // 4,
                          window=self.window, return_complex=True)  # [B * C, F, t]  # fmt: skip
        mag = spec.abs().clamp_min(1e-5).log()
        return self.stack(rearrange(mag, "(b c) f t -> b c t f", b=b))  # [B, C, t, F]


class PeriodDiscriminator(nn.Module):
    """One period of ``mpd``: ``[B, C, T]`` folded to ``[B, C, T / P, P]`` -> 2D convolutions.

    Args:
        channels: C, audio channels of the input.
        width: channels of the first convolution (then 2x, 4x, 8x).
        period: P, samples per row of the fold.
    """

    def __init__(self, channels: int, width: int, period: int) -> None:
        super().__init__()
        self.period = period
        sizes = [channels, width, 2 * width, 4 * width, 8 * width]
        convs = [nn.Conv2d(a, b, (5, 1), stride=(3, 1), padding=(2, 0))
                 for a, b in zip(sizes, sizes[1:], strict=False)]  # fmt: skip
        convs.append(nn.Conv2d(sizes[-1], sizes[-1], (5, 1), padding=(2, 0)))
        self.stack = _ConvStack(convs, nn.Conv2d(sizes[-1], 1, (3, 1), padding=(1, 0)))

    def forward(self, x: Tensor) -> DiscriminatorOutput:
        pad = -x.shape[-1] % self.period
        x = F.pad(x, (0, pad), mode="reflect") if pad else x
        return self.stack(rearrange(x, "b c (t p) -> b c t p", p=self.period))


class _Ensemble(nn.Module):
    """Sub-discriminators applied to the same input; their outputs merged in order."""

    def __init__(self, subs: Sequence[nn.Module]) -> None:
        super().__init__()
        self.subs = nn.ModuleList(subs)

    def forward(self, x: Tensor) -> DiscriminatorOutput:
        return merge([sub(x) for sub in self.subs])


class MultiResolutionSTFTDiscriminator(_Ensemble):
    """``mrstft``: one ``SpectrogramDiscriminator`` per FFT size, audio ``[B, C, T]``."""

    def __init__(self, channels: int, width: int, sizes: Sequence[int] = STFT_SIZES) -> None:
        super().__init__([SpectrogramDiscriminator(channels, width, n) for n in sizes])


class MultiPeriodDiscriminator(_Ensemble):
    """``mpd``: one ``PeriodDiscriminator`` per period, audio ``[B, C, T]``."""

    def __init__(self, channels: int, width: int, periods: Sequence[int] = PERIODS) -> None:
        super().__init__([PeriodDiscriminator(channels, width, p) for p in periods])


# --- images / video ---------------------------------------------------------------------------
class PatchDiscriminator(nn.Module):
    """``patch``: ``[B, C, H, W]`` (or ``[B, C, T, H, W]``, per frame) -> logits
    ``[B', 1, H / 2^layers, W / 2^layers]`` (B' = B, or B * T for video).

    Args:
        channels: C of the input (3 for RGB).
        width: channels of the first convolution (doubling per layer, at most 8x).
        layers: stride-2 convolutions (each halves H and W).
    """

    def __init__(self, channels: int = 3, width: int = 64, layers: int = 3) -> None:
        super().__init__()
        sizes = [channels] + [width * min(2**i, 8) for i in range(layers + 1)]
        convs = [nn.Conv2d(a, b, 4, stride=2, padding=1)
                 for a, b in zip(sizes[:layers], sizes[1 : layers + 1], strict=True)]  # fmt: skip
        convs.append(nn.Conv2d(sizes[layers], sizes[-1], 3, padding=1))
        self.stack = _ConvStack(convs, nn.Conv2d(sizes[-1], 1, 3, padding=1))

    def forward(self, x: Tensor) -> DiscriminatorOutput:
        if x.dim() == 5:
            x = rearrange(x, "b c t h w -> (b t) c h w")
        return self.stack(x)


# --- registry ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class DiscriminatorEntry:
    """make(tokenizer, width) -> discriminator for that tokenizer's inputs."""

    make: Callable[[Tokenizer, int], nn.Module]
    modalities: tuple[str, ...]


DISCRIMINATORS: dict[str, DiscriminatorEntry] = {
    "mrstft": DiscriminatorEntry(lambda tok, w: MultiResolutionSTFTDiscriminator(tok.channels, w),
                                 ("audio",)),
    "mpd": DiscriminatorEntry(lambda tok, w: MultiPeriodDiscriminator(tok.channels, w),
                              ("audio",)),
    "patch": DiscriminatorEntry(lambda tok, w: PatchDiscriminator(3, w), ("image", "video")),
}  # fmt: skip


def available_discriminators(modality: str) -> list[str]:
    """Names a recipe of ``modality`` may list under ``adversarial.discriminators``."""
    return sorted(n for n, e in DISCRIMINATORS.items() if modality in e.modalities)


class Discriminators(nn.Module):
    """The recipe's discriminators side by side; their outputs merged in the listed order.

    Args:
        names: keys of ``DISCRIMINATORS``.
        tokenizer: the tokenizer being trained (its channel count).
        width: base width passed to each entry.
    """

    def __init__(self, names: Sequence[str], tokenizer: Tokenizer, width: int) -> None:
        super().__init__()
        self.nets = nn.ModuleDict({n: DISCRIMINATORS[n].make(tokenizer, width) for n in names})

    def forward(self, x: Tensor) -> DiscriminatorOutput:
        return merge([net(x) for net in self.nets.values()])
