"""Shard writers (Parquet, WebDataset tar, Megatron indexed) and the row schema; readable
without mmtok.

A row: key, source, source_rel (the source relative to its input root), split, modality,
tokenizer, grid (list of ints per level, concatenated), input_size, duration_s (audio/video
seconds, null for images), source_sample_rate / source_channels (per media segment: an audio
file's own rate and channels, 0 otherwise), num_tokens, and ``tokens`` (the flattened ids with
offsets and markers, the vocabulary's smallest unsigned int type).
Each shard is written to a temporary file and renamed into place, so a shard that exists is
complete. Megatron shards (``mmtok.data.megatron``) are ``shard-NNNNN.bin`` + ``.idx`` with
the other fields in ``shard-NNNNN.rows.jsonl``; the ``.idx``, written last, marks them done.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mmtok.data.megatron import read_megatron, write_megatron
from mmtok.fileutil import atomic_path

FORMATS = {"parquet": ".parquet", "webdataset": ".tar", "megatron": ".idx"}
META_FIELDS = ("key", "source", "source_rel", "split", "modality", "tokenizer", "grid",
               "input_size", "duration_s", "source_sample_rate", "source_channels",
               "num_tokens")  # fmt: skip


def shard_path(out_dir: Path, index: int, fmt: str) -> Path:
    return out_dir / f"shard-{index:05d}{FORMATS[fmt]}"


def _schema(dtype: np.dtype) -> pa.Schema:
    return pa.schema([
        ("key", pa.string()), ("source", pa.string()), ("source_rel", pa.string()),
        ("split", pa.string()), ("modality", pa.string()), ("tokenizer", pa.string()),
        ("grid", pa.list_(pa.int32())), ("input_size", pa.list_(pa.int32())),
        ("duration_s", pa.float64()), ("source_sample_rate", pa.list_(pa.int32())),
        ("source_channels", pa.list_(pa.int32())), ("num_tokens", pa.int64()),
        ("tokens", pa.list_(pa.from_numpy_dtype(dtype))),
    ])  # fmt: skip


def write_parquet(path: Path, rows: list[dict], dtype: np.dtype) -> None:
    schema = _schema(dtype)
    columns = {name: [r[name] for r in rows] for name in schema.names}
    table = pa.Table.from_pydict(columns, schema=schema)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def write_webdataset(path: Path, rows: list[dict], dtype: np.dtype) -> None:
    """One sample per row: ``KEY.json`` (the metadata fields) + ``KEY.tokens.npy``."""
    with atomic_path(path) as tmp, tarfile.open(tmp, "w") as tar:
        for r in rows:
            meta = json.dumps({k: r[k] for k in META_FIELDS}).encode()
            buf = io.BytesIO()
            np.save(buf, np.asarray(r["tokens"], dtype=dtype))
            for name, data in ((f"{r['key']}.json", meta), (f"{r['key']}.tokens.npy",
                                                           buf.getvalue())):  # fmt: skip
                info = tarfile.TarInfo(name)
                info.size, info.mtime = len(data), 0
                tar.addfile(info, io.BytesIO(data))


def _write_megatron(path: Path, rows: list[dict], dtype: np.dtype) -> None:
    write_megatron(path, rows, dtype, META_FIELDS)


WRITERS = {"parquet": write_parquet, "webdataset": write_webdataset, "megatron": _write_megatron}


def read_rows(path: str | os.PathLike) -> list[dict]:
    """Rows of one shard of any format (tokens as numpy arrays); for tests and tools."""
    p = Path(path)
    if p.suffix == ".idx":
        return read_megatron(p)
    if p.suffix == ".parquet":
        table = pq.read_table(p)
        rows = table.to_pylist()
        for r in rows:
            r["tokens"] = np.asarray(r["tokens"])
        return rows
    rows: dict[str, dict] = {}
    with tarfile.open(p) as tar:
        for m in tar.getmembers():
            key, _, ext = m.name.partition(".")
            data = tar.extractfile(m).read()
            row = rows.setdefault(key, {})
            if ext == "json":
                row.update(json.loads(data))
            else:
                row["tokens"] = np.load(io.BytesIO(data))
    return list(rows.values())
