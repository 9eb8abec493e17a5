"""Speed of our FocalNet against timm's FocalNet of the same variant, same weights, same process.

    python -m benchmarks.focalnet_vs_timm                      # tiny/small/base SRF, batch 8 and 1, train, 2 layouts
    python -m benchmarks.focalnet_vs_timm --quick --models tiny_srf
    python -m benchmarks.focalnet_vs_timm --compile --threads 2 --out runs/bench/compiled
    python -m benchmarks.focalnet_vs_timm --targets --models tiny_srf --threads 1 --timer cpu   # issue 16's table
    python -m benchmarks.focalnet_vs_timm --targets --quick --img-size 64 --batch 2          # does it run (~min)
    python -m benchmarks.focalnet_vs_timm --targets --device cuda --batch 64                 # GPU: bf16, compile

For every (variant, layout, compile) it times inference at `--batch` and at batch 1 and one training step
(forward + backward + SGD step) at `--train-batch`, alternating ours and timm call by call so that load from other
processes hits both alike, and reports medians and the ratio ours/timm of throughput (> 1: ours is faster).
timm's weights are loaded into ours, and the logits are compared before timing. Writes `results.csv`,
`results.md`, `config.yaml` and `metrics.json` to `runs/bench/<timestamp>/` (or `--out`).

`--targets` instead measures the columns of issue 16's table side by side in one run - eager, training step,
compiled, bf16 (with top-1 agreement), activation bytes saved for backward and peak memory - against timm's FocalNet
and timm's ConvNeXt-T (equal GMACs), see `benchmarks/targets.py`; it writes `targets.md` / `targets.csv`.
"""

from __future__ import annotations

import argparse
import copy
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from tasks.common import TaskError, make_run_dir, run_main, save_config, write_metrics
from tasks.common.files import atomic_write, markdown_table, write_csv

from . import targets as perf_targets
from ._timing import TIMERS, environment, inference_call, interleave, median, set_threads, train_step_call

DEFAULT_MODELS = ("tiny_srf", "small_srf", "base_srf")
LAYOUTS = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}
MODES = ("infer", "infer_b1", "train")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


@dataclass
class Row:
    """One timed configuration: median throughputs (img/s) and ms per call, ours/timm throughput ratio of the medians
    and of the fastest calls (`ratio_min`: on a loaded machine the minimum is the least disturbed estimate)."""

    model: str
    mode: str
    batch: int
    layout: str
    compiled: bool
    ours_img_s: float
    timm_img_s: float
    ratio: float
    ours_ms: float
    timm_ms: float
    ratio_min: float
    repeats: int


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.focalnet_vs_timm",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument(
        "--models",
        default=",".join(DEFAULT_MODELS),
        help="comma-separated variants without 'focalnet_' (default: tiny_srf,small_srf,base_srf)",
    )
    p.add_argument("--batch", type=int, default=8, help="inference batch size; batch 1 is timed too (default 8)")
    p.add_argument("--train-batch", type=int, default=None, help="training-step batch size (default: --batch)")
    p.add_argument("--img-size", type=int, default=224, help="square input side (default 224)")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's current)")
    p.add_argument(
        "--layouts",
        default="nchw,channels_last",
        help="comma-separated input/model memory layouts: nchw, channels_last (default: both)",
    )
    p.add_argument(
        "--modes", default=",".join(MODES), help="comma-separated: infer (at --batch), infer_b1, train (default: all)"
    )
    p.add_argument("--compile", action="store_true", help="also time torch.compile'd models (slow to compile)")
    p.add_argument(
        "--fast-path",
        action="store_true",
        help="time ours switched once by focalmod.optimize (oneDNN fast modules in the inference or training mode "
        "of each timed mode; fp32 CPU only) instead of the plain default path",
    )
    p.add_argument("--quick", action="store_true", help="fewer repeats (3, warm-up 1) for a fast look")
    p.add_argument("--repeats", type=int, default=None, help="timed calls per model and mode (default 7, quick 3)")
    p.add_argument("--warmup", type=int, default=None, help="untimed calls first (default 2, quick 1)")
    p.add_argument(
        "--timer",
        choices=sorted(TIMERS),
        default="wall",
        help="wall clock (default) or process CPU time (robust to preemption on a shared CPU)",
    )
    p.add_argument(
        "--dtype", choices=sorted(DTYPES), default="float32", help="parameter and input dtype (default float32)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed for the shared weights and inputs (default 0)")
    p.add_argument("--targets", action="store_true",
                   help="measure issue 16's target ratios (eager, train, compiled, bf16 + top-1 agreement, activation "
                   "bytes, peak memory) against timm's FocalNet and ConvNeXt-T, side by side (benchmarks/targets.py)")
    p.add_argument("--device", default="cpu", help="--targets: cpu or cuda (default cpu)")
    p.add_argument("--compile-layout", choices=sorted(LAYOUTS), default="channels_last",
                   help="--targets: memory layout of the compiled and bf16 candidates (default channels_last)")
    p.add_argument("--no-compile", action="store_true", help="--targets: skip the compiled candidates")
    p.add_argument("--no-bf16", action="store_true",
                   help="--targets: skip the bf16 candidates (slow where bf16 is emulated, e.g. AVX2 CPUs)")
    p.add_argument("--agree-samples", type=int, default=None,
                   help="--targets: fixed inputs for the bf16 top-1 agreement (default 200, quick 16)")
    p.add_argument("--out", type=Path, default=None, help="run directory (default: runs/bench/<timestamp>)")
    return p


