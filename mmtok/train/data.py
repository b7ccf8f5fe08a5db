"""Training data plumbing shared by every modality: the recipe's data section (``DataConfig``),
file lists and a resumable batch plan.

A data source is a ``manifest.jsonl`` (one JSON object per line with ``path`` (relative to the
manifest's folder, or absolute) and ``split``) or a folder of media files. In a folder, files
under ``<folder>/<split>/`` form that split when such subfolders exist; otherwise every 10th
file in name order (at least one) is the ``heldout`` split and the rest is ``train``.

Samples are addressed by keys ``(epoch, index)``: the dataset derives every random choice
(crop position, flip) from ``(seed, epoch, index)``, so a sample does not depend on worker
processes or on where a run was resumed. ``BatchPlan`` lists each epoch's batches of keys for
one rank (the seeded ``DistributedSampler`` permutation, cut into global batches), so the data
position of a checkpoint is just ``(epoch, batch)``. Rank r takes the r-th contiguous slice of
every global batch: the ranks' batches concatenated in rank order are exactly the batch one
process would take, so R processes train on the same global batches, in the same order, as one
(and a run can be resumed with another number of processes without changing its data).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from mmtok.errors import ConfigError

Key = tuple[int, int]  # (epoch, sample index)
HELDOUT_EVERY = 10


@dataclass
class DataConfig:
    """Where training samples come from and how they are cut (pixels for images)."""

    manifest: str = "data/images/manifest.jsonl"  # manifest.jsonl, or a folder of files
    split: str = "train"  # manifest split used for training
    eval_split: str = "heldout"  # manifest split used for held-out metrics
    crop: int = 64  # random training crops of crop x crop
    resize: int | None = None  # short side resized to this before cropping (None: as stored)
    flip: bool = True  # random horizontal flips
    repeats: int = 1  # crops per file per epoch
    batch_size: int = 16  # global batch (split evenly over the processes)
    workers: int = 0  # DataLoader worker processes per rank
    eval_size: int | None = 256  # held-out files: short side to this + centre crop (None: as is)
    eval_max: int = 16  # at most this many held-out files


def key_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """A CPU generator owned by one sample of one epoch."""
    return torch.Generator().manual_seed(((seed * 1_000_003 + epoch) * 1_000_033 + index) % 2**63)


def _manifest_files(path: Path, split: str) -> list[Path]:
    files = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            rel, row_split = row["path"], row.get("split", "train")
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ConfigError(f"{path}:{n}: expected a JSON object with 'path' ({e})") from e
        if row_split == split:
            p = Path(rel)
            files.append(p if p.is_absolute() else path.parent / p)
    return files


def _folder_files(path: Path, split: str, suffixes: Collection[str]) -> list[Path]:
    def media(folder: Path) -> list[Path]:
        return sorted(p for p in folder.rglob("*") if p.suffix.lower() in suffixes and p.is_file())

    if (path / split).is_dir():
        return media(path / split)
    if (path / "train").is_dir():
        return []  # split folders are in use and this split has none
    files = media(path)
    held = set(files[HELDOUT_EVERY - 1 :: HELDOUT_EVERY] or files[-1:])
    if split == "heldout":
        return sorted(held)
    return [f for f in files if f not in held] if split == "train" else []


def list_files(source: str | Path, split: str, suffixes: Collection[str]) -> list[Path]:
    """Files of ``split`` in a manifest.jsonl or folder ``source`` (in a folder: files whose
    lower-case suffix is in ``suffixes``); ConfigError when empty."""
    path = Path(source)
    if path.is_dir():
        files = _folder_files(path, split, suffixes)
    elif path.is_file():
        files = _manifest_files(path, split)
    else:
        raise ConfigError(f"data.manifest: {str(path)!r} is neither a manifest file nor a folder")
    if not files:
        raise ConfigError(f"data.manifest: no files with split {split!r} in {str(path)!r}")
    return files


class BatchPlan:
    """Per-epoch batches of keys for one rank: its slice of each full global batch.

    Epoch e's order is the permutation ``DistributedSampler(shuffle=True, seed=seed)`` draws for
    epoch e (``randperm`` seeded with seed + e), independent of the number of processes; it is
    cut into global batches of ``batch_size * world`` keys (a short last batch is dropped) and
    rank r takes keys ``[r * batch_size, (r + 1) * batch_size)`` of each.

    Args:
        size: number of samples in the dataset.
        batch_size: samples per batch on this rank.
        world, rank: processes and this process's rank (1, 0 without torch.distributed).
        seed: shuffle seed (the permutation of epoch e is seeded with seed + e).
    """

    def __init__(self, size: int, batch_size: int, world: int, rank: int, seed: int) -> None:
        self.size, self.batch_size, self.world, self.rank, self.seed = (
            size, batch_size, world, rank, seed)  # fmt: skip
        if self.batches_per_epoch() == 0:
            raise ConfigError(f"data: {size} samples per epoch cannot fill one batch of "
                              f"{batch_size} x {world} processes; raise data.repeats")  # fmt: skip

    def batches_per_epoch(self) -> int:
        return self.size // (self.batch_size * self.world)

    def epoch(self, epoch: int) -> list[list[Key]]:
        g = torch.Generator().manual_seed(self.seed + epoch)  # as DistributedSampler.set_epoch
        order = torch.randperm(self.size, generator=g).tolist()
        b, global_b = self.batch_size, self.batch_size * self.world
        return [[(epoch, i) for i in order[s + self.rank * b : s + (self.rank + 1) * b]]
                for s in range(0, self.batches_per_epoch() * global_b, global_b)]  # fmt: skip


def iterate_batches(dataset: Dataset, plan: BatchPlan, epoch: int, batch: int,
                    workers: int) -> Iterator[tuple[int, int, torch.Tensor]]:  # fmt: skip
    """Endless ``(epoch, batch index, samples)`` starting at batch ``batch`` of ``epoch``."""
    while True:
        keys = plan.epoch(epoch)[batch:]
        loader = DataLoader(dataset, batch_sampler=keys, num_workers=workers)
        for i, samples in enumerate(loader, start=batch):
            yield epoch, i, samples
        epoch, batch = epoch + 1, 0
