"""Dataset inputs: folders of media and/or JSONL manifests -> a sorted list of Items.

A manifest line is a JSON object ``{"path": ..., "modality"?: ..., "split"?: ..., "key"?:
...}``; relative paths are resolved against the manifest's folder. Keys default to the path
relative to the input root, with ``/`` and ``.`` replaced so WebDataset (which splits names at
the first dot) keeps them intact. Keys are unique and never contain ``..`` or a leading ``/``.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from mmtok.errors import InputError
from mmtok.media import SUFFIXES, detect_modality

_KEY_OK = re.compile(r"^[A-Za-z0-9_\-+=,@]+$")


@dataclass(frozen=True)
class Item:
    key: str
    path: str
    modality: str
    split: str = "train"


def make_key(rel: str) -> str:
    """Key from a relative path: separators and dots become ``__`` / ``_``."""
    stem = rel.replace("\\", "/").strip("/")
    return re.sub(r"[^A-Za-z0-9_\-+=,@]", "_", stem.replace("/", "__"))


def check_key(key: str, where: str) -> str:
    if ".." in key or key.startswith("/") or not _KEY_OK.match(key):
        raise InputError(f"{where}: key {key!r} is not safe (allowed: letters, digits, _-+=,@; "
                         "no '..', '/' or '.')")  # fmt: skip
    return key


def _from_folder(root: Path) -> list[Item]:
    known = {s for group in SUFFIXES.values() for s in group}
    items = []
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.suffix.lower() in known and not p.name.startswith("."):
            rel = p.relative_to(root).as_posix()
            items.append(Item(make_key(f"{root.name}/{rel}"), str(p), detect_modality(p)))
    return items


def _from_manifest(path: Path) -> list[Item]:
    items = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(f"manifest {str(path)}:{n}: not JSON ({e.msg})") from None
        if not isinstance(row, dict) or not isinstance(row.get("path"), str):
            raise InputError(f"manifest {str(path)}:{n}: expected an object with a 'path' string")
        media = Path(row["path"]) if os.path.isabs(row["path"]) else path.parent / row["path"]
        key = check_key(str(row.get("key") or make_key(row["path"])), f"manifest {path}:{n}")
        modality = row.get("modality") or detect_modality(media)
        items.append(Item(key, str(media), modality, str(row.get("split", "train"))))
    return items


def collect(inputs: list[str | os.PathLike]) -> list[Item]:
    """Items from folders and ``.jsonl`` manifests, sorted by key; duplicate keys raise."""
    items: list[Item] = []
    for entry in inputs:
        p = Path(entry)
        if p.is_dir():
            items += _from_folder(p)
        elif p.is_file() and p.suffix == ".jsonl":
            items += _from_manifest(p)
        elif not p.exists():
            raise InputError(f"input {str(p)!r} does not exist")
        else:
            raise InputError(f"input {str(p)!r}: expected a folder or a .jsonl manifest")
    seen: dict[str, str] = {}
    for it in items:
        if it.key in seen:
            raise InputError(f"duplicate key {it.key!r}: {seen[it.key]!r} and {it.path!r}")
        seen[it.key] = it.path
    return sorted(items, key=lambda it: it.key)
