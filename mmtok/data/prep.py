"""``mmtok prep``: media folders / manifests -> one token vocabulary + shards.

Items are sorted by key and cut into shards of ``shard_size`` items, so the plan is the same
on every run. Media is decoded in worker processes (``workers``) while the main process
encodes (``engine="ray"``: both on a Ray cluster, see ``mmtok.data.ray_engine``); each shard
is written to a temp file and renamed, after its failure and stats sidecars, so a restart
skips finished shards and neither duplicates nor loses an item. Bad files go to
``failures.jsonl`` with the reason and the job goes on. The tokenizers and the vocabulary
come from ``mmtok.data.encoders`` (they depend on the tokenizers named, never on the files),
the rows from ``mmtok.data.rows``.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from mmtok.data.encoders import JobTokenizers, check_covered, job_tokenizers
from mmtok.data.manifest import DEFAULT_TEXT_FIELDS, Item, collect
from mmtok.data.rows import batches, encode_group
from mmtok.data.shards import FORMATS, WRITERS, shard_path
from mmtok.data.vocab import VOCAB_FORMAT, Vocabulary
from mmtok.errors import InputError, MmtokError
from mmtok.fileutil import atomic_path, make_dir
from mmtok.media import MediaSpec, read_spec

ENGINES = ("local", "ray")


@dataclass
class PrepJob:
    """One prep run. tokenizers: modality -> preset name or checkpoint folder (none: every
    modality's default preset). vocab: an existing ``vocab.json`` whose ids this job must
    reproduce (its tokenizers are used for what ``tokenizers`` / ``text_tokenizer`` do not
    name). text_tokenizer: a folder with a Hugging Face ``tokenizer.json`` (None: media only,
    manifest text ignored); text_fields: the manifest fields placed as text around a media
    item, in order, ``media`` marking the media's place (see ``mmtok.data.manifest``).

    engine: "local" (``workers`` decoding processes on this machine) or "ray" (Ray Data;
    ``workers`` tokenizer actors). ray_address: the cluster to join (None: Ray's default,
    ``RAY_ADDRESS`` or else a local instance). Both engines write the same shards, so either
    can resume a job.
    """

    inputs: list[str]
    out_dir: str
    tokenizers: dict[str, str] = field(default_factory=dict)
    fmt: str = "parquet"
    shard_size: int = 256
    workers: int = 2
    batch_size: int = 8
    engine: str = "local"
    ray_address: str | None = None
    vocab: str | None = None
    text_tokenizer: str | None = None
    text_fields: tuple[str, ...] = DEFAULT_TEXT_FIELDS


Decoded = tuple[Item, list[np.ndarray] | None, str | None]


def _decode(task: tuple[Item, dict[str, MediaSpec]]) -> Decoded:
    """Worker: read a sample's media files ``[1, C, *S]`` each; never raises (the reason goes
    to failures.jsonl)."""
    item, specs = task
    path = item.path
    try:
        xs = []
        for modality, path in item.media():
            xs.append(read_spec(path, specs[modality]).numpy())
        return item, xs, None
    except MmtokError as e:
        return item, None, str(e)
    except Exception as e:  # noqa: BLE001 (a decoder bug must not kill a batch job)
        return item, None, f"{path!r}: {type(e).__name__}: {e}"


class _DecodeTasks(Dataset):
    """Map-style view of the decode tasks so a DataLoader runs them in worker processes."""

    def __init__(self, tasks: list) -> None:
        self.tasks = tasks

    def __len__(self) -> int:
        return len(self.tasks)

    def __getitem__(self, i: int) -> Decoded:
        return _decode(self.tasks[i])


def _identity(x: object) -> object:
    return x


def _die_with_parent(parent: int, _worker_id: int) -> None:
    """Decoding worker start-up (Linux): SIGKILL this worker when the prep process dies.

    Without it a prep process killed with SIGKILL (OOM killer, a preempted job) leaves its
    workers asleep forever, each holding its memory (benchmarks/soak.py found them).
    """
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the prep process died before prctl took effect
            os._exit(1)


def _decoded(tasks: list, workers: int) -> Iterator:
    """Decoded items in task order; ``workers`` processes decode ahead of the encoder."""
    if workers <= 0:
        yield from map(_decode, tasks)
        return
    init = functools.partial(_die_with_parent, os.getpid())
    loader = DataLoader(_DecodeTasks(tasks), batch_size=None, num_workers=workers,
                        prefetch_factor=4, collate_fn=_identity, worker_init_fn=init)  # fmt: skip
    yield from loader


def _sha256(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def _item_record(item: Item) -> dict:
    """An item as plan digests record it (media-only items as before segments existed;
    ``rel`` follows from the path and inputs, so folders prepped before it still match)."""
    record = asdict(item)
    del record["rel"]
    if not item.segments:
        del record["segments"]
    return record


def _plan_record(job: PrepJob, items: list[Item], tk: JobTokenizers) -> dict:
    """What decides a job's shards; compared field by field when a folder is reused."""
    media, text = tk.names()
    return {
        "inputs": {"files": len(items), "sha256": _sha256([_item_record(i) for i in items])},
        "tokenizers": {
            "names": {**media, **({"text": text} if text else {})},
            "sha256": _sha256(tk.vocab.to_json()),
            "format": VOCAB_FORMAT,
        },
        "shard_size": job.shard_size,
        "format": job.fmt,
    }


