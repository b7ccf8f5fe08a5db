"""Reconstruction quality metrics: the one place the trainer, the held-out reports, the demo,
the benchmarks and the tests take them from.

Legend: B batch, C channels, T samples, H, W pixels.
Inputs are two float tensors of one shape, the reference first; pixels and waveforms in
[-1, 1]. Results are host floats (means over every leading axis), computed in float64.

- ``psnr``: peak signal-to-noise ratio, dB, peak-to-peak 2 (inf for identical inputs).
- ``ssim``: structural similarity (Wang et al. 2004), Gaussian 11 x 11 window, per 2D plane.
- ``si_snr``: scale-invariant SNR, dB (blind to gain and polarity).
- ``snr``: plain SNR, dB (sees gain and polarity).
- ``mel_distance``: multi-resolution log-mel L1 (lower is better); ``log_mel_l1`` is its
  one-resolution core, which the training mel loss reuses (one filterbank, one definition).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmtok.errors import InputError

MEL_FFT_SIZES = (512, 1024, 2048)  # resolutions of mel_distance
MEL_BANDS = (40, 80, 160)  # mel bands per FFT size in mel_distance
MEL_FLOOR = 1e-5  # magnitudes are floored here before the log


def _pair(x: Tensor, y: Tensor, name: str) -> tuple[Tensor, Tensor]:
    """Both as float64 (detached); InputError unless the shapes agree."""
    if not isinstance(x, Tensor) or not isinstance(y, Tensor) or x.shape != y.shape:
        got = [list(t.shape) if isinstance(t, Tensor) else type(t).__name__ for t in (x, y)]
        raise InputError(f"{name}: expected two tensors of one shape, got {got[0]} and {got[1]}")
    return x.detach().double(), y.detach().double()


def psnr(x: Tensor, y: Tensor) -> float:
    """PSNR in dB of ``y`` against ``x`` for signals in [-1, 1] (peak-to-peak 2):
    ``10 log10(4 / mse)``; ``inf`` when they are identical."""
    a, b = _pair(x, y, "psnr")
    mse = float(torch.mean((a - b) ** 2))
    return float("inf") if mse == 0 else 10 * math.log10(4.0 / mse)


def snr(x: Tensor, y: Tensor) -> float:
    """Plain SNR in dB of ``y`` against ``x``: ``10 log10(|x|^2 / |x - y|^2)``. Unlike SI-SNR it
    is not blind to a polarity inversion (SI-SNR's optimal scale may be negative)."""
    a, b = _pair(x, y, "snr")
    return float(10 * torch.log10(a.pow(2).sum() / (a - b).pow(2).sum().clamp_min(1e-20)))


def si_snr(reference: Tensor, estimate: Tensor, eps: float = 1e-8) -> float:
    """Scale-invariant SNR in dB over the last axis (``[..., T]``), averaged over the leading
    axes: ``10 log10(|s|^2 / |e|^2)``, s = projection of the zero-mean estimate on the
    zero-mean reference, e = estimate - s."""
    ref, est = _pair(reference, estimate, "si_snr")
    ref = ref - ref.mean(-1, keepdim=True)
    est = est - est.mean(-1, keepdim=True)
    scale = (est * ref).sum(-1, keepdim=True) / (ref.pow(2).sum(-1, keepdim=True) + eps)
    target = scale * ref
    noise = est - target
    ratio = target.pow(2).sum(-1) / (noise.pow(2).sum(-1) + eps)
    return float((10 * torch.log10(ratio + eps)).mean())


def _gaussian(size: int, sigma: float) -> Tensor:
    t = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(t**2) / (2 * sigma**2))
    return g / g.sum()


def ssim_map(x: Tensor, y: Tensor, data_range: float = 2.0, win: int = 11,
             sigma: float = 1.5) -> Tensor:  # fmt: skip
    """SSIM map (Wang et al. 2004) of every 2D plane of ``x`` vs ``y`` (``[..., H, W]``):
    ``win`` x ``win`` Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03, population
    (co)variances, 'valid' windows only (``[N, H - win + 1, W - win + 1]``, float64)."""
    if x.shape != y.shape or x.dim() < 2:
        raise InputError(f"ssim: expected two [..., H, W] tensors of one shape, got "
                         f"{list(x.shape)} and {list(y.shape)}")  # fmt: skip
    if min(x.shape[-2:]) < win:
        raise InputError(f"ssim: planes of {list(x.shape[-2:])} are smaller than the window {win}")
    a = x.detach().double().reshape(-1, 1, *x.shape[-2:])
    b = y.detach().double().reshape(-1, 1, *y.shape[-2:])
    g = _gaussian(win, sigma).to(a.device)

    def blur(z: Tensor) -> Tensor:
        return F.conv2d(F.conv2d(z, g.view(1, 1, 1, -1)), g.view(1, 1, -1, 1))

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    den = (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    return (num / den)[:, 0]


def ssim(x: Tensor, y: Tensor, data_range: float = 2.0) -> float:
    """Mean SSIM over every frame and channel (``[3, T, H, W]`` or any ``[..., H, W]``), pixels
    in [-1, 1] by default (data range 2); matches skimage's ``structural_similarity(...,
    gaussian_weights=True, sigma=1.5, use_sample_covariance=False, channel_axis=...)``."""
    return float(ssim_map(x, y, data_range).mean())


@functools.lru_cache(maxsize=32)
def _mel(sample_rate: int, n_fft: int, n_mels: int, device: torch.device) -> nn.Module:
    import torchaudio  # loaded on first use: image and video users never pay for it

    return torchaudio.transforms.MelSpectrogram(
        sample_rate, n_fft=n_fft, hop_length=n_fft // 4, n_mels=n_mels, power=1.0
    ).to(device)


def log_mel_l1(x: Tensor, y: Tensor, sample_rate: int, n_fft: int, n_mels: int) -> Tensor:
    """Per-row mean ``|log mel(x) - log mel(y)|`` of ``[R, T]`` rows -> ``[R]`` (differentiable;
    ``MelSpectrogram`` magnitude, hop n_fft / 4, floored at ``MEL_FLOOR``). The training mel
    loss (``mmtok.audio.losses.mel_loss``) is its mean."""
    mel = _mel(sample_rate, n_fft, n_mels, x.device)
    diff = mel(x).clamp_min(MEL_FLOOR).log() - mel(y).clamp_min(MEL_FLOOR).log()  # [R, M, N]
    return diff.abs().mean(dim=(1, 2))


def mel_distance(
    x: Tensor,
    y: Tensor,
    sample_rate: int,
    fft_sizes: Sequence[int] = MEL_FFT_SIZES,
    n_mels: Sequence[int] = MEL_BANDS,
) -> float:
    """Multi-resolution log-mel L1 of ``y`` against ``x`` (``[B, C, T]`` or ``[B, T]`` at
    ``sample_rate`` Hz): ``log_mel_l1`` averaged over the resolutions, channels and batch;
    0 for identical inputs, lower is better."""
    a, b = _pair(x, y, "mel_distance")
    if a.ndim not in (2, 3):
        raise InputError(f"mel_distance: expected [B, C, T] or [B, T], got {list(a.shape)}")
    a, b = a.reshape(-1, a.shape[-1]).float(), b.reshape(-1, b.shape[-1]).float()  # [R, T]
    with torch.no_grad():
        pairs = list(zip(fft_sizes, n_mels, strict=True))
        d = sum(log_mel_l1(a, b, sample_rate, n, m).double().mean() for n, m in pairs)
    return float(d / len(pairs))