def _split(value: str, allowed: Sequence[str] | None, option: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        raise TaskError(f"{option}: give at least one value")
    bad = [v for v in items if allowed is not None and v not in allowed]
    if bad:
        raise TaskError(f"{option}: unknown value(s) {bad}; expected some of {list(allowed)}")
    return items


def timm_to_ours(timm_state: dict[str, torch.Tensor], ours: nn.Module) -> None:
    """Load a timm FocalNet state dict into our model (`focalmod.load_checkpoint` when it is available)."""
    try:
        from focalmod.checkpoints import load_checkpoint
    except ImportError:
        load_checkpoint = None
    if load_checkpoint is not None:
        load_checkpoint(ours, timm_state, strict=True)
        return
    target = ours.state_dict()  # fallback: 1x1-conv weights -> Linear weights, norm*_post -> norm*
    converted = {}
    for key, value in timm_state.items():
        key = key.replace("norm1_post", "norm1").replace("norm2_post", "norm2")
        converted[key] = value.reshape(target[key].shape) if key in target else value
    ours.load_state_dict(converted, strict=True)


def build_pair(variant: str, dtype: torch.dtype, seed: int) -> tuple[nn.Module, nn.Module]:
    """(ours, timm) with identical weights; drop path off in both so the training step does the same work."""
    import timm

    import focalmod

    torch.manual_seed(seed)
    try:
        reference = timm.create_model(f"focalnet_{variant}", drop_path_rate=0.0)
        ours = focalmod.create_model(f"focalnet_{variant}", drop_path_rate=0.0)
    except (RuntimeError, ValueError) as err:  # unknown name in either registry
        raise TaskError(f"--models: cannot build focalnet_{variant}: {err}") from None
    timm_to_ours(reference.state_dict(), ours)
    return ours.to(dtype), reference.to(dtype)


def time_pair(
    ours: nn.Module,
    reference: nn.Module,
    mode: str,
    batch: int,
    args: argparse.Namespace,
    layout: str,
    compiled: bool,
    variant: str,
) -> Row:
    """Time one mode for both models with interleaved calls; returns the row with medians and the ratio."""
    dtype = DTYPES[args.dtype]
    x = torch.randn(batch, 3, args.img_size, args.img_size, dtype=dtype).contiguous(memory_format=LAYOUTS[layout])
    fns = {}
    for name, model in (("ours", ours), ("timm", reference)):
        model.train(mode == "train")
        if name == "ours" and getattr(args, "fast_path", False) and not compiled:
            import focalmod

            model = focalmod.optimize(copy.deepcopy(model), "cpu", inference=mode != "train")
        runnable = torch.compile(model) if compiled else model
        if mode == "train":
            y = torch.randint(0, model.num_classes, (batch,))
            fns[name] = train_step_call(runnable, x, y)
        else:
            fns[name] = inference_call(runnable, x)
    times = interleave(fns, repeats=args.repeats, warmup=args.warmup + int(compiled), timer=args.timer)
    ours_s, timm_s = median(times["ours"]), median(times["timm"])
    return Row(
        model=variant,
        mode=mode,
        batch=batch,
        layout=layout,
        compiled=compiled,
        ours_img_s=batch / ours_s,
        timm_img_s=batch / timm_s,
        ratio=timm_s / ours_s,
        ours_ms=ours_s * 1e3,
        timm_ms=timm_s * 1e3,
        ratio_min=min(times["timm"]) / min(times["ours"]),
        repeats=args.repeats,
    )


def logits_max_abs_diff(ours: nn.Module, reference: nn.Module, img_size: int, dtype: torch.dtype) -> float:
    x = torch.randn(2, 3, img_size, img_size, dtype=dtype)
    ours.eval(), reference.eval()
    with torch.inference_mode():
        return (ours(x).float() - reference(x).float()).abs().max().item()


def markdown(rows: list[Row], header: dict[str, object]) -> str:
    lines = ["# Our FocalNet vs timm's FocalNet (same weights)", "", *(f"- {k}: {v}" for k, v in header.items()), "",
             "ratio = ours / timm throughput (> 1: ours faster) from the medians over interleaved repeats; "
             "min ratio from the fastest call of each.", ""]
    body = [[r.model, r.mode, r.batch, r.layout, "on" if r.compiled else "off", f"{r.ours_img_s:.2f}",
             f"{r.timm_img_s:.2f}", f"{r.ratio:.2f}", f"{r.ratio_min:.2f}"] for r in rows]
    table = markdown_table(["model", "mode", "batch", "layout", "compile", "ours img/s", "timm img/s", "ratio",
                            "min ratio"], body)
    return "\n".join(lines) + "\n" + table + "\n"


def resolve(args: argparse.Namespace) -> argparse.Namespace:
    if args.repeats is None:
        args.repeats = 3 if args.quick else 7
    if args.warmup is None:
        args.warmup = 1 if args.quick else 2
    if args.repeats < 1 or args.warmup < 0:
        raise TaskError(f"--repeats must be >= 1 and --warmup >= 0, got {args.repeats} and {args.warmup}")
    for name in ("batch", "img_size"):
        if getattr(args, name) < 1:
            raise TaskError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.img_size < 32:
        raise TaskError(f"--img-size must be >= 32 (stem stride 4 and three stride-2 stages), got {args.img_size}")
    args.train_batch = args.train_batch or args.batch
    args.model_list = _split(args.models, None, "--models")
    args.layout_list = _split(args.layouts, list(LAYOUTS), "--layouts")
    args.mode_list = _split(args.modes, list(MODES), "--modes")
    if args.agree_samples is None:
        args.agree_samples = 16 if args.quick else 200
    if args.agree_samples < 1:
        raise TaskError(f"--agree-samples must be >= 1, got {args.agree_samples}")
    if args.device not in ("cpu", "cuda") and not args.device.startswith("cuda:"):
        raise TaskError(f"--device must be cpu or cuda[:N], got {args.device!r}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise TaskError(f"--device {args.device}: CUDA is not available in this torch build / machine")
    if args.threads is not None and args.threads < 1:
        raise TaskError(f"--threads must be >= 1, got {args.threads}")
    return args


def main(argv: Sequence[str] | None = None) -> list[Row]:
    args = resolve(build_parser().parse_args(argv))
    set_threads(args.threads)
    run_dir = make_run_dir("bench", args.out)
    config = {k: v for k, v in vars(args).items() if not k.endswith("_list")}
    save_config(run_dir, config)
    dtype = DTYPES[args.dtype]
    ours = "focalmod.optimize fast path" if args.fast_path or args.targets else "plain path"
    header: dict[str, object] = {**environment(), "dtype": args.dtype, "img_size": args.img_size, "timer": args.timer,
                                 "ours": ours}
    print("\n".join(f"{k}: {v}" for k, v in header.items()), flush=True)
    if args.targets:
        return run_targets(args, run_dir, header)

    rows: list[Row] = []
    parity: dict[str, float] = {}
    compile_options = [False, True] if args.compile else [False]
    start = time.perf_counter()
    for variant in args.model_list:
        ours, reference = build_pair(variant, dtype, args.seed)
        parity[variant] = logits_max_abs_diff(ours, reference, args.img_size, dtype)
        print(f"focalnet_{variant}: max |logits ours - timm| = {parity[variant]:.2e}", flush=True)
        for layout in args.layout_list:
            ours.to(memory_format=LAYOUTS[layout]), reference.to(memory_format=LAYOUTS[layout])
            for compiled in compile_options:
                for mode in args.mode_list:
                    batch = {"infer": args.batch, "infer_b1": 1, "train": args.train_batch}[mode]
                    if compiled:
                        torch._dynamo.reset()
                    row = time_pair(ours, reference, mode, batch, args, layout, compiled, variant)
                    rows.append(row)
                    print(
                        f"{variant:>10} {mode:>8} b{batch:<3} {layout:>13} compile={'on' if compiled else 'off'}: "
                        f"ours {row.ours_img_s:8.2f} img/s  timm {row.timm_img_s:8.2f} img/s  ratio {row.ratio:.3f} "
                        f"(min {row.ratio_min:.3f})",
                        flush=True,
                    )
        del ours, reference
    header["max_abs_logit_diff"] = ", ".join(f"{k} {v:.1e}" for k, v in parity.items())
    header["repeats x warmup"] = f"{args.repeats} x {args.warmup}"
    write_csv(run_dir / "results.csv", [asdict(r) for r in rows], list(Row.__dataclass_fields__))
    table = markdown(rows, header)
    atomic_write(run_dir / "results.md", table)
    ratios = {
        f"{r.model}/{r.mode}/b{r.batch}/{r.layout}/{'compiled' if r.compiled else 'eager'}": r.ratio for r in rows
    }
    write_metrics(run_dir, {"environment": header, "ratios": ratios, "rows": [asdict(r) for r in rows]})
    print("\n" + table)
    worst = min(rows, key=lambda r: r.ratio)
    print(
        f"done in {time.perf_counter() - start:.0f} s: {len(rows)} rows, lowest ratio {worst.ratio:.3f} "
        f"({worst.model} {worst.mode} {worst.layout}); results in {run_dir}"
    )
    return rows


def run_targets(args: argparse.Namespace, run_dir: Path, header: dict[str, object]) -> list:
    """`--targets`: one `benchmarks.targets.TargetRow` per variant; writes targets.md, targets.csv, metrics.json."""
    header.update(device=args.device, batch=args.batch,
                  train_batch=args.train_batch, layouts=args.layouts, compile_layout=args.compile_layout,
                  agree_samples=args.agree_samples, repeats_x_warmup=f"{args.repeats} x {args.warmup}")
    start = time.perf_counter()
    rows = []
    for variant in args.model_list:
        try:
            models = perf_targets.build_models(variant, args.seed)
        except (RuntimeError, ValueError) as err:
            raise TaskError(f"--models: cannot build focalnet_{variant}: {err}") from None
        rows.append(perf_targets.measure_variant(*models, args, variant))
        print(perf_targets.markdown(rows[-1:]), flush=True)
    header["runtime_min"] = f"{(time.perf_counter() - start) / 60:.1f}"
    text = "\n".join(["# Issue 16 targets: our FocalNet vs timm's FocalNet and ConvNeXt-T, one run", "",
                      *(f"- {k}: {v}" for k, v in header.items()), "", perf_targets.markdown(rows)])
    atomic_write(run_dir / "targets.md", text)
    flat = [{k: v for k, v in asdict(r).items() if not isinstance(v, dict)} for r in rows]
    write_csv(run_dir / "targets.csv", flat, list(flat[0]))
    write_metrics(run_dir, {"environment": header, "targets": [asdict(r) for r in rows]})
    print(f"results in {run_dir}")
    return rows


if __name__ == "__main__":
    run_main(main)
