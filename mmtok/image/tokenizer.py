"""ImageTokenizer: ``[B, 3, H, W]`` in [-1, 1] <-> ids ``[B, Q, h, w]``, h = ceil(H / f).

Assembled from an ImageEncoder, any Quantizer (VQ, residual VQ, FSQ) and an ImageDecoder;
``image_tokenizer`` is the factory the presets and recipes use.
"""

from __future__ import annotations

from mmtok.errors import ConfigError
from mmtok.image.model import ImageDecoder, ImageEncoder
from mmtok.quantization import Quantizer
from mmtok.quantization.factory import QuantizerOptions, build_quantizer
from mmtok.tokenizer import Tokenizer


class ImageTokenizer(Tokenizer):
    """Image tokenizer (VQ-VAE shape: encoder = tokenizer, codebook = vocabulary)."""

    modality = "image"
    channels = 3

    def __init__(self, encoder: ImageEncoder, quantizer: Quantizer, decoder: ImageDecoder) -> None:
        super().__init__(encoder, quantizer, decoder)
        if encoder.config["latent_dim"] != quantizer.dim:
            raise ConfigError(f"encoder latent_dim {encoder.config['latent_dim']} != "
                              f"quantizer dim {quantizer.dim}")  # fmt: skip
        self.downsample = (encoder.downsample, encoder.downsample)


def image_tokenizer(
    downsample: int = 8,
    hidden: int = 64,
    latent_dim: int = 64,
    res_blocks: int = 1,
    quantizer: str = "vq",
    codebook_size: int = 512,
    num_quantizers: int = 1,
    codebook_dim: int | None = None,
    dead_code_threshold: float | None = None,
    quantizer_dropout: float = 0.0,
    quantizer_options: QuantizerOptions | None = None,
) -> ImageTokenizer:
    """Factory: a 2D conv tokenizer with ``log2(downsample)`` stages (channels x1, x2, x2...).

    The quantizer arguments (the same in every factory) go to ``build_quantizer``:
    dead_code_threshold: absolute restart threshold of vq / rvq (None: the relative default);
    quantizer_dropout: rvq stage dropout; quantizer_options: cosine / ema / decay / beta /
    dead_code_ratio / fsq levels (``QuantizerOptions``)."""
    n = max(1, downsample.bit_length() - 1)
    mult = tuple(min(2**i, 2) for i in range(n))
    kw = dict(latent_dim=latent_dim, hidden=hidden, channel_mult=mult, downsample=downsample,
              res_blocks=res_blocks)  # fmt: skip
    q = build_quantizer(quantizer, latent_dim, codebook_size, num_quantizers,
                        quantizer_dropout=quantizer_dropout, codebook_dim=codebook_dim,
                        dead_code_threshold=dead_code_threshold,
                        options=quantizer_options)  # fmt: skip
    return ImageTokenizer(ImageEncoder(**kw), q, ImageDecoder(**kw))
