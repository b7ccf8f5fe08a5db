"""Dataset inputs: folders of media and/or JSONL manifests -> a sorted list of Items.

A manifest line is a JSON object, one of two shapes (relative media paths are resolved
against the manifest's folder; ``split`` and ``key`` are optional in both):

- a media item ``{"path": ..., "modality"?: ..., "text"?: ...}``: with text fields
  (``text_fields``, e.g. ``("text", "media")``: the line's ``text`` before the media), the
  item's segments are those fields' strings and the media in that order; a field a line lacks
  is left out. Without text fields the item is the media alone.
- an interleaved document ``{"segments": [{"text": ...}, {"image": "a.png"}, ...]}``: one
  sample, its segments in order (each a ``text`` string or a modality with a media path).

Keys default to the path relative to the input root (documents: the manifest name and line
number), with ``/`` and ``.`` replaced so WebDataset (which splits names at the first dot)
keeps them intact. Keys are unique and never contain ``..`` or a leading ``/``.
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
MEDIA = "media"  # the media item's place among text_fields
DEFAULT_TEXT_FIELDS = ("text", MEDIA)  # a caption before its media
DOCUMENT = "document"  # Item.modality of an interleaved document
SEGMENT_KINDS = ("text", "image", "audio", "video")


@dataclass(frozen=True)
class Item:
    """One sample. path: the media file (a document: ``manifest:line``); modality: the
    media's ("document" for an interleaved document). segments: (kind, value) pairs in sample
    order, kind "text" (value: the text) or a modality (value: a media path); empty for a
    sample that is its media alone. rel: ``path`` relative to its input root (the folder, or
    as the manifest line wrote it; a document: ``MANIFEST-NAME:line``)."""

    key: str
    path: str
    modality: str
    split: str = "train"
    segments: tuple[tuple[str, str], ...] = ()
    rel: str = ""

    def parts(self) -> tuple[tuple[str, str], ...]:
        """The sample's segments, a media-only item included."""
        return self.segments or ((self.modality, self.path),)

    def media(self) -> list[tuple[str, str]]:
        """(modality, path) of each media segment, in order."""
        return [(k, v) for k, v in self.parts() if k != "text"]


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
            items.append(Item(make_key(f"{root.name}/{rel}"), str(p), detect_modality(p),
                              rel=rel))  # fmt: skip
    return items


def _resolve(manifest: Path, media: str) -> str:
    return str(Path(media) if os.path.isabs(media) else manifest.parent / media)


def _document(row: dict, where: str) -> list[tuple[str, str]]:
    segs = row["segments"]
    if not isinstance(segs, list) or not segs:
        raise InputError(f"{where}: 'segments' must be a non-empty list")
    out = []
    for i, seg in enumerate(segs):
        if not (isinstance(seg, dict) and len(seg) == 1 and next(iter(seg)) in SEGMENT_KINDS
                and isinstance(next(iter(seg.values())), str)):  # fmt: skip
            kinds = "|".join(SEGMENT_KINDS)
            raise InputError(f"{where}: segment {i} must be {{\"{kinds}\": string}}, "
                             f"got {json.dumps(seg)[:200]}")  # fmt: skip
        out.append(next(iter(seg.items())))
    return out


def _text_around(row: dict, media: tuple[str, str], fields: tuple[str, ...], where: str,
                 seen: set[str]) -> tuple[tuple[str, str], ...]:  # fmt: skip
    out = []
    seen.add(MEDIA)
    for name in fields:
        if name == MEDIA:
            out.append(media)
        elif name in row:
            seen.add(name)
            if not isinstance(row[name], str):
                raise InputError(f"{where}: text field {name!r} must be a string, "
                                 f"got {type(row[name]).__name__}")  # fmt: skip
            out.append(("text", row[name]))
    return tuple(out) if len(out) > 1 else ()


def _from_manifest(path: Path, fields: tuple[str, ...] | None, seen: set[str]) -> list[Item]:
    items = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        where = f"manifest {str(path)}:{n}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(f"{where}: not JSON ({e.msg})") from None
        split = str(row.get("split", "train")) if isinstance(row, dict) else ""
        if isinstance(row, dict) and "segments" in row:
            segs = [(k, v if k == "text" else _resolve(path, v)) for k, v in _document(row, where)]
            key = check_key(str(row.get("key") or make_key(f"{path.stem}/line{n:06d}")), where)
            items.append(Item(key, f"{path}:{n}", DOCUMENT, split, tuple(segs), f"{path.name}:{n}"))
            continue
        if not isinstance(row, dict) or not isinstance(row.get("path"), str):
            raise InputError(f"{where}: expected an object with a 'path' string or a "
                             "'segments' list")  # fmt: skip
        media = _resolve(path, row["path"])
        key = check_key(str(row.get("key") or make_key(row["path"])), where)
        modality = row.get("modality") or detect_modality(media)
        segs = _text_around(row, (modality, media), fields, where, seen) if fields else ()
        items.append(Item(key, media, modality, split, segs, row["path"]))
    return items


def check_text_fields(fields: tuple[str, ...]) -> tuple[str, ...]:
    """``fields`` if it names the media exactly once and text fields by name."""
    if list(fields).count(MEDIA) != 1 or not all(fields):
        raise InputError(f"text fields {list(fields)}: expected field names and {MEDIA!r} "
                         "exactly once (the media's place), e.g. text,media")  # fmt: skip
    return fields


def collect(inputs: list[str | os.PathLike],
            text_fields: tuple[str, ...] | None = None) -> list[Item]:  # fmt: skip
    """Items from folders and ``.jsonl`` manifests, sorted by key; duplicate keys raise.

    text_fields: where a manifest's media items take text from (see the module docstring);
    None: media items are their media alone, as without a text tokenizer.
    """
    items: list[Item] = []
    fields, seen = check_text_fields(text_fields) if text_fields else None, set()
    for entry in inputs:
        p = Path(entry)
        if p.is_dir():
            items += _from_folder(p)
        elif p.is_file() and p.suffix == ".jsonl":
            items += _from_manifest(p, fields, seen)
        elif not p.exists():
            raise InputError(f"input {str(p)!r} does not exist")
        else:
            raise InputError(f"input {str(p)!r}: expected a folder or a .jsonl manifest")
    unused = [f for f in fields or () if MEDIA in seen and f not in seen]
    if unused and fields != DEFAULT_TEXT_FIELDS:  # named on purpose, most likely misspelt
        raise InputError(f"text field {unused[0]!r}: no manifest media line has it "
                         f"(text fields: {','.join(fields)})")  # fmt: skip
    paths: dict[str, str] = {}
    for it in items:
        if it.key in paths:
            raise InputError(f"duplicate key {it.key!r}: {paths[it.key]!r} and {it.path!r}")
        paths[it.key] = it.path
    return sorted(items, key=lambda it: it.key)
