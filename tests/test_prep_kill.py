"""A SIGKILLed ``mmtok prep`` leaves no decoding workers behind (found by benchmarks/soak.py:
they used to sleep forever, each holding its memory)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mmtok.image.io import save_image

REPO = Path(__file__).resolve().parents[1]


def _children(pid: int) -> list[int]:
    kids = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return kids


def _alive(pid: int) -> bool:
    """Running (not gone, not a zombie waiting to be reaped)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_sigkilled_prep_leaves_no_workers(tmp_path, tiny_image_ckpt):
    g = torch.Generator().manual_seed(0)
    (tmp_path / "media").mkdir()
    for i in range(60):
        save_image(tmp_path / "media" / f"img{i:02d}.png", torch.rand(3, 64, 64, generator=g))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "mmtok", "prep", str(tmp_path / "media"), "-o", str(out),
           "--image-tokenizer", str(tiny_image_ckpt), "--workers", "2", "--shard-size", "1",
           "--batch-size", "1"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while not list(out.glob("shard-*")) and time.monotonic() < deadline:
            assert proc.poll() is None, "prep ended before its first shard"
            time.sleep(0.02)
        workers = _children(proc.pid)
        assert len(workers) == 2 and proc.poll() is None
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 5
        while any(map(_alive, workers)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(map(_alive, workers)), "decoding workers outlived the killed prep"
    finally:
        proc.kill()
        for pid in filter(_alive, workers):
            os.kill(pid, signal.SIGKILL)
