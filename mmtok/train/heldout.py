"""The held-out CLIs of the modalities: ``python -m mmtok.train.audio PRESET_OR_DIR`` and
``python -m mmtok.train.video ...`` end up here.

This module loads recipes (``mmtok.train.config``) and imports the modality modules for their
``evaluate_heldout``; the modality modules do not import it (only their ``__main__`` blocks
do), so the training imports stay one-way: config -> modalities -> <modality> -> data.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mmtok.checkpoint import load_pretrained
from mmtok.train import audio, video
from mmtok.train.config import load_config

# modality -> (evaluate(tokenizer, data config) -> report with .text(), default recipe)
HELDOUT: dict[str, tuple[Callable[[Any, Any], Any], str]] = {
    "audio": (audio.evaluate_heldout, "recipes/audio_hop32.yaml"),
    "video": (video.evaluate_heldout, "recipes/video_small.yaml"),
}


def main(modality: str, argv: Sequence[str] | None = None) -> int:
    """The held-out CLI of ``modality``: load a model, evaluate it on the held-out files of a
    recipe's data section, print ``report.text()``, optionally write the report as JSON."""
    evaluate, default_recipe = HELDOUT[modality]
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
