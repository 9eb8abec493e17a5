"""Step time, interleaved timing and peak memory for task summaries, comparison tables and `benchmarks/`
(medians, warm-up excluded).

Peak memory is `torch.cuda.max_memory_allocated` on a GPU and the process's peak resident set size on CPU
(`resource.getrusage`, which cannot be reset: measure one model per process for a fair CPU comparison).
"""
from __future__ import annotations

import resource
import statistics
import sys
import time
from typing import Any, Callable

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback

__all__ = ["TIMERS", "StepTimer", "interleave", "interleaved_step_times", "peak_memory_mb", "reset_peak_memory",
           "time_call"]


def reset_peak_memory(device: torch.device | str | None = None) -> None:
    """Start a new GPU peak (no-op on CPU, where the process peak RSS is all there is)."""
    if device is not None and torch.device(device).type == "cuda" and torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mb(device: torch.device | str | None = None) -> tuple[float, str]:
    """`(MiB, what was measured)`: GPU allocator peak on CUDA devices, the process peak RSS otherwise."""
    if device is not None and torch.device(device).type == "cuda" and torch.cuda.is_available():
        return torch.cuda.max_memory_allocated(device) / 2**20, "torch.cuda.max_memory_allocated"
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return rss / (2**20 if sys.platform == "darwin" else 2**10), "peak RSS (resource.getrusage)"


class StepTimer(Callback):
    """Times every training step (forward, backward, optimiser; data loading excluded) and optionally prints
    `step 50/300  loss 0.412  0.53 s/step` every `print_every` steps. `median_seconds` skips `warmup` steps."""

    def __init__(self, warmup: int = 3, print_every: int = 0) -> None:
        self.warmup, self.print_every = warmup, print_every
        self.seconds: list[float] = []
        self._start = 0.0

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, idx: int) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           idx: int) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        self.seconds.append(time.perf_counter() - self._start)
        step = trainer.global_step
        if self.print_every and trainer.is_global_zero and step % self.print_every == 0:
            loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
            loss_text = f"  loss {float(loss):.4f}" if loss is not None else ""
            total = f"/{trainer.max_steps}" if trainer.max_steps and trainer.max_steps > 0 else ""
            print(f"step {step}{total}{loss_text}  {self.seconds[-1]:.2f} s/step", flush=True)

    @property
    def median_seconds(self) -> float:
        timed = self.seconds[self.warmup :] or self.seconds
        return statistics.median(timed) if timed else float("nan")


TIMERS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}


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

    On a shared machine the time of one call drifts with other processes' load; running the candidates
    round-robin makes the drift hit all of them alike, and the median over repeats drops preempted calls. The
    order within a round alternates too (A, B then B, A), so no candidate always runs right after another's
    allocations. `timer='cpu'` (process CPU time) ignores time spent descheduled but counts OpenMP spin-waits.
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


def interleaved_step_times(models: dict[str, torch.nn.Module], loss_fn: Callable[[torch.nn.Module], torch.Tensor],
                           repeats: int = 5, warmup: int = 1) -> dict[str, float]:
    """Median seconds of one training step (loss, backward, AdamW step) per model, the models taking turns in
    each round (`interleave`) so that load changes on a shared machine hit all of them alike."""

    def step(model: torch.nn.Module) -> Callable[[], None]:
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def run() -> None:
            model.train()
            loss_fn(model).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        return run

    cuda = any(next(m.parameters()).device.type == "cuda" for m in models.values())
    times = interleave({name: step(m) for name, m in models.items()}, repeats, warmup,
                       sync=torch.cuda.synchronize if cuda else None)
    return {name: statistics.median(t) for name, t in times.items()}
