"""What the oneDNN CPU fast path (`focalmod.optimize`, `focalmod/layers/_cpu_fastpath.py`) buys: one model on the
plain path vs copies with the same weights switched once by ``focalmod.optimize(..., inference=True/False)``,
inference and training step timed in interleaved rounds in one process.

    python -m benchmarks.cpu_fastpath                          # focalnet_tiny_srf, batch 8, 224 px, 1 thread
    python -m benchmarks.cpu_fastpath --model focalnet_small_lrf --batch-size 2 --threads 2 --timer wall

Prints one line per measurement: the medians and speed-up = plain / fast (> 1: the fast path is faster).
"""
from __future__ import annotations

import argparse
import copy
from typing import Callable, Sequence

import torch

import focalmod
from focalmod.layers import _cpu_fastpath

from ._timing import TIMERS, interleave, median, set_threads


def _infer(model: torch.nn.Module, x: torch.Tensor) -> Callable[[], None]:
    model.eval()

    def run() -> None:
        with torch.inference_mode():
            model(x)

    return run


def _train(model: torch.nn.Module, x: torch.Tensor) -> Callable[[], None]:
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-4)

    def run() -> None:
        model(x).logsumexp(-1).mean().backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return run


def compare(model: torch.nn.Module, x: torch.Tensor, repeats: int, warmup: int, timer: str,
            ) -> dict[str, tuple[float, float]]:
    """{'inference' | 'train': (fast seconds, plain seconds)} as medians over interleaved rounds; `model` stays
    plain, the fast side is a copy switched by `focalmod.optimize`."""
    out = {}
    for what, make, inference in (("inference", _infer, True), ("train", _train, False)):
        fast = focalmod.optimize(copy.deepcopy(model), "cpu", inference=inference)
        times = interleave({"fast": make(fast, x), "plain": make(model, x)}, repeats, warmup, timer)
        out[what] = (median(times["fast"]), median(times["plain"]))
    return out


def main(argv: Sequence[str] | None = None) -> dict[str, tuple[float, float]]:
    p = argparse.ArgumentParser(prog="python -m benchmarks.cpu_fastpath", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="focalnet_tiny_srf", help="a focalmod.list_models() name")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--img-size", type=int, default=224)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--timer", choices=sorted(TIMERS), default="cpu",
                   help="cpu: process CPU time (ignores time descheduled on a shared machine; use 1 thread)")
    args = p.parse_args(argv)
    if not _cpu_fastpath.HAS_MKLDNN_FUSED:
        p.error("this torch build has no oneDNN fused CPU ops: there is no fast path to compare")
    threads = set_threads(args.threads)
    torch.manual_seed(0)
    model = focalmod.create_model(args.model)
    x = torch.randn(args.batch_size, 3, args.img_size, args.img_size)
    results = compare(model, x, args.repeats, args.warmup, args.timer)
    for what, (fast, plain) in results.items():
        print(f"{args.model} batch {args.batch_size} @{args.img_size}, {threads} thread(s), {args.timer} time, "
              f"{what}: fast {fast * 1e3:.0f} ms, plain {plain * 1e3:.0f} ms -> speed-up {plain / fast:.3f}",
              flush=True)
    return results


if __name__ == "__main__":
    main()
