"""Pieces shared by the modalities' held-out evaluations (``python -m mmtok.train.<modality>``).

Legend: Q codebooks (streams), N tokens, K codebook size.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor


def add_code_hits(hits: Tensor | None, ids: Tensor, codebook_size: int) -> Tensor:
    """``hits`` (``[Q, K]`` counts, or None) plus the counts of ``ids`` ``[Q, N]``."""
    counts = torch.stack([torch.bincount(i, minlength=codebook_size) for i in ids])
    return counts if hits is None else hits + counts


def heldout_main(argv: Sequence[str] | None, modality: str, default_recipe: str,
                 evaluate: Callable[[Any, Any], Any]) -> int:  # fmt: skip
    """The held-out CLI of a modality: load a model, ``evaluate(tok, recipe data config)``,
    print ``report.text()``, optionally write the report as JSON."""
    import argparse

    from mmtok.checkpoint import load_pretrained
    from mmtok.train.config import load_config

    p = argparse.ArgumentParser(
        prog=f"python -m mmtok.train.{modality}",
        description=f"Held-out metrics of a trained {modality} tokenizer.",
    )
    p.add_argument("model", help="preset name or save_pretrained folder")
    p.add_argument("--recipe", default=default_recipe,
                   help="recipe whose data section names the held-out files")  # fmt: skip
    p.add_argument("--json", metavar="FILE", help="also write the report as JSON")
    args = p.parse_args(argv)
    report = evaluate(load_pretrained(args.model), load_config(args.recipe).data)
    print(report.text())
    if args.json:
        Path(args.json).write_text(json.dumps(report.__dict__, indent=2))
    return 0
