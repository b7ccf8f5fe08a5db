"""Reconstruction losses and quality metrics of the audio tokenizer.

Legend: B batch, C channels, T samples; F frequency bins, M mel bands, N STFT frames.
Every function takes ``(x, recon)``: the reference and the reconstruction, both ``[B, C, T]``
(or ``[B, T]``) float, and returns a scalar loss (or ``[B]`` for the metrics).

Losses (Jukebox / Parallel WaveGAN / DAC): waveform L1 and L2; multi-resolution STFT
magnitude loss (spectral convergence + log-magnitude L1, Yamamoto et al. 2020) over several
FFT sizes; log-mel L1 through ``torchaudio.transforms.MelSpectrogram``; a small L-infinity term,
the mean of the k largest absolute errors (Jukebox ``linf_k``). ``AudioLoss`` weighs them.
Quality metrics (SI-SNR, SNR, multi-resolution mel distance) live in ``mmtok.metrics``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmtok.configurable import Configurable
from mmtok.errors import InputError
from mmtok.metrics import log_mel_l1

FFT_SIZES = (512, 1024, 2048)
EPS = 1e-5


def _flat(x: Tensor, recon: Tensor) -> tuple[Tensor, Tensor]:
    """Both ``[B, C, T]`` / ``[B, T]`` -> ``[B*C, T]`` fp32; InputError unless shapes agree."""
    if x.shape != recon.shape or x.ndim not in (2, 3):
        raise InputError(f"x, recon: expected equal [B, C, T] shapes, got "
                         f"{list(x.shape)} and {list(recon.shape)}")  # fmt: skip
    return x.reshape(-1, x.shape[-1]).float(), recon.reshape(-1, x.shape[-1]).float()


def _stft_mag(x: Tensor, n_fft: int) -> Tensor:
    """``[B, T]`` -> magnitudes ``[B, F, N]`` (Hann window, hop n_fft/4, centred)."""
    window = torch.hann_window(n_fft, device=x.device, dtype=x.dtype)
    spec = torch.stft(x, n_fft, n_fft // 4, window=window, return_complex=True)
    return spec.abs().clamp_min(EPS)


def stft_loss(x: Tensor, recon: Tensor, fft_sizes: Sequence[int] = FFT_SIZES) -> Tensor:
    """Multi-resolution STFT loss: mean over FFT sizes of spectral convergence
    ``|S_x - S_r|_F / |S_x|_F`` + ``mean |log S_x - log S_r|``."""
    x, recon = _flat(x, recon)
    total = x.new_zeros(())
    for n_fft in fft_sizes:
        s_x, s_r = _stft_mag(x, n_fft), _stft_mag(recon, n_fft)
        sc = torch.linalg.norm(s_x - s_r) / torch.linalg.norm(s_x)
        total = total + sc + F.l1_loss(s_r.log(), s_x.log())
    return total / len(fft_sizes)


def mel_loss(x: Tensor, recon: Tensor, sample_rate: int = 22050, n_fft: int = 1024,
             n_mels: int = 80) -> Tensor:  # fmt: skip
    """L1 between log-mel spectrograms (``MelSpectrogram``, hop n_fft/4, magnitude)."""
    x, recon = _flat(x, recon)
    return log_mel_l1(x, recon, sample_rate, n_fft, n_mels).mean()


def linf_loss(x: Tensor, recon: Tensor, k: int = 2048) -> Tensor:
    """Mean of the ``k`` largest absolute errors per row (an L-infinity proxy, Jukebox)."""
    x, recon = _flat(x, recon)
    err = (x - recon).abs()
    return err.topk(min(k, err.shape[-1]), dim=-1).values.mean()


@dataclass
class AudioLossOutput:
    """total: the weighted sum to backpropagate; terms: each unweighted term (detached)."""

    total: Tensor
    terms: dict[str, Tensor]


class AudioLoss(Configurable, nn.Module):
    """Weighted reconstruction loss; a weight of 0 skips its term.

    Args:
        sample_rate: Hz, for the mel filterbank.
        l1: weight of the waveform mean absolute error.
        l2: weight of the waveform mean squared error.
        stft: weight of the multi-resolution STFT loss.
        mel: weight of the log-mel L1 loss.
        linf: weight of the top-k absolute error term (kept small, Jukebox uses 0.02).
        fft_sizes: FFT sizes of the STFT loss.
    """

    def __init__(self, sample_rate: int = 22050, l1: float = 1.0, l2: float = 0.0,
                 stft: float = 1.0, mel: float = 1.0, linf: float = 0.02,
                 fft_sizes: Sequence[int] = FFT_SIZES) -> None:  # fmt: skip
        super().__init__()
        self.sample_rate, self.fft_sizes = sample_rate, tuple(fft_sizes)
        self.weights = {"l1": l1, "l2": l2, "stft": stft, "mel": mel, "linf": linf}

    def forward(self, x: Tensor, recon: Tensor) -> AudioLossOutput:
        """``x`` reference, ``recon`` reconstruction, both ``[B, C, T]``."""
        fns = {
            "l1": lambda: F.l1_loss(recon, x),
            "l2": lambda: F.mse_loss(recon, x),
            "stft": lambda: stft_loss(x, recon, self.fft_sizes),
            "mel": lambda: mel_loss(x, recon, self.sample_rate),
            "linf": lambda: linf_loss(x, recon),
        }
        terms = {name: fns[name]() for name, w in self.weights.items() if w}
        total = sum((self.weights[n] * v for n, v in terms.items()), x.new_zeros(()))
        return AudioLossOutput(total, {n: v.detach() for n, v in terms.items()})