def _difference(key: str, old: object, new: object) -> str:
    """One field of two plan records, said for a user: what it was and what it is now."""
    if key == "inputs" and isinstance(old, dict) and old.get("files") == new["files"]:
        return f"inputs ({new['files']} files as before, but other paths, keys or splits)"
    if key == "inputs" and isinstance(old, dict):
        return f"inputs ({old.get('files')} files before, {new['files']} now)"
    if key == "tokenizers" and isinstance(old, dict) and old.get("format") != new["format"]:
        return f"tokenizers (vocabulary layout {old.get('format')} before, {new['format']} now)"
    if key == "tokenizers" and isinstance(old, dict) and old.get("names") == new["names"]:
        return f"tokenizers (the same names {new['names']}, but other weights)"
    if key == "tokenizers" and isinstance(old, dict):
        return f"tokenizers ({old.get('names')} before, {new['names']} now)"
    return f"{key.replace('_', ' ')} ({old} before, {new} now)"


def _legacy_digest(job: PrepJob, items: list[Item], vocab: Vocabulary) -> str:
    """The single digest that folders prepared before ``plan.json`` recorded."""
    plan = {"items": [_item_record(i) for i in items], "shard_size": job.shard_size, "fmt": job.fmt,
            "vocab": vocab.to_json()}  # fmt: skip
    return _sha256(plan)


def _check_plan(out: Path, record: dict, legacy_digest: str) -> None:
    """Refuse a folder that holds another job, naming what differs; else record this job."""
    path, legacy = out / ".state" / "plan.json", out / ".state" / "plan.sha256"
    if path.exists():
        old = json.loads(path.read_text())
        diffs = [_difference(k, old.get(k), v) for k, v in record.items() if old.get(k) != v]
    elif legacy.exists() and legacy.read_text() != legacy_digest:
        diffs = ["inputs, tokenizers, shard size or format (recorded as one digest)"]
    else:
        diffs = []
    if diffs:
        raise InputError(f"output folder {str(out)!r} holds a different prep job; it differs "
                         f"in {'; '.join(diffs)}: use a new folder")  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(record, indent=2, sort_keys=True))


def _write_shard(out: Path, index: int, job: PrepJob, rows: list, failures: list,
                 vocab: Vocabulary) -> None:  # fmt: skip
    state = out / ".state"
    stats = {"files": len(rows), "failures": len(failures), "tokens": {}, "seconds": {}}
    for r in rows:
        m = r["modality"]
        stats["tokens"][m] = stats["tokens"].get(m, 0) + r["num_tokens"]
        stats["seconds"][m] = stats["seconds"].get(m, 0.0) + (r["duration_s"] or 0.0)
    for name, payload in ((f"shard-{index:05d}.failures.jsonl",
                           "".join(json.dumps(f) + "\n" for f in failures)),
                          (f"shard-{index:05d}.stats.json", json.dumps(stats))):  # fmt: skip
        with atomic_path(state / name) as tmp:
            tmp.write_text(payload)
    WRITERS[job.fmt](shard_path(out, index, job.fmt), rows, vocab.dtype())


def _finish(out: Path, n_shards: int, vocab: Vocabulary, elapsed: float) -> dict:
    state = out / ".state"
    meta = {"files": 0, "failures": 0, "tokens": {}, "seconds": {}, "shards": n_shards}
    failures = []
    for i in range(n_shards):
        stats = json.loads((state / f"shard-{i:05d}.stats.json").read_text())
        meta["files"] += stats["files"]
        meta["failures"] += stats["failures"]
        for k in ("tokens", "seconds"):
            for m, v in stats[k].items():
                meta[k][m] = meta[k].get(m, 0) + v
        failures.append((state / f"shard-{i:05d}.failures.jsonl").read_text())
    meta["vocab_size"], meta["elapsed_s"] = vocab.size, round(elapsed, 3)
    with atomic_path(out / "failures.jsonl") as tmp:
        tmp.write_text("".join(failures))
    with atomic_path(out / "meta.json") as tmp:
        tmp.write_text(json.dumps(meta, indent=2))
    return meta


