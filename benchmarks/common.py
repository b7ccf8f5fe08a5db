"""Small shared helpers for the benchmarks: threads, timing, memory, table printing, verdicts.

Import from a benchmark script run as ``python3 benchmarks/<name>.py`` (the script's folder is
on ``sys.path``): ``from common import setup_threads, median_time, ...``.
"""

from __future__ import annotations

import os
import platform
import resource
import statistics
import time
from collections.abc import Callable, Sequence

import torch


def setup_threads(n: int = 2, seed: int = 0) -> None:
    """Pin torch intra-/inter-op threads to ``n`` and seed the global RNG."""
    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set (parallel work ran before)
        pass
    torch.manual_seed(seed)


def machine_line() -> str:
    """One line naming the host CPU, the torch build and the thread count."""
    cpu = platform.processor() or platform.machine()
    return f"torch {torch.__version__}, {torch.get_num_threads()} threads, {cpu}"


def _cpu_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot (Linux ``/proc/stat``)."""
    with open("/proc/stat") as f:
        user, nice, system, idle, iowait, irq, softirq = map(int, f.readline().split()[1:8])
    busy = user + nice + system + irq + softirq
    return busy, busy + idle + iowait


def wait_for_idle(max_busy: float = 0.15, samples: int = 3, timeout: float = 90.0) -> float:
    """On a shared machine, wait (up to ``timeout`` s) until other processes keep the CPUs
    under ``max_busy`` for ``samples`` consecutive 1 s samples. Returns the last busy fraction
    (a value over ``max_busy`` means the timings that follow were taken under contention)."""
    quiet, deadline = 0, time.monotonic() + timeout
    while True:
        b0, t0 = _cpu_ticks()
        time.sleep(1.0)
        b1, t1 = _cpu_ticks()
        busy = (b1 - b0) / max(t1 - t0, 1)
        quiet = quiet + 1 if busy < max_busy else 0
        if quiet >= samples or time.monotonic() >= deadline:
            return busy


def median_time(fn: Callable[[], object], warmup: int = 2, repeats: int = 5) -> float:
    """Median wall seconds of ``fn()`` over ``repeats`` calls, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _own_cpu_s() -> float:
    t = os.times()
    return t.user + t.system


def timed_with_load(fn: Callable[[], object], warmup: int, repeats: int) -> tuple[float, float]:
    """``median_time`` plus the CPU share other processes used while it ran (0..1)."""
    hz = os.sysconf("SC_CLK_TCK")
    b0, t0, own0 = *_cpu_ticks(), _own_cpu_s()
    seconds = median_time(fn, warmup, repeats)
    b1, t1, own1 = *_cpu_ticks(), _own_cpu_s()
    others = (b1 - b0) / hz - (own1 - own0)
    return seconds, max(0.0, others / max((t1 - t0) / hz, 1e-9))


def quiet_median_time(
    fn: Callable[[], object],
    warmup: int = 2,
    repeats: int = 5,
    *,
    max_busy: float = 0.15,
    tries: int = 3,
    idle_timeout: float = 90.0,
) -> tuple[float, float]:
    """For a shared machine: wait for idle CPUs, time ``fn`` (``median_time``) and retry up to
    ``tries`` times while other processes used over ``max_busy`` of the CPUs meanwhile.
    Returns (median seconds, others' CPU share) of the least contended try."""
    best = (float("inf"), float("inf"))
    for _ in range(tries):
        wait_for_idle(max_busy, timeout=idle_timeout)
        seconds, busy = timed_with_load(fn, warmup, repeats)
        best = min(best, (seconds, busy), key=lambda r: r[1])
        if busy < max_busy:
            break
    return best


def rss_mb() -> float:
    """Current resident set size of this process in MiB (Linux ``/proc/self/statm``)."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def maxrss_mb() -> float:
    """``ru_maxrss`` of this process in MiB (KiB on Linux). Caveat: Linux carries it over
    ``exec``, so a child started by a large parent reports at least the parent's RSS."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak_rss() -> bool:
    """Reset this process's peak RSS (VmHWM) to the current RSS; False where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """Peak RSS in MiB since start or ``reset_peak_rss``: VmHWM from ``/proc/self/status``
    (per address space, not inherited), else ``ru_maxrss``."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return maxrss_mb()


def fmt_rate(per_s: float) -> str:
    """Human rate: 1234567 -> '1.23M'."""
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if per_s >= div:
            return f"{per_s / div:.2f}{unit}"
    return f"{per_s:.1f}"


def verdict(ok: bool) -> str:
    """A target's outcome as the tables print it."""
    return "PASS" if ok else "FAIL"


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]], left: int = 1) -> None:
    """Print a plain-text table, columns padded to their widest cell; the first ``left``
    columns are left-aligned, the others right-aligned."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(r: Sequence[str]) -> str:
        pairs = enumerate(zip(r, widths, strict=True))
        parts = [c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in pairs]
        return "  ".join(parts).rstrip()

    print(line(cells[0]))
    print("  ".join("-" * w for w in widths))
    for r in cells[1:]:
        print(line(r))
