"""``mmtok`` command line: encode, decode, info, train, prep, demo.

Every MmtokError becomes one line on stderr and exit code 2; never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from tqdm import tqdm

from mmtok.errors import InputError, MmtokError
from mmtok.fileutil import make_dir


def _load(name: str):  # noqa: ANN202 (Tokenizer; import kept lazy for a fast --help)
    from mmtok.checkpoint import load_pretrained

    return load_pretrained(name)


def _default_preset(modality: str) -> str:
    from mmtok.presets import default_preset

    name = default_preset(modality)
    if name is None:
        raise InputError(f"no bundled preset for {modality}; pass --preset NAME_OR_CHECKPOINT_DIR")
    return name


def _out_path(src: Path, out: Path, many: bool, suffix: str) -> Path:
    """One input and ``out`` with a suffix: that file; otherwise a folder of ``stem+suffix``."""
    if not many and out.suffix and not out.is_dir():
        return out
    make_dir(out)
    return out / (src.name.split(".")[0] + suffix)


def cmd_encode(args: argparse.Namespace) -> None:
    from mmtok.media import detect_modality, read_media

    models: dict[str, object] = {}
    many = len(args.files) > 1
    for f in tqdm(args.files, desc="encode", unit="file", disable=not many):
        modality = detect_modality(f)
        name = args.preset or _default_preset(modality)
        tok = models.setdefault(name, _load(name))
        if tok.modality != modality:
            raise InputError(f"{f!r} is {modality}, but {name!r} is a {tok.modality} tokenizer")
        tokens = tok.encode(read_media(f, tok), n_q=args.n_q)
        dest = _out_path(Path(f), Path(args.output), many, ".tokens.safetensors")
        tokens.save(dest)
        print(f"{f} -> {dest}  grid {list(tokens.grid)} x {tokens.num_codebooks} codes")


def cmd_decode(args: argparse.Namespace) -> None:
    from mmtok.media import OUTPUT_SUFFIX, write_media
    from mmtok.tokens import Tokens

    many = len(args.files) > 1
    for f in tqdm(args.files, desc="decode", unit="file", disable=not many):
        tokens = Tokens.load(f)
        name = args.preset or tokens.tokenizer_name
        if not name:
            raise InputError(f"{f!r} does not name its tokenizer; pass --preset")
        tok = _load(name)
        dest = _out_path(Path(f), Path(args.output), many, OUTPUT_SUFFIX[tok.modality])
        write_media(dest, tok.decode(tokens), tok)
        print(f"{f} -> {dest}")


def cmd_info(args: argparse.Namespace) -> None:
    from mmtok.info import describe

    print(describe(_load(args.name)))


def cmd_train(args: argparse.Namespace) -> int:
    from mmtok.train.__main__ import main as train_main

    return train_main(args.rest)


def cmd_prep(args: argparse.Namespace) -> None:
    from mmtok.data.prep import PrepJob, run_prep

    tokenizers = {m: getattr(args, f"{m}_tokenizer") for m in ("image", "audio", "video")}
    job = PrepJob(args.inputs, args.output, {m: t for m, t in tokenizers.items() if t},
                  args.format, args.shard_size, args.workers, args.batch_size, args.engine,
                  args.ray_address)  # fmt: skip
    meta = run_prep(job)
    print(
        f"files {meta['files']}  failures {meta['failures']}  tokens {meta['tokens']}  "
        f"vocab {meta['vocab_size']}  shards {meta['shards']}  -> {args.output}"
    )


def cmd_demo(args: argparse.Namespace) -> None:
    from mmtok.demo import run_demo

    report = run_demo(args.files, args.output, args.preset)
    print(f"report: {report.resolve()}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mmtok", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    e = sub.add_parser("encode", help="media files -> token files (.tokens.safetensors)")
    e.add_argument("files", nargs="+")
    e.add_argument("-o", "--output", required=True, help="output file (one input) or folder")
    e.add_argument("--preset", help="preset name or checkpoint folder (default: per modality)")
    e.add_argument("--n-q", type=int, default=None, help="code streams to keep (residual VQ)")
    e.set_defaults(func=cmd_encode)
    d = sub.add_parser("decode", help="token files -> media files")
    d.add_argument("files", nargs="+")
    d.add_argument("-o", "--output", required=True, help="output file (one input) or folder")
    d.add_argument("--preset", help="override the tokenizer recorded in the token file")
    d.set_defaults(func=cmd_decode)
    i = sub.add_parser("info", help="describe a preset or checkpoint folder")
    i.add_argument("name")
    i.set_defaults(func=cmd_info)
    pr = sub.add_parser("prep", help="media folders / manifests -> token shards")
    pr.add_argument("inputs", nargs="+", help="folders and/or .jsonl manifests")
    pr.add_argument("-o", "--output", required=True, help="output folder")
    for m in ("image", "audio", "video"):
        levels = ", or comma-separated levels: audio-hop8,audio-hop32,audio-hop128"
        pr.add_argument(f"--{m}-tokenizer", help=f"preset or checkpoint for {m} files"
                        + (levels if m == "audio" else ""))  # fmt: skip
    pr.add_argument("--format", default="parquet", choices=["parquet", "webdataset"])
    pr.add_argument("--shard-size", type=int, default=256, help="items per shard")
    pr.add_argument("--workers", type=int, default=2,
                    help="media decoding processes (ray: tokenizer actors)")  # fmt: skip
    pr.add_argument("--batch-size", type=int, default=8, help="same-shape items per encode")
    pr.add_argument("--engine", default="local", choices=["local", "ray"],
                    help="local processes, or Ray Data (pip install 'mmtok[ray]')")  # fmt: skip
    pr.add_argument("--ray-address", default=os.environ.get("RAY_ADDRESS"),
                    help="Ray cluster (default: $RAY_ADDRESS, else a local instance)")  # fmt: skip
    pr.set_defaults(func=cmd_prep)
    dm = sub.add_parser("demo", help="tokenize sample media and write an HTML report")
    dm.add_argument("files", nargs="*", help="media files (default: the bundled samples)")
    dm.add_argument("-o", "--output", default="mmtok-demo", help="report folder")
    dm.add_argument("--preset", help="use this preset / checkpoint for every file")
    dm.set_defaults(func=cmd_demo)
    t = sub.add_parser("train", help="train a tokenizer from a recipe", add_help=False)
    t.add_argument("rest", nargs=argparse.REMAINDER)
    t.set_defaults(func=cmd_train)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["train"]:  # the trainer owns its arguments (and its --help)
        from mmtok.train.__main__ import main as train_main

        return train_main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        code = args.func(args)
    except MmtokError as e:
        print(f"mmtok {args.command}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a file system problem the checks above did not name
        print(f"mmtok {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mmtok: interrupted", file=sys.stderr)
        return 130
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
