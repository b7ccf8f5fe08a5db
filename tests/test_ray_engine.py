"""Ray Data prep engine: the local engine's shards, vocabulary, failures and resume, on Ray."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from mmtok.cli import build_parser, main
from mmtok.data import PrepJob, run_prep
from mmtok.data.shards import read_rows
from mmtok.errors import InputError
from tests.test_prep import _media


@pytest.fixture(scope="module")
def ckpt(tiny_image_ckpt):
    return tiny_image_ckpt


@pytest.fixture(scope="module")
def ray_instance():
    ray = pytest.importorskip("ray", reason="the Ray engine needs: pip install 'mmtok[ray]'")
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=200 * 2**20,
             log_to_driver=False)  # fmt: skip
    yield ray
    ray.shutdown()


def _job(media: Path, out: Path, ckpt: Path, **kw) -> PrepJob:
    return PrepJob([str(media)], str(out), {"image": str(ckpt)}, **kw)


def _shards(out: Path) -> dict[str, list[dict]]:
    """Every shard's rows in order, tokens as lists (all columns compared)."""
    return {p.name: [{**r, "tokens": r["tokens"].tolist()} for r in read_rows(p)]
            for p in sorted(out.glob("shard-*"))}  # fmt: skip


def _outputs(out: Path) -> dict:
    meta = json.loads((out / "meta.json").read_text())
    del meta["elapsed_s"]
    return {"shards": _shards(out), "meta": meta, "vocab": (out / "vocab.json").read_text(),
            "failures": (out / "failures.jsonl").read_text()}  # fmt: skip


def test_ray_writes_the_local_engines_shards(tmp_path, ckpt, ray_instance):
    media = _media(tmp_path / "media")  # 7 images of two sizes + broken.png
    run_prep(_job(media, tmp_path / "local", ckpt, shard_size=3, workers=0))
    meta = run_prep(_job(media, tmp_path / "ray", ckpt, shard_size=3, workers=1, batch_size=2,
                         engine="ray"))  # fmt: skip
    assert meta["files"] == 7 and meta["failures"] == 1 and meta["shards"] == 3
    local, ray = _outputs(tmp_path / "local"), _outputs(tmp_path / "ray")
    assert list(ray["shards"]) == ["shard-00000.parquet", "shard-00001.parquet",
                                   "shard-00002.parquet"]  # fmt: skip
    assert ray == local  # same shard boundaries, rows, tokens, vocab, failures and totals
    (failure,) = [json.loads(line) for line in ray["failures"].splitlines()]
    assert failure["key"] == "media__broken_png" and "broken.png" in failure["error"]
    assert ray_instance.is_initialized(), "a Ray instance the caller started stays up"


def test_ray_resume_skips_finished_shards(tmp_path, ckpt, ray_instance):
    media = _media(tmp_path / "media")
    run_prep(_job(media, tmp_path / "ref", ckpt, shard_size=2, workers=0))
    out = tmp_path / "out"
    run_prep(_job(media, out, ckpt, shard_size=2, workers=0))  # local run, then "killed":
    for name in ("shard-00001.parquet", "shard-00003.parquet", "meta.json"):
        (out / name).unlink()
    kept = {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*")}
    argv = ["prep", str(media), "-o", str(out), "--image-tokenizer", str(ckpt),
            "--shard-size", "2", "--workers", "1", "--engine", "ray"]  # fmt: skip
    assert main(argv) in (0, None)  # the Ray engine resumes a local job: same plan
    assert {n: t for n, t in ((p.name, p.stat().st_mtime_ns) for p in out.glob("shard-*"))
            if n in kept} == kept  # fmt: skip
    assert _outputs(out) == _outputs(tmp_path / "ref")


def test_cli_engine_and_ray_address(monkeypatch):
    argv = ["prep", "m", "-o", "o"]
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    args = build_parser().parse_args(argv)
    assert args.engine == "local" and args.ray_address is None
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    assert build_parser().parse_args([*argv, "--engine", "ray"]).ray_address == "10.0.0.1:6379"
    args = build_parser().parse_args([*argv, "--engine", "ray", "--ray-address", "auto"])
    assert args.engine == "ray" and args.ray_address == "auto"


def test_missing_ray_or_unknown_engine_is_an_input_error(tmp_path, ckpt, monkeypatch):
    media = _media(tmp_path / "media", n=2)
    with pytest.raises(InputError, match="engine must be one of"):
        run_prep(_job(media, tmp_path / "a", ckpt, engine="spark"))
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    with pytest.raises(InputError, match=r"pip install 'mmtok\[ray\]'"):
        run_prep(_job(media, tmp_path / "b", ckpt, engine="ray"))


def test_ray_text_samples_match_the_local_engine(tmp_path, ckpt, tiny_audio_ckpt, ray_instance):
    """Captions and an interleaved document (several media in one sample) through Ray."""
    pytest.importorskip("tokenizers")
    from tests.test_prep_text import CORPUS, build_text_tokenizer

    media = _media(tmp_path / "media", n=4)
    (tmp_path / "media" / "sub" / "img1.png").rename(tmp_path / "media" / "img1.png")
    lines = [
        {"path": "img0.png", "text": CORPUS[0]},
        {"path": "img2.png", "text": CORPUS[1]},
        {"path": "broken.png", "text": CORPUS[2]},
        {"segments": [{"text": CORPUS[3]}, {"image": "img1.png"}, {"image": "img2.png"}]},
    ]
    (media / "m.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    text = build_text_tokenizer(tmp_path / "text")
    outs = {}
    for engine in ("local", "ray"):
        job = PrepJob([str(media / "m.jsonl")], str(tmp_path / engine), {"image": str(ckpt)},
                      shard_size=2, workers=1, batch_size=2, engine=engine,
                      text_tokenizer=str(text))  # fmt: skip
        assert run_prep(job)["files"] == 3
        outs[engine] = _outputs(tmp_path / engine)
    assert outs["ray"] == outs["local"]
