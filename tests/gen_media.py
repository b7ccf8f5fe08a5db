"""Generated media shared by several test files."""

from __future__ import annotations

import torch


def smooth_image(size: int = 48) -> torch.Tensor:
    """A generated photo-like image ``[3, size, size]`` in [-1, 1]: gradients plus noise."""
    g = torch.Generator().manual_seed(0)
    ramp = torch.linspace(-1, 1, size)
    base = torch.stack([ramp[:, None] * ramp[None, :], ramp[None, :].expand(size, size),
                        ramp[:, None].expand(size, size)])  # fmt: skip
    return (0.7 * base + 0.3 * torch.rand(3, size, size, generator=g) - 0.15).clamp(-1, 1)
