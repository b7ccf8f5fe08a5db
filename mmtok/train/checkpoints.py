"""Training checkpoints for exact resume; written atomically, no pickle of arbitrary objects.

A checkpoint is a folder ``<out_dir>/checkpoints/step_<8 digits>/``::

    model/         save_pretrained: config.json + model.safetensors (weights + codebook buffers)
    optimizer.pt   torch.save(optimizer.state_dict()): tensors and plain containers only
    trainer.pt     step, data position (epoch, batch), per-step history, RNG states of every
                   rank (torch, numpy, python as tensors), world size
    recipe.yaml    the resolved recipe, for reading
    discriminators.safetensors, discriminator_optimizer.pt
                   only with an ``adversarial`` recipe section: the discriminators' weights
                   and their optimizer state (as ``optimizer.pt``)

It is written into a temporary folder ``.step_<8 digits>.<random>``, its files are flushed to
disk (fsync), and it is renamed into place, so a crash (even SIGKILL mid-write or a node
losing power) leaves either the whole checkpoint or none. ``list_checkpoints`` only lists
``step_*`` folders holding every file, so a leftover temporary folder or an incomplete copy is
never resumed from. ``.pt`` files are read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from mmtok.checkpoint import load_pretrained, save_pretrained
from mmtok.configurable import to_spec
from mmtok.errors import CheckpointError

MODEL_DIR, OPTIMIZER_NAME = "model", "optimizer.pt"
TRAINER_NAME, RECIPE_NAME = "trainer.pt", "recipe.yaml"
DISC_NAME, DISC_OPTIMIZER_NAME = "discriminators.safetensors", "discriminator_optimizer.pt"
_STEP_DIR = re.compile(r"^step_(\d{8})$")
REQUIRED = (f"{MODEL_DIR}/config.json", f"{MODEL_DIR}/model.safetensors", OPTIMIZER_NAME,
            TRAINER_NAME, RECIPE_NAME)  # fmt: skip


@dataclass
class TrainState:
    """Where a run is: steps done, next batch ``batch`` of ``epoch``, per-step history."""

    step: int = 0
    epoch: int = 0
    batch: int = 0
    history: dict[str, list[float]] = field(default_factory=dict)

    def record(self, values: dict[str, float]) -> None:
        for name, value in values.items():
            self.history.setdefault(name, []).append(float(value))


# --- RNG states as tensors -----------------------------------------------------------------
def rng_state() -> dict[str, Tensor]:
    """This process's torch / numpy / python (and CUDA, if used) RNG states as tensors."""
    _, keys, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    version, internal, gauss_next = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy_keys": torch.from_numpy(keys.astype(np.int64)),
        "numpy_pos": torch.tensor([pos, has_gauss], dtype=torch.int64),
        "numpy_gauss": torch.tensor([gauss], dtype=torch.float64),
        "python": torch.tensor([version, *internal], dtype=torch.int64),
        "python_gauss": torch.tensor([float("nan") if gauss_next is None else gauss_next],
                                     dtype=torch.float64),
    }  # fmt: skip
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Tensor]) -> None:
    """Inverse of ``rng_state``."""
    torch.set_rng_state(state["torch"])
    pos, has_gauss = state["numpy_pos"].tolist()
    keys = state["numpy_keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, pos, has_gauss, float(state["numpy_gauss"][0])))
    version, *internal = state["python"].tolist()
    gauss = float(state["python_gauss"][0])
    random.setstate((version, tuple(internal), None if gauss != gauss else gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


# --- save / load ---------------------------------------------------------------------------
def step_dir(root: Path, step: int) -> Path:
    return root / f"step_{step:08d}"


def is_complete(path: Path) -> bool:
    """True when the checkpoint folder ``path`` holds every file of a checkpoint."""
    return all((path / name).is_file() for name in REQUIRED)


def list_checkpoints(root: str | os.PathLike) -> list[Path]:
    """Complete checkpoint folders under ``root``, oldest first (temporary and incomplete
    folders are left out)."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if _STEP_DIR.match(p.name) and is_complete(p)]
    return sorted(found, key=lambda p: p.name)


def _fsync(path: Path) -> None:
    """Flush ``path`` (a file, or on POSIX a folder: its entries) to disk."""
    if path.is_dir() and os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(folder: Path) -> None:
    """Flush every file and folder under ``folder`` (and ``folder`` itself) to disk."""
    for path in [*sorted(folder.rglob("*"), reverse=True), folder]:
        _fsync(path)


@dataclass
class DiscriminatorState:
    """The discriminators being trained and their optimizer (saved and restored in place)."""

    module: nn.Module
    optimizer: torch.optim.Optimizer


def _save_discriminators(folder: Path, disc: DiscriminatorState) -> None:
    weights = {k: v.detach().cpu().contiguous() for k, v in disc.module.state_dict().items()}
    save_file(weights, str(folder / DISC_NAME))
    torch.save(disc.optimizer.state_dict(), folder / DISC_OPTIMIZER_NAME)


def _load_discriminators(folder: Path, disc: DiscriminatorState) -> bool:
    """Restore ``disc`` from ``folder``; False (nothing loaded) when it holds none."""
    if not (folder / DISC_NAME).is_file():
        return False
    try:
        disc.module.load_state_dict(load_file(str(folder / DISC_NAME)), strict=True)
        disc.optimizer.load_state_dict(_torch_load(folder / DISC_OPTIMIZER_NAME))
    except (RuntimeError, ValueError, KeyError) as e:
        raise CheckpointError(f"{str(folder)!r}: discriminator state does not fit the recipe's "
                              f"adversarial section ({e})") from e  # fmt: skip
    return True


def save_checkpoint(root: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                    state: TrainState, rng: RngStates, recipe: dict[str, Any],
                    keep: int,
                    discriminators: DiscriminatorState | None = None) -> Path:  # fmt: skip
    """Write ``root/step_<step>`` atomically and delete all but the newest ``keep``."""
    root.mkdir(parents=True, exist_ok=True)
    target = step_dir(root, state.step)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=root))
    try:
        save_pretrained(model, tmp / MODEL_DIR)
        torch.save(optimizer.state_dict(), tmp / OPTIMIZER_NAME)
        if discriminators is not None:
            _save_discriminators(tmp, discriminators)
        trainer = {"step": state.step, "epoch": state.epoch, "batch": state.batch,
                   "history": state.history, "rng": rng, "world_size": len(rng)}  # fmt: skip
        torch.save(trainer, tmp / TRAINER_NAME)
        (tmp / RECIPE_NAME).write_text(yaml.safe_dump(recipe, sort_keys=False))
        _fsync_tree(tmp)
        if target.exists():
            _remove(target)
        os.replace(tmp, target)
        _fsync(root)  # the rename itself
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for old in list_checkpoints(root)[:-keep]:
        _remove(old)
    for leftover in root.glob(".step_*"):  # temporary folders of a run that was killed
        shutil.rmtree(leftover, ignore_errors=True)
    return target


def _remove(path: Path) -> None:
    """Delete a checkpoint folder: renamed to a temporary name first, so that an
    interrupted delete never leaves a partial ``step_*`` folder behind."""
    trash = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    os.replace(path, trash / path.name)
    shutil.rmtree(trash, ignore_errors=True)


def _torch_load(path: Path) -> Any:
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path.parent)!r}: no {path.name}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # unpickling errors have no common base class
        raise CheckpointError(f"{str(path)!r}: cannot be read as weights-only data ({e})") from e


RngStates = list[dict[str, Tensor]]  # one rng_state() per rank


def load_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                    discriminators: DiscriminatorState | None = None,
                    ) -> tuple[TrainState, RngStates]:  # fmt: skip
    """Load weights, codebook buffers and optimizer state in place; (state, per-rank RNG).
    ``discriminators`` are restored too when the checkpoint holds them (a checkpoint of a
    reconstruction-only run leaves them as built: adversarial fine-tuning of it)."""
    saved = load_pretrained(path / MODEL_DIR)  # checks the weights' sha256 and the config
    if to_spec(saved) != to_spec(model):
        raise CheckpointError(f"checkpoint {str(path)!r} holds a different model than the "
                              f"recipe: {to_spec(saved)} != {to_spec(model)}")  # fmt: skip
    model.load_state_dict(saved.state_dict(), strict=True)
    try:
        optimizer.load_state_dict(_torch_load(path / OPTIMIZER_NAME))
    except (ValueError, KeyError) as e:
        raise CheckpointError(f"{str(path)!r}: optimizer state does not fit the model ({e})") from e
    if discriminators is not None and not _load_discriminators(path, discriminators):
        print(f"note: checkpoint {str(path)!r} holds no discriminators; they start fresh")
    t = _torch_load(path / TRAINER_NAME)
    history = {k: list(v) for k, v in t["history"].items()}
    state = TrainState(t["step"], t["epoch"], t["batch"], history)
    return state, t["rng"]
