"""Helpers to run a function on 2 CPU processes with the gloo backend (torch.multiprocessing)."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(rank: int, world: int, port: int, fn: Callable, args: tuple) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        fn(rank, world, *args)
    finally:
        dist.destroy_process_group()


def run_distributed(fn: Callable, world: int, *args: object) -> None:
    """Run ``fn(rank, world, *args)`` in ``world`` gloo processes; raises if any rank fails."""
    mp.spawn(_entry, args=(world, _free_port(), fn, args), nprocs=world, join=True)
