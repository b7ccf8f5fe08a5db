"""Audio training data: seeded random crops, held-out clips, waveform/spectrogram plots, losses.

Legend: C audio channels, T samples at the tokenizer's ``sample_rate``, s = ``data.crop``
(samples). Samples are float32 ``[C, s]`` in [-1, 1].

The sample rate and channel count are the tokenizer's (``model.sample_rate``,
``model.channels``): the trainer builds the model first and passes its ``AudioSpec``
(``AudioSpec.of(tokenizer)``) to ``train_set``, ``eval_set`` and ``plot_examples``; the ``mel``
and ``mel_ms`` losses are made for the tokenizer they train (``register_tokenizer_loss``).

Data keys used differently from images: ``crop`` is the crop length in samples (>= 2048, the
largest FFT of the spectral losses), ``flip`` inverts the polarity of half the crops,
``eval_size`` is the held-out excerpt length in samples (a centred excerpt; None: whole files),
``resize`` must stay unset.

Losses registered for audio recipes (``loss:`` section): ``stft`` (multi-resolution STFT
magnitude: spectral convergence + log-magnitude L1, FFT 512 / 1024 / 2048), ``mel`` (log-mel
L1, 1024-point FFT, 80 bands at the tokenizer's rate), ``linf`` (mean of the 2048 largest
absolute errors, Jukebox's small L-infinity term); with ``l1`` / ``l2`` / ``quantizer``.

``python -m mmtok.train.audio PRESET_OR_DIR [--recipe R]`` prints the held-out metrics of a
trained tokenizer (SI-SNR, plain SNR, multi-resolution mel distance, codebook usage, token rate,
bitrate); see recipes/README.md.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from mmtok.audio.io import ClippingWarning, load_audio
from mmtok.audio.losses import FFT_SIZES, linf_loss, mel_loss, stft_loss
from mmtok.audio.tokenizer import DEFAULT_SAMPLE_RATE, AudioTokenizer
from mmtok.errors import ConfigError
from mmtok.media import SUFFIXES as MEDIA_SUFFIXES
from mmtok.metrics import MEL_BANDS, MEL_FFT_SIZES, log_mel_l1, mel_distance, si_snr, snr
from mmtok.quantization.metrics import add_code_hits
from mmtok.train.data import DataConfig, Key, key_generator, list_files
from mmtok.train.losses import LossFn, register_loss, register_tokenizer_loss

SUFFIXES = MEDIA_SUFFIXES["audio"]  # the files prep and the CLI accept
MIN_CROP = max(FFT_SIZES)  # the spectral losses need crops longer than their largest FFT / 2


@dataclass(frozen=True)
class AudioSpec:
    """Sample rate (Hz) files are read at and the channel count (1: mono mix-down)."""

    sample_rate: int = DEFAULT_SAMPLE_RATE
    channels: int = 1

    @classmethod
    def of(cls, tok: AudioTokenizer) -> AudioSpec:
        return cls(tok.sample_rate, tok.channels)

    def load(self, path: Path) -> Tensor:
        """float32 ``[C, T]`` of ``path`` at this rate and channel count (full-scale samples
        clamped to [-1, 1] without a ClippingWarning: many drum samples touch full scale)."""
        channels = "mono" if self.channels == 1 else self.channels
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ClippingWarning)
            return load_audio(path, self.sample_rate, channels=channels).samples


# --- losses (weighted by the recipe's loss section) -----------------------------------------
@register_loss("stft", modalities=("audio",))
def _stft(x: Tensor, recon: Tensor) -> Tensor:
    """Multi-resolution STFT magnitude loss (``mmtok.audio.losses.stft_loss``)."""
    return stft_loss(x, recon)


@register_tokenizer_loss("mel", modalities=("audio",))
def _mel(tok: AudioTokenizer) -> LossFn:
    """Log-mel L1 at the tokenizer's sample rate (``mmtok.audio.losses.mel_loss``)."""
    rate = tok.sample_rate

    def mel(x: Tensor, recon: Tensor) -> Tensor:
        return mel_loss(x, recon, sample_rate=rate)

    return mel


@register_tokenizer_loss("mel_ms", modalities=("audio",))
def _mel_ms(tok: AudioTokenizer) -> LossFn:
    """The held-out metric as a loss: log-mel L1 at the resolutions of
    ``mmtok.metrics.mel_distance`` (FFT 512 / 1024 / 2048, 40 / 80 / 160 bands) and the
    tokenizer's sample rate, averaged."""
    rate, pairs = tok.sample_rate, list(zip(MEL_FFT_SIZES, MEL_BANDS, strict=True))

    def mel_ms(x: Tensor, recon: Tensor) -> Tensor:
        a, b = x.reshape(-1, x.shape[-1]), recon.reshape(-1, x.shape[-1])  # [B * C, T]
        return sum(log_mel_l1(a, b, rate, n, m).mean() for n, m in pairs) / len(pairs)

    return mel_ms


