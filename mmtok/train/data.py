"""Training data plumbing shared by every modality: file lists and a resumable batch plan.

A data source is a ``manifest.jsonl`` (one JSON object per line with ``path`` (relative to the
manifest's folder, or absolute) and ``split``) or a folder of media files. In a folder, files
under ``<folder>/<split>/`` form that split when such subfolders exist; otherwise every 10th
file in name order (at least one) is the ``heldout`` split and the rest is ``train``.

Samples are addressed by keys ``(epoch, index)``: the dataset derives every random choice
(crop position, flip) from ``(seed, epoch, index)``, so a sample does not depend on worker
processes or on where a run was resumed. ``BatchPlan`` lists each epoch's batches of keys for
one rank (a seeded ``DistributedSampler`` permutation), so the data position of a checkpoint
is just ``(epoch, batch)``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from mmtok.errors import ConfigError

Key = tuple[int, int]  # (epoch, sample index)
HELDOUT_EVERY = 10


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


def _folder_files(path: Path, split: str, suffixes: Sequence[str]) -> list[Path]:
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


def list_files(source: str | Path, split: str, suffixes: Sequence[str]) -> list[Path]:
    """Files of ``split`` in a manifest.jsonl or folder ``source``; ConfigError when empty."""
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
    """Per-epoch batches of keys for one rank: ``DistributedSampler`` order, full batches only.

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
        return -(-self.size // self.world) // self.batch_size

    def epoch(self, epoch: int) -> list[list[Key]]:
        sampler = DistributedSampler(range(self.size), num_replicas=self.world, rank=self.rank,
                                     shuffle=True, seed=self.seed)  # fmt: skip
        sampler.set_epoch(epoch)
        order = list(sampler)
        b = self.batch_size
        return [[(epoch, i) for i in order[s : s + b]]
                for s in range(0, self.batches_per_epoch() * b, b)]  # fmt: skip


def iterate_batches(dataset: Dataset, plan: BatchPlan, epoch: int, batch: int,
                    workers: int) -> Iterator[tuple[int, int, torch.Tensor]]:  # fmt: skip
    """Endless ``(epoch, batch index, samples)`` starting at batch ``batch`` of ``epoch``."""
    while True:
        keys = plan.epoch(epoch)[batch:]
        loader = DataLoader(dataset, batch_sampler=keys, num_workers=workers)
        for i, samples in enumerate(loader, start=batch):
            yield epoch, i, samples
        epoch, batch = epoch + 1, 0
