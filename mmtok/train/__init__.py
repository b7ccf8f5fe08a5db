"""Training: YAML recipes -> typed config -> Trainer (one process or torchrun DDP).

``python -m mmtok.train recipes/image_small.yaml key=value ...``; see docs/training.md.

The names below are imported on first use (PEP 562), so ``python -m mmtok.train.audio`` (the
held-out report) does not import its own module through the package first.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Config": "config",
    "DataConfig": "data",
    "ModelConfig": "config",
    "TrainConfig": "config",
    "load_config": "config",
    "register_loss": "losses",
    "register_tokenizer_loss": "losses",
    "MODALITIES": "modalities",
    "Modality": "modalities",
    "build_model": "modalities",
    "RunResult": "trainer",
    "Trainer": "trainer",
    "train": "trainer",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
