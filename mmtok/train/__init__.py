"""Training: YAML recipes -> typed config -> Trainer (one process or torchrun DDP).

``python -m mmtok.train recipes/image_small.yaml key=value ...``; see docs/training.md.
"""

from mmtok.train.config import Config, DataConfig, ModelConfig, TrainConfig, load_config
from mmtok.train.losses import register_loss
from mmtok.train.modalities import MODALITIES, Modality, build_model
from mmtok.train.trainer import RunResult, Trainer, train

__all__ = [
    "MODALITIES",
    "Config",
    "DataConfig",
    "Modality",
    "ModelConfig",
    "RunResult",
    "TrainConfig",
    "Trainer",
    "build_model",
    "load_config",
    "register_loss",
    "train",
]
