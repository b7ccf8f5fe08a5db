"""Train several recipes at once on one machine (one GPU shared, or CPU), in a time budget.

    python3 recipes/train_many.py RECIPE... --minutes 7 [--probe-seconds 30] [--set key=value]

Small tokenizers leave most of a large GPU idle, so training them side by side in separate
processes is nearly free. A recipe's cosine schedule needs its step count in advance, so this
first runs every recipe together for ``--probe-seconds`` (``train.max_seconds``) to measure its
steps/s under the same contention, then starts them all again from scratch with
``train.steps = rate x budget`` (and ``train.max_seconds`` as a guard). Each run writes its own
``out_dir`` (``final/``, ``summary.json``, TensorBoard, plots) and ``train.log`` beside it.
Prints one line per recipe: steps, minutes, held-out numbers. Exits non-zero if a run failed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from mmtok.train.config import load_config


def launch(recipe: str, overrides: list[str], log: Path) -> subprocess.Popen:
    log.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "mmtok.train", recipe, *overrides, "train.progress=false"]
    return subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT)


def run_all(recipes: list[str], overrides: dict[str, list[str]]) -> dict[str, int]:
    procs = {r: launch(r, overrides[r], Path(load_config(r, overrides[r]).out_dir) / "train.log")
             for r in recipes}  # fmt: skip
    return {r: p.wait() for r, p in procs.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("recipes", nargs="+")
    p.add_argument("--minutes", type=float, required=True, help="training time per recipe")
    p.add_argument("--probe-seconds", type=float, default=30.0)
    p.add_argument("--set", action="append", default=[], metavar="key=value",
                   help="override for every recipe (repeatable)")  # fmt: skip
    args = p.parse_args(argv)
    budget = args.minutes * 60
    fixed = [*args.set, f"train.max_seconds={args.probe_seconds}", "train.steps=1000000",
             "train.plots=false", "data.eval_max=1", "train.ckpt_every=0"]  # fmt: skip
    probe = {r: [*fixed, f"train.out_dir={load_config(r).out_dir}_probe"] for r in args.recipes}
    codes = run_all(args.recipes, probe)
    steps = {}
    for r in args.recipes:
        out = Path(load_config(r, probe[r]).out_dir)
        if codes[r]:
            print(f"{r}: probe failed (exit {codes[r]}), see {out / 'train.log'}")
            continue
        done = json.loads((out / "summary.json").read_text())["steps"]
        steps[r] = max(100, int(done / args.probe_seconds * budget))
        shutil.rmtree(out)
    full = {r: [*args.set, f"train.steps={n}", f"train.max_seconds={budget * 1.1:.0f}"]
            for r, n in steps.items()}  # fmt: skip
    start = time.perf_counter()
    codes.update(run_all(list(full), full))
    for r in full:
        out = Path(load_config(r, full[r]).out_dir)
        summary = out / "summary.json"
        text = summary.read_text() if summary.is_file() and not codes[r] else f"exit {codes[r]}"
        print(f"{r}: planned {steps[r]} steps; {text}")
    print(f"wall {(time.perf_counter() - start) / 60:.1f} min for the full runs")
    return 1 if any(codes.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
