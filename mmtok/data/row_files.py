"""``mmtok decode-row``: one shard row back to files, its text and each media segment decoded.

For row ``KEY`` in ``OUT_DIR``: ``KEY.txt`` holds the text segments in order, with a line
``[MODALITY: FILE]`` where each media segment was; media segment ``n`` (counted over all
segments from 0) is ``KEY.n.png`` / ``.wav`` / ``.mp4``, and ``KEY.n.lL.EXT`` per level when
the tokenizer has several (Jukebox-style audio levels, each a complete tokenizer). Audio is
written at the file's own sample rate (the row's ``source_sample_rate``). Each level is
decoded with the tokenizer ``vocab.json`` names for it, checked against the fingerprint the
vocabulary records. Every destination is checked before anything is written; an existing file
is refused unless ``overwrite``.
"""

from __future__ import annotations

import os
from pathlib import Path

from mmtok.data.decode import MediaSegment, TextSegment, decode_row
from mmtok.data.shards import read_rows
from mmtok.data.text import TextTokenizer
from mmtok.data.vocab import Vocabulary
from mmtok.errors import InputError
from mmtok.fileutil import atomic_path, check_output, make_dir, require_file
from mmtok.media import OUTPUT_SUFFIX


def read_row(shard: str | os.PathLike, index: int) -> dict:
    """Row ``index`` of a shard of any format; InputError naming the shard when out of range."""
    path = require_file(shard, "shard")
    rows = read_rows(path)
    if not 0 <= index < len(rows):
        raise InputError(f"shard {str(path)!r} has {len(rows)} rows; --index {index} is not "
                         f"one of 0..{len(rows) - 1}")  # fmt: skip
    return rows[index]


def _level_tokenizers(name: str, fingerprints: list[str], cache: dict) -> list:
    """The tokenizer levels ``name`` loads, checked against the vocabulary's fingerprints."""
    from mmtok.data.encoders import load_levels

    if name not in cache:
        cache[name] = load_levels(name)
    levels = cache[name]
    got = [t.fingerprint() for t in levels]
    if got[: len(fingerprints)] != fingerprints:
        raise InputError(f"tokenizer {name!r} (named in vocab.json) has other weights than the "
                         f"dataset's: fingerprints {got}, expected {fingerprints}")  # fmt: skip
    return levels


def _plan(row: dict, segments: list, out: Path) -> tuple[list[str], list[tuple]]:
    """The text file's lines and (destination, segment index, level) of each media file."""
    key, lines, media = str(row["key"]), [], []
    for n, seg in enumerate(segments):
        if isinstance(seg, TextSegment):
            if seg.text is None:
                raise InputError(f"row {key!r}: the dataset's text tokenizer is not there to "
                                 "decode its text; pass --text-tokenizer DIR")  # fmt: skip
            lines.append(seg.text)
            continue
        ext = OUTPUT_SUFFIX[seg.modality]
        many = len(seg.levels) > 1
        names = [f"{key}.{n}.l{i}{ext}" if many else f"{key}.{n}{ext}"
                 for i in range(len(seg.levels))]  # fmt: skip
        media += [(out / name, n, i) for i, name in enumerate(names)]
        lines.append(f"[{seg.modality}: {', '.join(names)}]")
    return lines, media


def write_row(shard: str | os.PathLike, index: int, out_dir: str | os.PathLike,
              vocab: str | os.PathLike | None = None, text_tokenizer: str | None = None,
              overwrite: bool = False) -> list[Path]:  # fmt: skip
    """Decode row ``index`` of ``shard`` into ``out_dir`` (see the module docstring); returns
    the files written. vocab: the dataset's vocab.json (default: beside the shard)."""
    from mmtok.media import write_media

    row = read_row(shard, index)
    vocab_path = Path(vocab) if vocab else Path(shard).parent / "vocab.json"
    voc = Vocabulary.load(vocab_path)
    text = TextTokenizer(text_tokenizer) if text_tokenizer else None
    segments = decode_row(row, voc, text)
    out = Path(out_dir)
    lines, media = _plan(row, segments, out)
    txt = out / f"{row['key']}.txt"
    for dest in [txt] + [m[0] for m in media]:
        check_output(dest, [str(shard)], overwrite)
    make_dir(out)
    rates = list(row.get("source_sample_rate") or [])
    media_index = {n: j for j, n in enumerate(n for n, s in enumerate(segments)
                                              if isinstance(s, MediaSegment))}  # fmt: skip
    cache: dict = {}
    with atomic_path(txt) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    for dest, n, level in media:
        seg = segments[n]
        tokens = seg.levels[level]
        fingerprints = [t.tokenizer_id for t in seg.levels]
        tok = _level_tokenizers(tokens.tokenizer_name, fingerprints, cache)[level]
        j = media_index[n]
        rate = rates[j] if j < len(rates) and seg.modality == "audio" else None
        write_media(dest, tok.decode(tokens), tok, rate or None)
    return [txt] + [m[0] for m in media]
