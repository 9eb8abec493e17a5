"""Timing helpers of the benchmarks: thread count, medians, and the environment a number came from.

`time_call` and `interleave` (round-robin repeats with warm-up, wall or process CPU time) live in
`tasks.common.measure`, shared with the tasks' comparison tables, and are re-exported here.
"""
from __future__ import annotations

import os
import platform
import statistics
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from tasks.common.measure import TIMERS, interleave, time_call  # noqa: F401  (re-exported)


def set_threads(threads: int | None) -> int:
    """Set torch's intra-op thread count (None: leave it) and return the count in use."""
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    return torch.get_num_threads()


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


def inference_call(model: Callable[[torch.Tensor], object], x: torch.Tensor) -> Callable[[], object]:
    """One timed inference call: ``model(x)`` under `torch.inference_mode`."""

    def run() -> object:
        with torch.inference_mode():
            return model(x)

    return run


def train_step_call(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Callable[[], object]:
    """One timed training step: SGD (momentum .9), cross-entropy in fp32, gradients reset each call."""
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)

    def run() -> object:
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x).float(), y)
        loss.backward()
        optimizer.step()
        return loss

    return run