@dataclass
class Plan:
    """The fixed shard plan of a job and what is left of it (the same for every engine)."""

    out: Path
    shards: list[list[Item]]  # items sorted by key, cut every shard_size
    pending: list[int]  # shards not yet on disk
    tokenizers: JobTokenizers

    @property
    def vocab(self) -> Vocabulary:
        return self.tokenizers.vocab

    def todo(self) -> list[tuple[Item, dict[str, MediaSpec]]]:
        """The decode tasks of the pending shards, in item order."""
        items = [it for i in self.pending for it in self.shards[i]]
        media = self.tokenizers.media
        return [(it, {m: media[m].spec for m, _ in it.media()}) for it in items]


def plan_job(job: PrepJob) -> Plan:
    """Check the job, load its tokenizers, write vocab.json and find the unfinished shards.

    Nothing is created on disk until the inputs, tokenizers and options have been checked.
    """
    if job.fmt not in FORMATS:
        raise InputError(f"format must be one of {sorted(FORMATS)}, got {job.fmt!r}")
    if job.shard_size < 1:
        raise InputError(f"shard_size must be >= 1, got {job.shard_size}")
    if job.engine not in ENGINES:
        raise InputError(f"engine must be one of {list(ENGINES)}, got {job.engine!r}")
    tk = job_tokenizers(job.tokenizers, job.text_tokenizer, job.vocab)
    items = collect(job.inputs, job.text_fields if tk.text else None)
    if not items:
        raise InputError(f"no media found in {job.inputs}")
    check_covered(items, tk)
    out = make_dir(job.out_dir, "prep output folder")  # only once the job is known to be sound
    _check_plan(out, _plan_record(job, items, tk), _legacy_digest(job, items, tk.vocab))
    tk.vocab.save(out / "vocab.json")
    shards = [items[i : i + job.shard_size] for i in range(0, len(items), job.shard_size)]
    pending = [i for i in range(len(shards)) if not shard_path(out, i, job.fmt).exists()]
    return Plan(out, shards, pending, tk)


class ShardBook:
    """Rows and failures of the pending shards; writes a shard once all its items are in.

    Rows and failures are written in key (= item) order whatever order they arrive in, so
    engines that finish items out of order still write the same shards.
    """

    def __init__(self, plan: Plan, job: PrepJob) -> None:
        self.plan, self.job = plan, job
        self.owner = {it.key: i for i in plan.pending for it in plan.shards[i]}
        self.left = {i: len(plan.shards[i]) for i in plan.pending}
        self.rows: dict[int, list] = {i: [] for i in plan.pending}
        self.fails: dict[int, list] = {i: [] for i in plan.pending}
        self.tokens, self.t0 = 0, time.perf_counter()
        self.bar = tqdm(total=len(self.owner), desc="prep", unit="file", disable=not self.owner)

    def add(self, item: Item, row: dict | None = None, error: str | None = None) -> None:
        """Record one item: its row, or (row None) the reason it failed."""
        i = self.owner[item.key]
        if row is None:
            self.fails[i].append({"key": item.key, "path": item.path, "error": error})
        else:
            self.rows[i].append(row)
            self.tokens += row["num_tokens"]
        self.left[i] -= 1
        if self.left[i] == 0:
            del self.left[i]
            rows = sorted(self.rows.pop(i), key=lambda r: r["key"])
            fails = sorted(self.fails.pop(i), key=lambda f: f["key"])
            _write_shard(self.plan.out, i, self.job, rows, fails, self.plan.vocab)
        self.bar.update(1)
        rate = self.tokens / max(time.perf_counter() - self.t0, 1e-9)
        self.bar.set_postfix(tokens_s=f"{rate:,.0f}", refresh=False)

    def close(self) -> None:
        self.bar.close()
        if self.left:
            raise RuntimeError(f"prep engine lost items of shards {sorted(self.left)}")


def run_prep(job: PrepJob) -> dict:
    """Run (or resume) a prep job; returns the totals written to meta.json.

    InputError when no file at all could be tokenized (meta.json and failures.jsonl are still
    written, so the reasons can be read).
    """
    start = time.perf_counter()
    plan = plan_job(job)
    if job.engine == "ray":
        from mmtok.data.ray_engine import encode_pending_ray

        encode_pending_ray(job, plan)
    else:
        _encode_pending(job, plan)
    meta = _finish(plan.out, len(plan.shards), plan.vocab, time.perf_counter() - start)
    if meta["files"] == 0:
        n = meta["failures"]
        which = "the one file" if n == 1 else f"all {n} files"
        raise InputError(f"prep produced nothing: {which} failed; reasons in "
                         f"{str(plan.out / 'failures.jsonl')!r} (fix them and prep into a new "
                         "folder: this one records them as done)")  # fmt: skip
    return meta


def _encode_pending(job: PrepJob, plan: Plan) -> None:
    book = ShardBook(plan, job)
    for group, failure in batches(_decoded(plan.todo(), job.workers), job.batch_size):
        if failure:
            book.add(failure[0], error=failure[1])
            continue
        for (item, _), row in zip(group, encode_group(group, plan.tokenizers), strict=True):
            book.add(item, row=row)
    book.close()