@register_loss("linf", modalities=("audio",))
def _linf(x: Tensor, recon: Tensor) -> Tensor:
    """Mean of the 2048 largest absolute errors per clip (``mmtok.audio.losses.linf_loss``)."""
    return linf_loss(x, recon)


# --- data -----------------------------------------------------------------------------------
def _check_data(cfg: DataConfig) -> None:
    if cfg.resize is not None:
        raise ConfigError(f"data.resize: audio crops are not resized, got {cfg.resize!r}; "
                          "leave it unset (null)")  # fmt: skip
    if cfg.crop < MIN_CROP:
        raise ConfigError(f"data.crop: audio crops are in samples and must be >= {MIN_CROP} "
                          f"(the largest FFT of the spectral losses), got {cfg.crop}")  # fmt: skip
    if cfg.eval_size is not None and cfg.eval_size < MIN_CROP:
        raise ConfigError(f"data.eval_size: held-out excerpts are in samples and must be >= "
                          f"{MIN_CROP} (or null for whole files), got {cfg.eval_size}")  # fmt: skip


class AudioCrops(Dataset):
    """Random ``crop``-sample crops keyed by (epoch, index).

    Each file is decoded once (at ``spec.sample_rate``, ``spec.channels``) and kept as float32.
    A file of T samples has ``max(1, T // crop)`` slots per repeat, so longer files give
    proportionally more crops per epoch. The crop start and the optional polarity inversion of
    key (epoch, i) come from a generator seeded by (seed, epoch, i); a file shorter than the
    crop lands at a random offset in silence.
    """

    def __init__(self, files: Sequence[Path], spec: AudioSpec, crop: int, flip: bool = True,
                 repeats: int = 1, seed: int = 0) -> None:  # fmt: skip
        self.clips = [spec.load(Path(f)) for f in files]
        self.slots = [c for c, x in enumerate(self.clips)
                      for _ in range(max(1, x.shape[1] // crop))]  # fmt: skip
        self.spec, self.crop, self.flip, self.repeats, self.seed = spec, crop, flip, repeats, seed

    def __len__(self) -> int:
        return len(self.slots) * self.repeats

    def __getitem__(self, key: Key) -> Tensor:
        epoch, index = key
        clip = self.clips[self.slots[index % len(self.slots)]]
        g = key_generator(self.seed, epoch, index)
        n = clip.shape[1]
        if n >= self.crop:
            start = int(torch.randint(n - self.crop + 1, (), generator=g))
            x = clip[:, start : start + self.crop]
        else:
            left = int(torch.randint(self.crop - n + 1, (), generator=g))
            x = F.pad(clip, (left, self.crop - n - left))
        if self.flip and bool(torch.rand((), generator=g) < 0.5):
            x = -x
        return x.contiguous()  # [C, s]


def train_set(cfg: DataConfig, seed: int, spec: AudioSpec) -> AudioCrops:
    """Training crops of ``cfg``'s files read at ``spec``'s rate and channel count."""
    _check_data(cfg)
    files = list_files(cfg.manifest, cfg.split, SUFFIXES)
    return AudioCrops(files, spec, cfg.crop, cfg.flip, cfg.repeats, seed)


def heldout_clip(path: Path, spec: AudioSpec, size: int | None) -> Tensor:
    """``[C, T]`` of ``path``: the whole file, or its centred ``size``-sample excerpt."""
    x = spec.load(path)
    if size is None or x.shape[1] <= size:
        return x
    start = (x.shape[1] - size) // 2
    return x[:, start : start + size].contiguous()


def _eval_files(cfg: DataConfig) -> list[Path]:
    _check_data(cfg)
    return list_files(cfg.manifest, cfg.eval_split, SUFFIXES)[: cfg.eval_max]


def eval_set(cfg: DataConfig, spec: AudioSpec) -> list[Tensor]:
    """Held-out clips ``[C, T]`` of the first ``eval_max`` held-out files, read at ``spec``."""
    return [heldout_clip(f, spec, cfg.eval_size) for f in _eval_files(cfg)]


def plot_examples(originals: Sequence[Tensor], recons: Sequence[Tensor], path: Path,
                  spec: AudioSpec) -> None:  # fmt: skip
    """PNG: per held-out clip ``[C, T]`` at ``spec.sample_rate`` (first channel) a row of three
    panels: both waveforms overlaid, the original's and the reconstruction's log-magnitude
    spectrograms."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rate, n = spec.sample_rate, len(originals)
    fig, axes = plt.subplots(n, 3, figsize=(13, 2.4 * n), squeeze=False)
    for j, (x, y) in enumerate(zip(originals, recons, strict=True)):
        a, b = x[0].float().cpu().numpy(), y[0].float().cpu().numpy()
        t = torch.arange(a.shape[0]).numpy() / rate
        ax = axes[j][0]
        ax.plot(t, a, lw=0.5, label="original")
        ax.plot(t, b, lw=0.5, alpha=0.7, label="reconstruction")
        ax.set_ylim(-1, 1)
        ax.set_ylabel(f"clip {j}", fontsize=8)
        if j == 0:
            ax.legend(fontsize=7, loc="upper right")
        nfft = min(512, 2 ** (max(a.shape[0], 16).bit_length() - 2))
        clim = None
        for ax, sig, title in ((axes[j][1], a, "original"), (axes[j][2], b, "reconstruction")):
            *_, im = ax.specgram(sig, NFFT=nfft, Fs=rate, noverlap=nfft * 3 // 4, cmap="magma")
            clim = clim or im.get_clim()  # both panels on the original's colour scale
            im.set_clim(*clim)
            ax.set_title(title, fontsize=8)
    for ax in axes[-1]:
        ax.set_xlabel("s")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# --- held-out evaluation --------------------------------------------------------------------
@dataclass
class HeldoutReport:
    """Held-out quality of an audio tokenizer: means over clips, usage over all of them."""

    clips: int
    seconds: float  # total held-out audio
    si_snr_db: float
    snr_db: float
    mel_distance: float
    used_codes: int
    total_codes: int
    usage: float
    token_rate: float  # token frames per second (Q streams per frame)
    tokens_per_second: float  # token_rate * Q
    bitrate: float  # bits per second: tokens_per_second * log2(K)
    per_clip: dict[str, dict[str, float]]

    def text(self) -> str:
        rows = [f"  {name}: SI-SNR {m['si_snr_db']:.2f} dB, SNR {m['snr_db']:.2f} dB, "
                f"mel distance {m['mel_distance']:.3f}"
                for name, m in self.per_clip.items()]  # fmt: skip
        return "\n".join([
            f"held-out clips: {self.clips} ({self.seconds:.1f} s)",
            f"SI-SNR {self.si_snr_db:.2f} dB, SNR {self.snr_db:.2f} dB, multi-resolution mel "
            f"distance {self.mel_distance:.3f}",
            f"codebook usage {self.usage:.1%} ({self.used_codes}/{self.total_codes})",
            f"token rate {self.token_rate:,.2f} frames/s, {self.tokens_per_second:,.2f} "
            f"tokens/s, bitrate {self.bitrate / 1000:,.2f} kbit/s",
            *rows,
        ])  # fmt: skip


@torch.no_grad()
def evaluate_heldout(tok: AudioTokenizer, cfg: DataConfig) -> HeldoutReport:
    """Encode + decode (the exact windowed paths) the held-out clips of ``cfg`` with ``tok``:
    SI-SNR, plain SNR and multi-resolution mel distance (``mmtok.metrics``) per clip,
    codebook usage over all clips."""
    spec, per_clip, hits, samples = AudioSpec.of(tok), {}, None, 0
    for f in _eval_files(cfg):
        x = heldout_clip(f, spec, cfg.eval_size)[None]  # [1, C, T]
        tokens = tok.encode(x)
        y = tok.decode(tokens)
        per_clip[f.name] = {
            "si_snr_db": si_snr(x, y),
            "snr_db": snr(x, y),
            "mel_distance": mel_distance(x, y, tok.sample_rate),
        }
        ids = tokens.ids[0]  # [Q, t]
        hits = add_code_hits(hits, ids, tok.codebook_size)
        samples += x.shape[-1]
    used, n = int((hits > 0).sum()), len(per_clip)
    tps = tok.token_rate * tok.num_codebooks
    return HeldoutReport(
        clips=n, seconds=samples / tok.sample_rate,
        si_snr_db=sum(m["si_snr_db"] for m in per_clip.values()) / n,
        snr_db=sum(m["snr_db"] for m in per_clip.values()) / n,
        mel_distance=sum(m["mel_distance"] for m in per_clip.values()) / n,
        used_codes=used, total_codes=hits.numel(), usage=used / hits.numel(),
        token_rate=tok.token_rate, tokens_per_second=tps, bitrate=tok.bitrate(),
        per_clip=per_clip,
    )  # fmt: skip


if __name__ == "__main__":  # the held-out CLI (mmtok.train.heldout loads the recipe)
    from mmtok.train.heldout import main

    raise SystemExit(main("audio"))
