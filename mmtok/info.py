"""Human-readable summaries: a tokenizer (grid, codebook, bits, token rate, parameters) and the
list of bundled presets (``mmtok info`` with no name)."""

from __future__ import annotations

import math

from torch import nn

REFERENCE = {"image": (3, 256, 256), "video": (3, 16, 64, 64)}


def _params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def describe(tok: nn.Module) -> str:
    """Multi-line description used by ``mmtok info``."""
    k, q = tok.codebook_size, tok.num_codebooks
    bits = math.log2(k) * q if k > 0 else 0.0
    lines = [
        f"name:           {tok.name or '(in memory)'}",
        f"class:          {type(tok).__name__} ({tok.modality})",
        f"quantizer:      {type(tok.quantizer).__name__}, K={k}, Q={q} ({bits:g} bits/position)",
        f"downsample:     {' x '.join(str(d) for d in tok.downsample)}",
        f"parameters:     {_params(tok):,} (encoder {_params(tok.encoder):,}, "
        f"decoder {_params(tok.decoder):,})",
        f"fingerprint:    {tok.fingerprint()}",
    ]
    if tok.modality in REFERENCE:
        shape = REFERENCE[tok.modality]
        grid = tok.token_grid(shape)
        n = math.prod(grid)
        raw = math.prod(shape) * 8
        lines.append(f"token grid:     {list(grid)} for input {list(shape[1:])} "
                     f"-> {n * q} tokens, {n * bits:,.0f} bits "
                     f"(compression {raw / (n * bits):,.0f}x vs 8-bit)")  # fmt: skip
    if hasattr(tok, "sample_rate") and tok.modality == "audio":
        rate = tok.sample_rate / tok.downsample[0]
        lines.append(f"sample rate:    {tok.sample_rate} Hz, token rate {rate:g} /s, "
                     f"bitrate {rate * bits / 1000:g} kbit/s per channel")  # fmt: skip
        if q > 1:  # residual VQ: every prefix of the codebooks is a usable bitrate
            per_q = ", ".join(f"{n}: {rate * n * math.log2(k) / 1000:.2f}" for n in range(1, q + 1))
            lines.append(f"bitrate by n_q:  {per_q} kbit/s (encode --n-q N)")
    return "\n".join(lines)


def preset_list() -> str:
    """One line per bundled preset: rate, held-out quality, when to pick it (``mmtok info``)."""
    from mmtok.presets import PRESETS, default_preset, list_presets

    present = set(list_presets())
    names = [n for n in PRESETS if n in present]  # the order they are declared in
    width = max((len(n) for n in names), default=0)
    lines = ["bundled presets (quality on held-out data; 'mmtok info NAME' for details):"]
    for name in names:
        p = PRESETS[name]
        mark = f" (default {p.modality})" if default_preset(p.modality) == name else ""
        lines.append(f"  {name:<{width}}  {p.modality}: {p.rate}; {p.quality}; {p.pick}{mark}")
    return "\n".join(lines)
