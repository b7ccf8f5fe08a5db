"""``mmtok`` command line: encode, decode, info, train, prep, vocab export, decode-row, demo.

Every MmtokError becomes one line on stderr and exit code 2; never a traceback. encode and
decode with several files report each bad file, go on, and exit 1 if any failed. No output
replaces an input or (without --overwrite) an existing file.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

from mmtok.errors import InputError, MmtokError
from mmtok.fileutil import check_output, make_dir, require_file

TOKENS_SUFFIX = ".tokens.safetensors"
BATCH_EPILOG = ("Several files: a bad file is reported and the others go on. Exit status: 0 "
                "all done, 1 some files failed, 2 refused (nothing written) or the one file "
                "failed.")  # fmt: skip


def _load(name: str):  # noqa: ANN202 (Tokenizer; import kept lazy for a fast --help)
    from mmtok.checkpoint import load_pretrained

    return load_pretrained(name)


def _default_preset(modality: str) -> str:
    from mmtok.presets import default_preset

    name = default_preset(modality)
    if name is None:
        raise InputError(f"no bundled preset for {modality}; pass --preset NAME_OR_CHECKPOINT_DIR")
    return name


class _Outputs:
    """Where each input's result goes: ``-o`` itself (one input and a file name) or a file in
    the ``-o`` folder. Refuses a destination that is an input (also through links), one this
    run already wrote, and, unless ``overwrite``, any existing file."""

    def __init__(self, output: str, inputs: list[str], overwrite: bool) -> None:
        self.out, self.inputs, self.overwrite = Path(output), inputs, overwrite
        self.single_file = len(inputs) == 1 and bool(self.out.suffix) and not self.out.is_dir()
        self.written: dict[Path, str] = {}  # resolved destination -> the input it came from

    def dest(self, src: str, suffix: str) -> Path:
        """The checked destination of ``src``; creates the ``-o`` folder when needed."""
        if self.single_file:
            dest = self.out
        else:
            dest = make_dir(self.out) / (_stem(Path(src)) + suffix)
        if dest.resolve() in self.written:
            raise InputError(f"{src!r}: output {str(dest)!r} was already written from "
                             f"{self.written[dest.resolve()]!r} in this run")  # fmt: skip
        check_output(dest, self.inputs, self.overwrite)
        return dest

    def wrote(self, dest: Path, src: str) -> None:
        self.written[dest.resolve()] = src


def _stem(src: Path) -> str:
    """``photo.png`` -> ``photo``; ``photo.tokens.safetensors`` -> ``photo``."""
    name = src.name
    return name[: -len(TOKENS_SUFFIX)] if name.endswith(TOKENS_SUFFIX) else src.stem


def _check_encode_output(out: _Outputs) -> None:
    if len(out.inputs) > 1 and out.out.name.endswith(TOKENS_SUFFIX) and not out.out.is_dir():
        raise InputError(f"output {str(out.out)!r}: {len(out.inputs)} inputs need an output "
                         "folder, not a token file name")  # fmt: skip
    if out.single_file and not out.out.name.endswith(TOKENS_SUFFIX):
        raise InputError(f"output {str(out.out)!r}: encode writes token files; name it "
                         f"'*{TOKENS_SUFFIX}' or give a folder")  # fmt: skip


class _Models:
    """Tokenizers loaded once per name: ``--preset`` if given, else per modality / token file."""

    def __init__(self, preset: str | None) -> None:
        self.preset, self.loaded = preset, {}
        if preset:  # a bad --preset fails before any file is touched
            self.get(preset)

    def get(self, name: str):  # noqa: ANN201 (Tokenizer; import kept lazy for a fast --help)
        if name not in self.loaded:
            self.loaded[name] = _load(name)
        return self.loaded[name]

    def for_file(self, path: str, modality: str):  # noqa: ANN201 (Tokenizer)
        from mmtok.media import a_or_an

        name = self.preset or _default_preset(modality)
        tok = self.get(name)
        if tok.modality != modality:
            raise InputError(f"{path!r} is {a_or_an(modality)} file, but {name!r} is "
                             f"{a_or_an(tok.modality)} tokenizer")  # fmt: skip
        return tok


def _run_batch(verb: str, files: list[str], step: Callable[[str], str]) -> int:
    """``step(file)`` for each file; it returns the line to print. One file: an error
    propagates (one line, exit 2). Several: each failing file is reported on stderr, the rest
    go on, a summary line follows, and the exit code is 1 if any file failed."""
    if len(files) == 1:
        print(step(files[0]))
        return 0
    failed = 0
    for f in tqdm(files, desc=verb, unit="file"):
        try:
            tqdm.write(step(f))
        except (MmtokError, OSError) as e:
            failed += 1
            where = "" if f in str(e) else f"{f}: "
            tqdm.write(f"mmtok {verb}: error: {where}{e}", file=sys.stderr)
    print(f"{len(files)} files: {len(files) - failed} {verb}d, {failed} failed")
    return 1 if failed else 0


def cmd_encode(args: argparse.Namespace) -> int:
    from mmtok.media import detect_modality, read_media

    out = _Outputs(args.output, args.files, args.overwrite)
    _check_encode_output(out)
    models = _Models(args.preset)

    def encode(f: str) -> str:
        require_file(f)
        modality = detect_modality(f)
        tok = models.for_file(f, modality)
        dest = out.dest(f, TOKENS_SUFFIX)
        if modality == "audio":  # streamed from disk; channels kept unless --mono
            from mmtok.audio.stream import encode_file

            tokens = encode_file(tok, f, channels="mono" if args.mono else "keep", n_q=args.n_q)
        else:
            tokens = tok.encode(read_media(f, tok), n_q=args.n_q)
        tokens.save(dest)
        out.wrote(dest, f)
        chans = f" x {tokens.channels} channels" if tokens.channels > 1 else ""
        return f"{f} -> {dest}  grid {list(tokens.grid)} x {tokens.num_codebooks} codes{chans}"

    return _run_batch("encode", args.files, encode)


def cmd_decode(args: argparse.Namespace) -> int:
    from mmtok.media import OUTPUT_SUFFIX, write_media
    from mmtok.tokens import Tokens

    out = _Outputs(args.output, args.files, args.overwrite)
    models = _Models(args.preset)

    def decode(f: str) -> str:
        tokens = Tokens.load(f)
        name = args.preset or tokens.tokenizer_name
        if not name:
            raise InputError(f"{f!r} does not name its tokenizer; pass --preset")
        tok = models.get(name)
        dest = out.dest(f, OUTPUT_SUFFIX[tok.modality])
        write_media(dest, tok.decode(tokens), tok, tokens.source_sample_rate)  # file's rate
        out.wrote(dest, f)
        return f"{f} -> {dest}"

    return _run_batch("decode", args.files, decode)


def cmd_info(args: argparse.Namespace) -> None:
    from mmtok.info import describe, preset_list

    print(describe(_load(args.name)) if args.name else preset_list())


def cmd_train(args: argparse.Namespace) -> int:
    from mmtok.train.__main__ import main as train_main

    return train_main(args.rest)


def cmd_prep(args: argparse.Namespace) -> None:
    from mmtok.data.prep import PrepJob, run_prep

    tokenizers = {m: getattr(args, f"{m}_tokenizer") for m in ("image", "audio", "video")}
    job = PrepJob(args.inputs, args.output, {m: t for m, t in tokenizers.items() if t},
                  args.format, args.shard_size, args.workers, args.batch_size, args.engine,
                  args.ray_address, args.vocab, args.text_tokenizer,
                  tuple(args.text_fields.split(",")))  # fmt: skip
    meta = run_prep(job)
    print(
        f"files {meta['files']}  failures {meta['failures']}  tokens {meta['tokens']}  "
        f"vocab {meta['vocab_size']}  shards {meta['shards']}  -> {args.output}"
    )


def cmd_vocab_export(args: argparse.Namespace) -> None:
    from mmtok.data.hf_export import export_vocab

    if args.vocab and len(args.paths) != 1:
        raise InputError(f"vocab export --vocab {args.vocab!r}: expected OUT_DIR only, got "
                         f"{len(args.paths)} paths")  # fmt: skip
    if not args.vocab and len(args.paths) != 2:
        raise InputError("vocab export: expected DATASET_DIR OUT_DIR (or --vocab vocab.json "
                         "OUT_DIR)")  # fmt: skip
    vocab = args.vocab or str(Path(args.paths[0]) / "vocab.json")
    out = export_vocab(vocab, args.paths[-1], args.text_tokenizer, args.overwrite)
    print(f"{vocab} -> {out}/tokenizer.json")


def cmd_decode_row(args: argparse.Namespace) -> None:
    from mmtok.data.row_files import write_row

    written = write_row(args.shard, args.index, args.output, args.vocab, args.text_tokenizer,
                        args.overwrite)  # fmt: skip
    print(f"{args.shard} row {args.index} -> " + " ".join(str(p) for p in written))


def cmd_demo(args: argparse.Namespace) -> None:
    from mmtok.demo import run_demo

    report = run_demo(args.files, args.output, args.preset)
    print(f"report: {report.resolve()}")


def cmd_eval(args: argparse.Namespace) -> int:
    from mmtok.evaluate import evaluate, table, write_json

    rows, failures = evaluate(args.tokenizers, args.data, args.limit, args.codec)
    for path, err in failures:
        print(f"mmtok eval: skipped {path}: {err}", file=sys.stderr)
    print(table(rows))
    if args.out:
        out = make_dir(args.out, "eval output folder") / "eval.json"
        write_json(out, rows, failures)
        print(f"json: {out}")
    return 1 if failures else 0


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, except for flags, unset options and help that says it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def _presets(modality: str | None = None) -> str:
    from mmtok.presets import PRESETS, list_presets

    present = set(list_presets())
    return ", ".join(n for n, p in PRESETS.items()
                     if n in present and modality in (None, p.modality))  # fmt: skip


def _defaults() -> str:
    from mmtok.presets import default_preset

    names = (default_preset(m) for m in ("image", "audio", "video"))
    return ", ".join(n for n in names if n)


def _add_encode(sub: argparse._SubParsersAction) -> None:
    e = sub.add_parser("encode", help="media files -> token files (.tokens.safetensors)",
                       epilog=BATCH_EPILOG, formatter_class=_Help)  # fmt: skip
    e.add_argument("files", nargs="+", help="image, audio or video files")
    e.add_argument("-o", "--output", required=True,
                   help=f"output *{TOKENS_SUFFIX} file (one input) or folder")  # fmt: skip
    e.add_argument("--preset", help=f"preset ({_presets()}) or checkpoint folder "
                   f"(default: the one of each file's modality: {_defaults()})")  # fmt: skip
    e.add_argument("--n-q", type=int, help="code streams to keep, for residual-VQ checkpoints "
                   "(every bundled preset has a single stream)")  # fmt: skip
    e.add_argument("--mono", action="store_true", help="audio: mix the channels down to one "
                   "first (default: each channel of a multi-channel file coded alone with a "
                   "mono tokenizer, decoded back to as many channels)")  # fmt: skip
    e.add_argument("--overwrite", action="store_true", help="replace existing output files")
    e.set_defaults(func=cmd_encode)


def _add_decode(sub: argparse._SubParsersAction) -> None:
    d = sub.add_parser("decode", help="token files -> media files", epilog=BATCH_EPILOG,
                       formatter_class=_Help)  # fmt: skip
    d.add_argument("files", nargs="+", help=f"*{TOKENS_SUFFIX} files")
    d.add_argument("-o", "--output", required=True, help="output file (one input) or folder")
    d.add_argument("--preset", help=f"preset ({_presets()}) or checkpoint folder to use instead "
                   "of the tokenizer recorded in the token file")  # fmt: skip
    d.add_argument("--overwrite", action="store_true", help="replace existing output files")
    d.set_defaults(func=cmd_decode)


def _add_info(sub: argparse._SubParsersAction) -> None:
    i = sub.add_parser("info", help="list the bundled presets, or describe one / a checkpoint",
                       formatter_class=_Help)  # fmt: skip
    i.add_argument("name", nargs="?", help=f"preset ({_presets()}) or checkpoint folder; "
                   "none: list the presets with their rate and quality")  # fmt: skip
    i.set_defaults(func=cmd_info)


def _add_prep(sub: argparse._SubParsersAction) -> None:
    from mmtok.data.encoders import default_tokenizers

    pr = sub.add_parser("prep", help="media folders / manifests -> token shards",
                        formatter_class=_Help)  # fmt: skip
    pr.add_argument("inputs", nargs="+", help="folders and/or .jsonl manifests")
    pr.add_argument("-o", "--output", required=True, help="output folder")
    defaults = default_tokenizers()
    for m in ("image", "audio", "video"):
        levels = "; or comma-separated levels (one vocabulary range each)"
        pr.add_argument(f"--{m}-tokenizer", help=f"preset ({_presets(m)}) or checkpoint folder "
                        f"for {m} files (default, when no tokenizer is named: {defaults.get(m)})"
                        + (levels if m == "audio" else ""))  # fmt: skip
    pr.add_argument("--vocab", help="vocab.json of an existing dataset: prep more of it in the "
                    "same ids (its tokenizers serve the modalities not named; a mismatch is an "
                    "error)")  # fmt: skip
    pr.add_argument("--text-tokenizer", metavar="DIR", help="folder with a Hugging Face "
                    "tokenizer.json: tokenize manifest text (captions, interleaved documents); "
                    "its ids come first in the vocabulary, unchanged")  # fmt: skip
    pr.add_argument("--text-fields", default="text,media", help="with --text-tokenizer: the "
                    "manifest fields placed as text around a media item, in order; 'media' "
                    "marks the media's place")  # fmt: skip
    pr.add_argument("--format", default="parquet", choices=["parquet", "webdataset",
                    "megatron"], help="shard format (megatron: Megatron-LM / NeMo indexed "
                    ".bin + .idx)")  # fmt: skip
    pr.add_argument("--shard-size", type=int, default=256, help="items per shard")
    pr.add_argument("--workers", type=int, default=2,
                    help="media decoding processes (ray: tokenizer actors)")  # fmt: skip
    pr.add_argument("--batch-size", type=int, default=8, help="same-shape items per encode")
    pr.add_argument("--engine", default="local", choices=["local", "ray"],
                    help="local processes, or Ray Data (pip install 'mmtok[ray]')")  # fmt: skip
    pr.add_argument("--ray-address", default=os.environ.get("RAY_ADDRESS"),
                    help="Ray cluster (default: $RAY_ADDRESS, else a local instance)")  # fmt: skip
    pr.set_defaults(func=cmd_prep)


def _add_vocab(sub: argparse._SubParsersAction) -> None:
    v = sub.add_parser("vocab", help="a dataset's vocabulary: export it as a Hugging Face "
                       "tokenizer")  # fmt: skip
    vsub = v.add_subparsers(dest="vocab_command", required=True)
    e = vsub.add_parser("export", help="DATASET_DIR OUT_DIR: a Hugging Face tokenizer (text "
                        "tokenizer + specials + one token per media code) with the dataset's "
                        "ids", formatter_class=_Help)  # fmt: skip
    e.add_argument("paths", nargs="+", metavar="PATH", help="DATASET_DIR OUT_DIR: the prep "
                   "output folder (holding vocab.json), then the output folder; with --vocab: "
                   "OUT_DIR")  # fmt: skip
    e.add_argument("--vocab", help="a vocab.json to export instead of DATASET_DIR's")
    e.add_argument("--text-tokenizer", metavar="DIR", help="the dataset's text tokenizer "
                   "folder (default: the path vocab.json records)")  # fmt: skip
    e.add_argument("--overwrite", action="store_true", help="replace existing output files")
    e.set_defaults(func=cmd_vocab_export)


def _add_decode_row(sub: argparse._SubParsersAction) -> None:
    d = sub.add_parser("decode-row", help="one shard row -> its text (.txt) and media files",
                       formatter_class=_Help)  # fmt: skip
    d.add_argument("shard", help="a prep shard (.parquet, .tar, or Megatron .idx)")
    d.add_argument("--index", type=int, required=True, help="row number in the shard, from 0")
    d.add_argument("-o", "--output", required=True, help="output folder")
    d.add_argument("--vocab", help="the dataset's vocab.json (default: the one beside SHARD)")
    d.add_argument("--text-tokenizer", metavar="DIR", help="the dataset's text tokenizer "
                   "folder (default: the path vocab.json records)")  # fmt: skip
    d.add_argument("--overwrite", action="store_true", help="replace existing output files")
    d.set_defaults(func=cmd_decode_row)


def _add_demo(sub: argparse._SubParsersAction) -> None:
    dm = sub.add_parser("demo", help="tokenize sample media and write an HTML report",
                        formatter_class=_Help)  # fmt: skip
    dm.add_argument("files", nargs="*", help="media files (default: the bundled samples)")
    dm.add_argument("-o", "--output", default="mmtok-demo", help="report folder")
    dm.add_argument("--preset", help=f"preset ({_presets()}) or checkpoint folder for every "
                    f"file (default: the one of each file's modality: {_defaults()})")  # fmt: skip
    dm.set_defaults(func=cmd_demo)


def _add_eval(sub: argparse._SubParsersAction) -> None:
    ev = sub.add_parser("eval", help="score tokenizers side by side on a folder or manifest",
                        formatter_class=_Help)  # fmt: skip
    ev.add_argument("tokenizers", nargs="+", help=f"presets ({_presets()}) or checkpoint folders")
    ev.add_argument("--data", required=True, help="media folder or .jsonl manifest")
    ev.add_argument("--limit", type=int, help="at most this many files per tokenizer")
    ev.add_argument("--codec", action="store_true",
                    help="add JPEG/WebP (images) or Opus (audio) at the same bits")  # fmt: skip
    ev.add_argument("--out", help="folder for eval.json")
    ev.set_defaults(func=cmd_eval)


def build_parser() -> argparse.ArgumentParser:
    from mmtok import __version__

    p = argparse.ArgumentParser(prog="mmtok", description=__doc__.splitlines()[0])
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    adders = (_add_encode, _add_decode, _add_info, _add_prep, _add_vocab, _add_decode_row,
              _add_demo, _add_eval)  # fmt: skip
    for add in adders:
        add(sub)
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
    except BrokenPipeError:  # `mmtok info | head`: the reader left; stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as e:  # a file system problem the checks above did not name
        print(f"mmtok {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mmtok: interrupted", file=sys.stderr)
        return 130
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
