"""Reusable timing helpers: interleaved repeats with warm-up, medians, and the environment a number came from.

On a shared CPU the wall time of one call drifts with the load of other processes. `interleave` runs the
candidates round-robin (A, B, A, B, ...), so drift hits every candidate alike, and the median over repeats drops
the calls that were preempted. `cpu` timing (process CPU time) is an alternative that ignores time spent
descheduled but counts OpenMP spin-waits.
"""
from __future__ import annotations

import os
import platform
import statistics
import time
from typing import Callable

import torch

TIMERS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}


def set_threads(threads: int | None) -> int:
    """Set torch's intra-op thread count (None: leave it) and return the count in use."""
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def time_call(fn: Callable[[], object], timer: str = "wall", sync: Callable[[], None] | None = None) -> float:
    """Seconds one call of `fn` takes (`sync` runs before reading the clock, e.g. `torch.cuda.synchronize`)."""
    clock = TIMERS[timer]
    start = clock()
    fn()
    if sync is not None:
        sync()
    return clock() - start


def interleave(
    fns: dict[str, Callable[[], object]],
    repeats: int = 5,
    warmup: int = 1,
    timer: str = "wall",
    sync: Callable[[], None] | None = None,
) -> dict[str, list[float]]:
    """Per-call seconds of each function, `repeats` rounds after `warmup` rounds, calls alternating by round.

    The order within a round alternates too (A, B then B, A), so neither candidate always runs right after the
    other's allocations.
    """
    if timer not in TIMERS:
        raise ValueError(f"timer must be one of {sorted(TIMERS)}, got {timer!r}")
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0, got repeats={repeats}, warmup={warmup}")
    names = list(fns)
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_idx in range(warmup + repeats):
        order = names if round_idx % 2 == 0 else names[::-1]
        for name in order:
            seconds = time_call(fns[name], timer, sync)
            if round_idx >= warmup:
                times[name].append(seconds)
    return times


def median(values: list[float]) -> float:
    return statistics.median(values)


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo (Linux), else `platform.processor()`."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: str = "cpu") -> dict[str, str | int]:
    """Versions and hardware to print next to any timing (threads as currently set in torch)."""
    env: dict[str, str | int] = {
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count() or 0,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "mkldnn": str(torch.backends.mkldnn.is_available()),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }
    try:
        import timm

        env["timm"] = timm.__version__
    except ImportError:  # timm is a core dependency; keep the helper usable without it
        env["timm"] = "not installed"
    if device.startswith("cuda") and torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(torch.device(device))
    try:
        env["loadavg_1m"] = f"{os.getloadavg()[0]:.2f}"
    except OSError:
        pass
    return env
