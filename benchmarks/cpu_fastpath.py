"""What the oneDNN CPU fast paths (`focalmod/layers/_cpu_fastpath.py`) buy: one model, fast path on vs forced
PLAIN, inference and training step timed in interleaved rounds in one process.

    python -m benchmarks.cpu_fastpath                          # focalnet_tiny_srf, batch 8, 224 px, 1 thread
    python -m benchmarks.cpu_fastpath --model focalnet_small_lrf --batch-size 2 --threads 2 --timer wall

Prints one line per measurement: the medians and speed-up = plain / fast (> 1: the fast path is faster).
"""
from __future__ import annotations

import argparse
import contextlib
from typing import Callable, Iterator, Sequence

import torch

import focalmod
from focalmod.layers import _cpu_fastpath

from ._timing import TIMERS, interleave, median, set_threads


@contextlib.contextmanager
def forced_plain(plain: bool) -> Iterator[None]:
    """Within the block, every focal modulation / FocalNet block call takes the PLAIN path when `plain`."""
    saved = _cpu_fastpath._HAS_MKLDNN_FUSED
    _cpu_fastpath._HAS_MKLDNN_FUSED = saved and not plain
    try:
        yield
    finally:
        _cpu_fastpath._HAS_MKLDNN_FUSED = saved


def compare(model: torch.nn.Module, x: torch.Tensor, repeats: int, warmup: int, timer: str,
            ) -> dict[str, tuple[float, float]]:
    """{'inference' | 'train': (fast seconds, plain seconds)} as medians over interleaved rounds."""
    opt = torch.optim.SGD(model.parameters(), lr=1e-4)

    def infer() -> None:
        model.eval()
        with torch.inference_mode():
            model(x)

    def train() -> None:
        model.train()
        model(x).logsumexp(-1).mean().backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    def under(plain: bool, fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            with forced_plain(plain):
                fn()
        return run

    out = {}
    for what, fn in (("inference", infer), ("train", train)):
        times = interleave({"fast": under(False, fn), "plain": under(True, fn)}, repeats, warmup, timer)
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
    if not _cpu_fastpath._HAS_MKLDNN_FUSED:
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
