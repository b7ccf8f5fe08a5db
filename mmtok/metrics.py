"""Reconstruction quality metrics shared by the trainer, the demo and the recipes.

Inputs are float tensors in [-1, 1] of equal shape; results are host floats.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def psnr(x: Tensor, y: Tensor) -> float:
    """Peak signal-to-noise ratio in dB for signals in [-1, 1] (peak-to-peak 2)."""
    mse = torch.mean((x.float() - y.float()) ** 2).item()
    return float("inf") if mse == 0 else 10 * math.log10(4.0 / mse)


def si_snr(reference: Tensor, estimate: Tensor, eps: float = 1e-8) -> float:
    """Scale-invariant SNR in dB over the last axis, averaged over the leading axes."""
    ref = reference.float() - reference.float().mean(-1, keepdim=True)
    est = estimate.float() - estimate.float().mean(-1, keepdim=True)
    scale = (est * ref).sum(-1, keepdim=True) / (ref.pow(2).sum(-1, keepdim=True) + eps)
    target = scale * ref
    noise = est - target
    ratio = target.pow(2).sum(-1) / (noise.pow(2).sum(-1) + eps)
    return float((10 * torch.log10(ratio + eps)).mean())
