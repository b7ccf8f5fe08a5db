"""mmtok.metrics: closed forms, identical inputs, and one definition for the whole package."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import pytest
import torch

from mmtok import metrics
from mmtok.errors import InputError
from mmtok.metrics import mel_distance, psnr, si_snr, snr

PACKAGE = Path(metrics.__file__).resolve().parent
METRICS = ("psnr", "ssim", "ssim_map", "si_snr", "snr", "mel_distance", "log_mel_l1")


def test_psnr_closed_form_and_identical_inputs():
    x = torch.rand(2, 3, 8, 8) * 2 - 1
    assert psnr(x, x) == math.inf
    # a constant error of 0.1: mse 0.01, peak-to-peak 2 -> 10 log10(4 / 0.01)
    assert psnr(x, x + 0.1) == pytest.approx(10 * math.log10(400), abs=1e-6)
    assert psnr(torch.zeros(4), torch.full((4,), 2.0)) == pytest.approx(0.0, abs=1e-12)  # mse 4


def test_the_trainer_uses_the_one_psnr():
    from mmtok.train import trainer

    x = torch.rand(3, 16, 16) * 2 - 1
    assert trainer.psnr(x, x) == math.inf  # was 126 dB from a clamped second copy
    assert trainer.psnr(x, x + 0.1) == psnr(x, x + 0.1)


def test_snr_and_si_snr_closed_forms():
    t = torch.arange(8000) / 8000
    s, c = torch.sin(2 * math.pi * 50 * t), torch.cos(2 * math.pi * 50 * t)  # orthogonal
    ref = s[None, None]
    # error 0.5 c orthogonal to s: |s|^2 / |0.5 c|^2 = 4 for both
    assert snr(ref, (s + 0.5 * c)[None, None]) == pytest.approx(10 * math.log10(4), abs=1e-6)
    assert si_snr(ref, (s + 0.5 * c)[None, None]) == pytest.approx(10 * math.log10(4), abs=1e-6)
    # gain: SI-SNR blind to it, SNR not (error 1 s: ratio 1)
    assert si_snr(ref, 2 * ref) > 60 and snr(ref, 2 * ref) == pytest.approx(0.0, abs=1e-9)


def test_mel_distance_zero_on_identity_mean_over_batch():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 1, 4096, generator=g) - 0.5
    y = x + 0.05 * torch.randn(x.shape, generator=g)
    assert mel_distance(x, x, 8000) == pytest.approx(0.0, abs=1e-9)
    per_clip = [mel_distance(x[i : i + 1], y[i : i + 1], 8000) for i in range(2)]
    assert mel_distance(x, y, 8000) == pytest.approx(sum(per_clip) / 2, rel=1e-6)
    assert mel_distance(x, y, 8000) > 0
    with pytest.raises(InputError, match="mel_distance"):
        mel_distance(x, y[..., :-1], 8000)


def _defined_functions(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}


def test_every_metric_is_defined_only_in_mmtok_metrics():
    """A second PSNR (or SSIM, SNR ...) somewhere else is how the two disagreed."""
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "metrics.py" and path.parent == PACKAGE:
            continue
        twins = _defined_functions(path) & set(METRICS)
        assert not twins, f"{path.relative_to(PACKAGE.parent)} defines {sorted(twins)}"
