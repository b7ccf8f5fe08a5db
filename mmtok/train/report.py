"""What a run shows (rank 0 only): a tqdm bar, TensorBoard scalars, PNG plots at the end.

Legend: K codebook size. TensorBoard tags are ``train/<name>`` (loss terms, perplexity,
used/dead codes, drift, lr, grad norm) and ``eval/<name>`` (held-out PSNR, usage).
Plots use matplotlib's Agg backend (no display needed).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from torch import Tensor
from tqdm import tqdm


def _pyplot():  # noqa: ANN202 (the pyplot module)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


class RunLog:
    """Progress bar + optional TensorBoard writer; every method is a no-op when disabled."""

    def __init__(self, out_dir: Path, total: int, initial: int, enabled: bool,
                 progress: bool, tensorboard: bool) -> None:  # fmt: skip
        self.enabled = enabled
        self.bar = tqdm(total=total, initial=initial, disable=not (enabled and progress),
                        dynamic_ncols=True, desc="train")  # fmt: skip
        self.writer = None
        if enabled and tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step drops events a crashed run wrote after the checkpoint we resume from
            self.writer = SummaryWriter(str(out_dir / "tensorboard"), purge_step=initial or None)

    def step(self, values: Mapping[str, float]) -> None:
        self.bar.update(1)
        if self.enabled:
            shown = {k: f"{values[k]:.4g}" for k in ("loss", "perplexity") if k in values}
            self.bar.set_postfix(shown, refresh=False)

    def scalars(self, prefix: str, step: int, values: Mapping[str, float]) -> None:
        if self.writer is not None:
            for name, value in values.items():
                self.writer.add_scalar(f"{prefix}/{name}", value, step)

    def write(self, text: str) -> None:
        if self.enabled:
            self.bar.write(text)

    def close(self) -> None:
        self.bar.close()
        if self.writer is not None:
            self.writer.close()


def plot_losses(history: Mapping[str, Sequence[float]], loss_names: Sequence[str],
                path: Path) -> None:  # fmt: skip
    """Total (weighted) loss and each unweighted term per step, plus a smoothed total."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name in ("loss", *loss_names):
        values = history.get(name, [])
        if values:
            ax.plot(range(1, len(values) + 1), values, lw=0.8, alpha=0.6, label=name)
    total = history.get("loss", [])
    if len(total) > 20:
        w = max(1, len(total) // 50)
        smooth = [sum(total[max(0, i - w) : i + 1]) / len(total[max(0, i - w) : i + 1])
                  for i in range(len(total))]  # fmt: skip
        ax.plot(range(1, len(total) + 1), smooth, color="black", lw=1.2, label=f"loss (mean {w})")
    if all(v > 0 for n in ("loss", *loss_names) for v in history.get(n, [])):
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_usage(histograms: Mapping[str, Tensor], path: Path) -> None:
    """Per-code hit counts on held-out data, one panel per codebook, codes sorted by count."""
    plt = _pyplot()
    n = max(1, len(histograms))
    fig, axes = plt.subplots(n, 1, figsize=(8, 2.8 * n), squeeze=False)
    for ax, (name, counts) in zip(axes[:, 0], histograms.items(), strict=False):
        sorted_counts = counts.float().sort(descending=True).values.cpu().numpy()
        used = int((counts > 0).sum())
        ax.bar(range(len(sorted_counts)), sorted_counts, width=1.0)
        ax.set_title(f"{name}: {used}/{len(sorted_counts)} codes used on held-out data", fontsize=9)
        ax.set_xlabel("code (sorted by count)")
        ax.set_ylabel("count")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
