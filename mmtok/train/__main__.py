"""``python -m mmtok.train RECIPE [key=value ...] [--resume | --resume-from DIR]``.

``mmtok train ...`` calls ``main`` with the same arguments. Under ``torchrun`` every process
runs this; rank 0 alone prints, logs and writes files.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import yaml

from mmtok.errors import MmtokError

EPILOG = """examples:
  python -m mmtok.train recipes/image_small.yaml
  python -m mmtok.train recipes/image_small.yaml train.steps=100 model.codebook_size=256
  python -m mmtok.train recipes/image_small.yaml --resume
  torchrun --nproc_per_node=2 -m mmtok.train recipes/image_small.yaml
"""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mmtok train", description="Train a tokenizer from a YAML recipe.", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    p.add_argument("recipe", help="recipe YAML (may include another with `base: file.yaml`)")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="dotted overrides parsed as YAML, e.g. train.steps=100")  # fmt: skip
    group = p.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true",
                       help="continue from the newest checkpoint in out_dir")  # fmt: skip
    group.add_argument("--resume-from", metavar="DIR", help="continue from this checkpoint")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved recipe and exit")  # fmt: skip
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the trainer; returns the exit code (2 for config / checkpoint / input errors)."""
    args = parser().parse_intermixed_args(argv)
    from mmtok.train.config import load_config
    from mmtok.train.trainer import train

    try:
        cfg = load_config(args.recipe, args.overrides)
        if args.print_config:
            print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")
            return 0
        resume = "latest" if args.resume else args.resume_from
        train(cfg, resume=resume)
    except MmtokError as e:
        print(f"mmtok train: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
