"""``mmtok prep --engine ray``: the local engine's shards, computed on a Ray cluster.

The driver (the process running ``mmtok prep``) plans the job exactly as the local engine does
(``prep.plan_job``: sorted items, the same shard plan, vocabulary, finished shards skipped).
Ray Data then reads the pending items, decodes media in parallel tasks (``Dataset.map``) and
encodes them in batches in actors that each hold the tokenizers (``map_batches`` with a
callable class, ``concurrency=workers``). Rows stream back to the driver, which writes each
shard with the local engine's writer (``prep.ShardBook``) as soon as all its items are in, so
the output, resume and failure handling are those of the local engine.

Decoded media crosses the object store as ``.npy`` bytes, rows as JSON plus the token bytes:
plain Arrow columns, nothing pickled.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pyarrow as pa

from mmtok.data.encoders import load_tokenizers
from mmtok.data.manifest import Item
from mmtok.data.prep import Plan, PrepJob, ShardBook, _decode
from mmtok.data.rows import batches, encode_group
from mmtok.errors import InputError
from mmtok.media import MediaSpec

_ITEM_FIELDS = ("key", "path", "modality", "split", "rel")  # + segments, as JSON
# what the actors send back per item: its index, the row as JSON (tokens apart), the tokens'
# bytes, or the failure reason
_DECODE_CALLS = 64
_OUT = {"index": pa.int64(), "row": pa.string(), "tokens": pa.binary(), "error": pa.string()}


def _import_ray():  # noqa: ANN202 (the ray module; imported lazily, it is an optional extra)
    try:
        import ray
        import ray.data  # noqa: F401 (Ray Data ships as ray[data])
    except ImportError as e:
        raise InputError(f"engine 'ray' needs Ray Data ({e}): pip install 'mmtok[ray]'") from None
    return ray


def _item(row: dict) -> Item:
    segments = tuple(tuple(s) for s in json.loads(row["segments"]))
    return Item(**{f: row[f] for f in _ITEM_FIELDS}, segments=segments)


def _npy(x: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, x, allow_pickle=False)
    return buf.getvalue()


def _decode_row(row: dict, specs: dict[str, MediaSpec]) -> dict:
    """Ray task: read a sample's media; ``x`` holds each array as .npy bytes, ``error`` the
    reason it failed."""
    item = _item(row)
    _, xs, err = _decode((item, {m: specs[m] for m, _ in item.media()}))
    return {**row, "x": [_npy(x) for x in xs or []], "error": err or ""}


class _EncodeActor:
    """Ray actor: holds the job's tokenizers; a batch of decoded items -> serialised rows."""

    def __init__(self, job: PrepJob, names: dict[str, str], text: str | None,
                 vocab: dict) -> None:  # fmt: skip
        self.tokenizers = load_tokenizers(names, text)
        if self.tokenizers.vocab.to_json() != vocab:
            raise InputError(f"a Ray worker loaded other tokenizers than the driver for "
                             f"{names} (text: {text}): a checkpoint folder must hold the same "
                             "weights at the same path on every node")  # fmt: skip
        self.batch_size = job.batch_size

    def __call__(self, batch: pa.Table) -> pa.Table:
        cols = batch.to_pydict()
        decoded = []
        for n in range(batch.num_rows):
            item = _item({f: cols[f][n] for f in (*_ITEM_FIELDS, "segments")})
            err = cols["error"][n] or None
            xs = None if err else [np.load(io.BytesIO(b), allow_pickle=False)
                                   for b in cols["x"][n]]  # fmt: skip
            decoded.append((item, xs, err))
        index = dict(zip(cols["key"], cols["index"], strict=True))
        out: dict[str, list] = {c: [] for c in _OUT}

        def emit(key: str, row: str, tokens: bytes, error: str) -> None:
            for name, value in zip(out, (index[key], row, tokens, error), strict=True):
                out[name].append(value)

        for group, failure in batches(iter(decoded), self.batch_size):
            if failure:
                emit(failure[0].key, "", b"", failure[1])
                continue
            for row in encode_group(group, self.tokenizers):
                tokens = row.pop("tokens")
                emit(row["key"], json.dumps(row), tokens.tobytes(), "")
        return pa.table({c: pa.array(v, type=_OUT[c]) for c, v in out.items()})


def _pipeline(ray, job: PrepJob, plan: Plan, items: list[Item]):  # noqa: ANN001, ANN202
    """The Ray Data plan: items -> decode tasks -> encode actors (lazy until iterated)."""
    ds = ray.data.from_items([
        {"index": n, **{f: getattr(it, f) for f in _ITEM_FIELDS},
         "segments": json.dumps(it.segments)} for n, it in enumerate(items)
    ])  # fmt: skip
    specs = {m: e.spec for m, e in plan.tokenizers.media.items()}
    # A decode worker process is recycled every _DECODE_CALLS tasks (media libraries can leak
    # over a long job). Options the actors lack also keep Ray Data from fusing decoding into
    # the actors, so files decode in tasks on every free CPU while `workers` actors encode.
    ds = ds.map(_decode_row, fn_kwargs={"specs": specs}, num_cpus=1, max_calls=_DECODE_CALLS)
    names, text = plan.tokenizers.names()  # defaults resolved once, here
    return ds.map_batches(
        _EncodeActor,
        fn_constructor_args=(job, names, text, plan.vocab.to_json()),
        batch_size=job.batch_size,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=max(1, job.workers)),
        num_cpus=1,
    )


def encode_pending_ray(job: PrepJob, plan: Plan) -> None:
    """Encode ``plan``'s pending shards with Ray Data; the driver writes each finished shard.

    Joins ``job.ray_address`` (None: ``RAY_ADDRESS``, else the cluster ``ray start`` started on
    this machine, else a new local instance) unless Ray is already initialised in this
    process; an instance started here is shut down at the end.
    """
    ray = _import_ray()
    items = [it for it, _ in plan.todo()]
    if not items:
        return
    started = not ray.is_initialized()
    if started:
        ray.init(address=job.ray_address)
    try:
        ray.data.DataContext.get_current().enable_progress_bars = False  # ShardBook shows one
        book = ShardBook(plan, job)
        dtype = plan.vocab.dtype()
        batches = _pipeline(ray, job, plan, items).iter_batches(
            batch_size=None, batch_format="pyarrow"
        )
        for batch in batches:
            cols = batch.to_pydict()
            for n, row, tokens, error in zip(*(cols[c] for c in _OUT), strict=True):
                if error:
                    book.add(items[n], error=error)
                    continue
                row = json.loads(row)
                row["tokens"] = np.frombuffer(tokens, dtype=dtype)
                book.add(items[n], row=row)
        book.close()
    finally:
        if started:
            ray.shutdown()
