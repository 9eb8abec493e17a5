"""`python -m benchmarks.report`: cross-architecture benchmark report (CSV + Markdown + PNG plots).

Measures the models (params, GMACs, throughput, latency, training step, peak memory), runs the scaling sweeps
(token mixers and whole models in 1D/2D/3D) and optionally the equal-budget accuracy runs, then writes
``benchmark.csv`` (timm's columns first), ``scaling.csv``, ``scaling_slopes.csv``, ``accuracy.csv``,
``report.md`` and plots into the run directory; ``--publish`` copies them to ``benchmarks/results/<device>/``.
"""
from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import torch

from focalmod.interpret import METRICS
from tasks.common import TaskError, make_run_dir, run_main, save_config
from tasks.common.files import atomic_write, markdown_table, write_csv

from . import accuracy, measure, plots, scaling
from ._timing import cpu_model, set_threads
from .flops import CONVENTION
from .progress import Progress

RESULTS_DIR = measure.REPO_ROOT / "benchmarks" / "results"
REFERENCE_MODEL = "focalnet_tiny_srf"  # timm's FocalNet: the ratio column is relative to it when measured

OURS = [f"focalmod_focalnet_{size}_{rf}" for size in ("tiny", "small", "base") for rf in ("srf", "lrf")] + [
    f"focalmod_hornet_{size}_7x7" for size in ("tiny", "small", "base")
]
TIMM = ["focalnet_tiny_srf", "swin_tiny_patch4_window7_224", "convnext_tiny", "volo_d1_224", "volo_d2_224",
        "vit_small_patch16_224", "vit_base_patch16_224", "resnet50"]
QUICK_MODELS = ["focalmod_focalnet_tiny_srf", "focalnet_tiny_srf", "focalmod_hornet_tiny_7x7", "convnext_tiny",
                "vit_small_patch16_224"]

# (sides per spatial dims for the primitives, model names per dims, sides per dims for the models). Primitive
# sides are whole windows (49 tokens in 1D, 7 per side in 2D/3D): no padding skews the window-attention curve;
# 56/28/14 are the stage resolutions of a 224 image in FocalNet/Swin/ConvNeXt.
FULL_SWEEP = (
    {1: [196, 784, 3136, 12544, 50176], 2: [14, 28, 56, 112, 224], 3: [7, 14, 28, 42, 56]},
    {2: ["focalmod_focalnet_tiny_srf", "focalmod_hornet_tiny_7x7", "convnext_tiny", "swin_tiny_patch4_window7_224",
         "vit_small_patch16_224", "volo_d1_224"],
     1: ["focalmod_focalnet1d_tiny", "focalmod_hornet1d_tiny_7x7"],
     3: ["focalmod_focalnet3d_tiny", "focalmod_hornet3d_tiny_7x7"]},
    {2: [112, 224, 320, 448, 640, 896, 1024], 1: [256, 1024, 4096, 16384], 3: [32, 64, 96, 128]},
)
QUICK_SWEEP = (
    {1: [196, 784, 3136], 2: [14, 28, 56], 3: [7, 14, 28]},
    {2: ["focalmod_focalnet_tiny_srf", "vit_small_patch16_224"], 1: ["focalmod_focalnet1d_tiny"],
     3: ["focalmod_focalnet3d_tiny"]},
    {2: [112, 224, 320], 1: [512, 2048, 8192], 3: [32, 64, 96]},
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.report",
        description="Benchmark focalmod and timm models: params, GMACs, throughput, latency, training step, peak "
        "memory, scaling sweeps and (optionally) accuracy at equal budget; writes CSV, Markdown and PNG plots.",
    )
    p.add_argument("--quick", action="store_true",
                   help="small model list, batch 2, 1 warm-up + 3 repeats, small sweeps, no accuracy runs (minutes "
                        "on 2 CPU cores); explicit options still override")
    p.add_argument("--models", nargs="+", default=None,
                   help="model names (timm names, or focalmod_<name> for ours; commas allowed); default: FocalNet "
                        "T/S/B srf/lrf + HorNet T/S/B (ours) and timm's focalnet/swin/convnext/volo/vit/resnet50")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda if available, else cpu)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="batch N for throughput, training step and memory (default 256 on GPU, 16 on CPU, 2 quick)")
    p.add_argument("--img-size", type=int, default=224, help="side of 2D inputs for the model table (default 224)")
    p.add_argument("--dtype", choices=sorted(measure.DTYPES), default=None,
                   help="with --amp: the autocast dtype (default bfloat16 on CPU, float16 on GPU); without --amp: "
                        "the dtype of weights and inputs (default float32)")
    p.add_argument("--amp", action="store_true", help="mixed precision via torch.autocast (weights stay float32)")
    p.add_argument("--channels-last", action="store_true", help="channels-last memory format for model and input")
    p.add_argument("--compile", action="store_true", help="torch.compile each model (not used for the GMAC count)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    p.add_argument("--warmup", type=int, default=None, help="untimed calls before timing (default 3, quick 1)")
    p.add_argument("--repeats", type=int, default=None,
                   help="timed calls; the median is reported (default 10, quick 3)")
    p.add_argument("--timer", choices=["wall", "cpu"], default="wall",
                   help="wall clock (default), or process CPU time (CPU only: ignores time descheduled by other "
                        "processes on a shared machine; use with --threads 1)")
    p.add_argument("--no-train", action="store_true", help="skip the training-step measurement")
    p.add_argument("--no-memory", action="store_true", help="skip peak memory (on CPU: the child process per model)")
    p.add_argument("--no-sweep", action="store_true", help="skip the scaling sweeps")
    p.add_argument("--time-limit", type=float, default=None,
                   help="seconds allowed per sweep config; slower (or predicted slower) sizes are marked timeout "
                        "(default 120, quick 10)")
    p.add_argument("--accuracy", action="store_true", help="run the equal-budget accuracy table (off in --quick "
                   "unless given; on by default otherwise)")
    p.add_argument("--no-accuracy", action="store_true", help="skip the accuracy table in a full run")
    p.add_argument("--accuracy-tasks", nargs="+", default=list(accuracy.DEFAULT_TASKS), choices=list(accuracy.TASKS),
                   help=f"tasks for the accuracy table (default: {' '.join(accuracy.DEFAULT_TASKS)}; 'shapes', "
                        "Mask R-CNN with four backbones, is opt-in: ~45 min on a CPU)")
    p.add_argument("--accuracy-budget", type=int, default=None,
                   help="training budget of every accuracy run, in each task's unit (epochs for digits/sounds, "
                        "optimiser steps for volumes); default per task (quick: 1 epoch / 20 steps)")
    p.add_argument("--accuracy-timeout", type=float, default=1800.0, help="seconds allowed per accuracy run")
    p.add_argument("--out", type=Path, default=None, help="output directory (default: runs/bench/<timestamp>)")
    p.add_argument("--resume", type=Path, default=None, metavar="RUN_DIR",
                   help="continue a stopped report run in RUN_DIR: repeat its command with --resume; measurements "
                        "recorded in RUN_DIR/progress.jsonl with the same settings are reused, the rest measured")
    p.add_argument("--targets", nargs="*", default=None, metavar="VARIANT",
                   help="also measure issue 16's performance targets for these FocalNet variants (default with no "
                        "value: tiny_srf) side by side with timm's FocalNet and ConvNeXt-T (`python -m "
                        "benchmarks.focalnet_vs_timm --targets`, same device/batch/threads/timer/repeats)")
    p.add_argument("--publish", action="store_true",
                   help="also copy report.md, the CSVs and the plots to benchmarks/results/<device>/ (committed)")
    return p


def resolve_args(args: argparse.Namespace) -> tuple[measure.Settings, dict[str, Any]]:
    """Fill the defaults that depend on --quick and the device; return the measurement settings and run plan."""
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise TaskError(f"--device {device}: CUDA is not available on this machine")
    if device != "cpu" and not device.startswith("cuda"):
        raise TaskError(f"--device must be cpu, cuda or cuda:N, got {device!r}")
    gpu = device.startswith("cuda")
    q = args.quick
    dtype = args.dtype or (("float16" if gpu else "bfloat16") if args.amp else "float32")
    if args.amp and dtype == "float32":
        raise TaskError("--amp needs --dtype bfloat16 or float16")
    batch = args.batch_size if args.batch_size is not None else (2 if q else 256 if gpu else 16)
    try:
        s = measure.Settings(
            device=device, dtype=dtype, amp=args.amp, channels_last=args.channels_last, compile=args.compile,
            threads=args.threads, batch_size=batch, img_size=args.img_size,
            warmup=args.warmup if args.warmup is not None else (1 if q else 3),
            repeats=args.repeats if args.repeats is not None else (3 if q else 10),
            train=not args.no_train, memory=not args.no_memory, timer=args.timer,
        )
    except ValueError as err:
        raise TaskError(str(err)) from None
    models = [m for item in (args.models or (QUICK_MODELS if q else OURS + TIMM)) for m in item.split(",") if m]
    plan = dict(
        models=models,
        sweep=None if args.no_sweep else (QUICK_SWEEP if q else FULL_SWEEP),
        time_limit=args.time_limit if args.time_limit is not None else (10.0 if q else 120.0),
        accuracy=args.accuracy or (not q and not args.no_accuracy),
    )
    return s, plan


# ---------------------------------------------------------------------------------------------------- header


def device_slug(s: measure.Settings) -> str:
    """'cpu', or the GPU name as a folder name (e.g. 'nvidia-h100-80gb-hbm3')."""
    if not s.is_cuda:
        return "cpu"
    return re.sub(r"[^a-z0-9]+", "-", torch.cuda.get_device_name(s.torch_device).lower()).strip("-")


def _git_rev() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10,
                             cwd=measure.REPO_ROOT).stdout.strip()
        return rev or "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def environment(s: measure.Settings) -> dict[str, str]:
    """Hardware, library versions and settings for the report header."""
    import fvcore  # noqa: F401
    import timm

    import focalmod

    env = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "cpu": f"{cpu_model()} ({os.cpu_count()} logical cores visible)",
        "device": s.device,
        "gpu": (f"{torch.cuda.get_device_name(s.torch_device)}, CUDA {torch.version.cuda}, "
                f"{torch.cuda.get_device_properties(s.torch_device).total_memory / 2**30:.0f} GiB") if s.is_cuda
        else "none",
        "os": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "timm": timm.__version__,
        "focalmod": f"{focalmod.__version__} (git {_git_rev()})",
        "fvcore": _version("fvcore"),
        "threads": str(torch.get_num_threads()),
        "load average": _loadavg(),
        "precision / layout / compile": s.tag(),
        "batch size": f"{s.batch_size} (throughput, training step, memory); 1 (latency, sweeps)",
        "input": f"{s.img_size}x{s.img_size} for 2D models",
        "timing": f"median of {s.repeats} calls after {s.warmup} warm-up calls, "
        + ("wall clock" if s.timer == "wall" else "process CPU time (time descheduled by other processes excluded)")
        + (", torch.cuda.synchronize around each" if s.is_cuda else ""),
        "peak memory": "torch.cuda.max_memory_allocated (weights included)" if s.is_cuda
        else "peak RSS (VmHWM) of a child process per model: Python + torch runtime + weights + activations",
    }
    return env


def _loadavg() -> str:
    """1/5/15-minute load averages of the machine (other processes' load; Unix only)."""
    try:
        return " / ".join(f"{v:.2f}" for v in os.getloadavg()) + " (1 / 5 / 15 min)"
    except (OSError, AttributeError):
        return "unknown"


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "not installed"


# ---------------------------------------------------------------------------------------------------- output


def _fmt(v: Any, digits: int = 2) -> str:
    if v is None or v == "":
        return "–"
    if isinstance(v, float):
        if v != v:
            return "–"
        if abs(v) >= 1e5:
            return f"{v:.3g}"
        return f"{v:.{min(digits, 1)}f}" if abs(v) >= 100 else f"{v:.{digits}f}"
    return str(v)


def _small(v: Any) -> Any:
    """Keep 3 significant digits of values below 1 (GMACs of tiny inputs, element-wise G-mul)."""
    return f"{v:.3g}" if isinstance(v, float) and abs(v) < 1 else v


def model_table(rows: list[dict[str, Any]], s: measure.Settings) -> str:
    ref = next((r for r in rows if r["model"] == REFERENCE_MODEL and r.get("infer_samples_per_sec")), None)
    n = s.batch_size
    headers = ["model", "source", "res", "params (M)", "GMACs", "elem. G-mul", f"img/s @{n}", f"ms/step @{n}",
               "latency ms @1", f"train img/s @{n}", f"peak MiB infer @{n}", f"peak MiB train @{n}",
               f"img/s vs timm {REFERENCE_MODEL}", "status"]
    body = []
    for r in rows:
        ratio = r["infer_samples_per_sec"] / ref["infer_samples_per_sec"] if ref and r.get("infer_samples_per_sec") \
            else None
        body.append([r["model"], r.get("source"), r.get("infer_img_size"), r.get("param_count"),
                     _small(r.get("infer_gmacs")), _small(r.get("infer_elementwise_gmuls")),
                     r.get("infer_samples_per_sec"), r.get("infer_step_time"), r.get("infer_latency_ms"),
                     r.get("train_samples_per_sec"), r.get("infer_peak_mem_mib"), r.get("train_peak_mem_mib"),
                     ratio, r.get("status")])
    return markdown_table(headers, body, cell=_fmt)


def sweep_table(rows: list[dict[str, Any]], kind: str) -> str:
    """Series x sizes, each cell the time in ms or the failure mark."""
    rows = [r for r in rows if r["kind"] == kind]
    parts = []
    for d in sorted({r["spatial_dims"] for r in rows}):
        sub = [r for r in rows if r["spatial_dims"] == d]
        sizes = list(dict.fromkeys(r["size"] for r in sub))
        unit = {1: "L", 2: "side", 3: "side"}[d]
        body = []
        for name in dict.fromkeys(r["name"] for r in sub):
            cells = {r["size"]: r for r in sub if r["name"] == name}
            body.append([name] + [_cell(cells.get(size)) for size in sizes])
        table = markdown_table([f"{kind} \\ {unit}"] + sizes, body, cell=_fmt)
        parts.append(f"**{d}D** (ms per forward, batch 1)\n\n{table}")
    return "\n\n".join(parts)


def _cell(r: dict[str, Any] | None) -> str:
    if r is None:
        return ""
    if r.get("status") == "ok":
        return _fmt(r.get("time_ms"), 3 if r["time_ms"] < 10 else 1)
    status = str(r.get("status", ""))
    return status.split(":")[0].split(" (")[0].upper() if status else "–"


def _resumed_text(plan: dict[str, Any]) -> str:
    if not plan.get("reused"):
        return ""
    took = plan.get("reused_seconds")
    cost = f", which took {took / 60:.1f} min when measured" if took is not None else ""
    return (f" in this invocation; {plan['reused']} measurements reused from progress.jsonl{cost}, taken by an "
            "earlier invocation: the date, git commit and load averages above are this invocation's")


def interpretability_section(acc_rows: list[dict[str, Any]]) -> list[str]:
    """Markdown lines: per task, the explanation scores of each model's accuracy run (method x metric)."""
    rows = accuracy.interpretability_rows(acc_rows)
    if not rows:
        return []
    keys = list(METRICS)
    lines = ["## Interpretability", "",
             "Explanations of the accuracy runs' test examples (the task's `--explain` default), scored by "
             "`focalmod.interpret`: the top 10 % of each map is kept (masked-in) or removed (masked-out), removed "
             "positions take 0. Fid-In, FF, AI/AD/AG (SpeechBrain / L-MAC definitions), sparseness (Gini) and "
             "complexity (entropy) as in quantus, deletion / insertion AUC (RISE). Arrows: the better direction. "
             "`random` is the floor.", ""]
    for task in dict.fromkeys(r["task"] for r in rows):
        body = [[r["model"], r["method"], *(r[k] for k in keys)] for r in rows if r["task"] == task]
        header = ["model", "method", *(f"{k} {'↑' if METRICS[k] else '↓'}" for k in keys)]
        lines += [f"### {task}", "", markdown_table(header, body, cell=_fmt), ""]
    return lines


def write_report(out: Path, env: dict[str, str], s: measure.Settings, plan: dict[str, Any],
                 bench_rows: list[dict[str, Any]], sweep_rows: list[dict[str, Any]],
                 slope_rows: list[dict[str, Any]], acc_rows: list[dict[str, Any]] | None,
                 images: dict[str, Path | None], runtime_s: float, targets_md: str | None = None) -> Path:
    """report.md: header (hardware, versions, settings), model table, sweeps with slopes, accuracy, plots."""
    lines = [f"# focalmod benchmark report ({env['device']}, {s.tag()})", ""]
    lines += [f"- **{k}**: {v}" for k, v in env.items()]
    lines += [
        f"- **FLOP convention**: {CONVENTION}",
        f"- **sweeps**: per-config time limit {plan['time_limit']:.0f} s; primitives at width 64 (heads of 32 "
        "channels; focal levels 2; gnConv order 3; windows 49 / 7x7 / 7x7x7 in 1D/2D/3D)",
        f"- **command**: `{' '.join(['python -m benchmarks.report', *plan.get('argv', [])])}`"
        f" (total runtime {runtime_s / 60:.1f} min{_resumed_text(plan)}; load average at the end {_loadavg()})",
        "- Other processes share the machine (see the load averages, cores visible above); compare ratios within "
        "one report, not absolute numbers across reports.",
        "",
        "## Models",
        "",
        model_table(bench_rows, s),
        "",
        "Columns: timm's (`benchmark.csv`: model, infer_img_size, infer_samples_per_sec, infer_step_time [ms], "
        "infer_batch_size, param_count [M], infer_gmacs) plus element-wise multiplies, batch-1 latency, training "
        "step (SGD, cross-entropy) and peak memory.",
        "",
    ]
    if images.get("throughput"):
        lines += [f"![throughput]({images['throughput'].name})", ""]
    if targets_md is not None:
        lines += ["## Performance targets (issue 16)", "",
                  "Ratios measured side by side in one run by `python -m benchmarks.focalnet_vs_timm --targets` "
                  "(its settings in `targets/targets.md`); > 1 faster for speed ratios, < 1 smaller for memory.", "",
                  targets_md, ""]
    if sweep_rows:
        slope_body = [[r["kind"], r["name"], f"{r['spatial_dims']}D", r["slope_time"], r["slope_gmacs"], r["points"],
                       r["tokens_range"], r["stopped"]] for r in slope_rows]
        lines += [
            "## Scaling",
            "",
            f"Fitted log-log slopes against tokens over the {scaling.SLOPE_POINTS} largest completed sizes "
            "(global attention tends to 2, linear-cost mixers to 1; small sizes are overhead-bound and flatten "
            "the time slope).",
            "",
            markdown_table(["kind", "name", "dims", "slope time", "slope GMACs", "points", "tokens", "stopped"],
                           slope_body, cell=_fmt),
            "",
            "### Token mixers alone",
            "",
            sweep_table(sweep_rows, "primitive"),
            "",
        ]
        for key in ("primitives", "primitive_memory"):
            if images.get(key):
                lines += [f"![{key.replace('_', ' ')}]({images[key].name})", ""]
        lines += ["### Whole models", "", sweep_table(sweep_rows, "model"), ""]
        for key in ("models", "model_memory"):
            if images.get(key):
                lines += [f"![{key.replace('_', ' ')}]({images[key].name})", ""]
        lines += ["Marks: OOM = out of memory; TIMEOUT = first call (or the extrapolated time) above the limit; "
                  "SKIPPED = larger than a size that failed; ERROR = the model rejects that size.", ""]
    lines += ["## Accuracy at equal budget", ""]
    if acc_rows is None:
        lines += ["Not run (pass `--accuracy`).", ""]
    else:
        datasets = {r["task"]: r["dataset"] for r in acc_rows}
        body = [[r["task"], r["model"], r.get("params_M"), r.get("budget"), r.get("metric"),
                 None if r.get("score") is None else f"{r['score']:.4f}", r.get("train_time_s"), r.get("status")]
                for r in acc_rows]
        lines += ["Each task trains every model with the same budget, data, recipe and seed (the task CLI's "
                  "defaults); scores are the task's validation metric from its metrics.json (single runs, seed 0: "
                  "no spread was measured). Datasets: " + "; ".join(f"{k}: {v}" for k, v in datasets.items()) + ".",
                  "", markdown_table(["task", "model", "params (M)", "budget", "metric", "score", "train s", "status"],
                                     body, cell=_fmt), ""]
        lines += interpretability_section(acc_rows)
    path = out / "report.md"
    atomic_write(path, "\n".join(lines))
    return path


def publish(out: Path, slug: str) -> Path:
    """Copy report.md, CSVs and PNGs to benchmarks/results/<slug>/ (replacing the previous published report)."""
    dest = RESULTS_DIR / slug
    dest.mkdir(parents=True, exist_ok=True)
    for old in dest.iterdir():
        if old.suffix in (".md", ".csv", ".png"):
            old.unlink()
    for f in out.iterdir():
        if f.suffix in (".md", ".csv", ".png"):
            shutil.copy2(f, dest / f.name)
    return dest


# ---------------------------------------------------------------------------------------------------- main


def run(argv: Sequence[str] | None = None) -> Path:
    args = build_parser().parse_args(argv)
    s, plan = resolve_args(args)
    plan["argv"] = list(sys.argv[1:] if argv is None else argv)
    set_threads(s.threads)
    if s.is_cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    if args.resume is not None:
        if not (args.resume / Progress.FILENAME).is_file():
            raise TaskError(f"--resume: {args.resume} has no {Progress.FILENAME} (not a report run directory)")
        if args.out is not None and args.out.resolve() != args.resume.resolve():
            raise TaskError("--resume writes into the run it continues: drop --out or give the same directory")
    out = make_run_dir("bench", args.resume or args.out)
    progress = Progress(out, resume=args.resume is not None)
    save_config(out, {**vars(args), "resolved": {**s.__dict__, **{k: v for k, v in plan.items() if k != "sweep"}}})
    start = time.perf_counter()
    env = environment(s)
    print(f"benchmark -> {out} ({s.device}, {s.tag()}, batch {s.batch_size})", flush=True)

    bench_rows = []
    model_sig = dict(settings=s.__dict__)
    for name in plan["models"]:
        t0 = time.perf_counter()
        stored = progress.get("model", name, model_sig)
        row = stored[0] if stored else measure.bench_model(measure.ModelRequest(name), s)
        if not stored and not str(row["status"]).startswith("error"):
            progress.add("model", name, model_sig, [row], time.perf_counter() - t0)
        bench_rows.append(row)
        print(f"  {name}: {row.get('infer_samples_per_sec', '–')} img/s, {row.get('infer_gmacs', '–')} GMACs, "
              f"{row['status']} ({'reused' if stored else f'{time.perf_counter() - t0:.0f} s'})", flush=True)
    write_csv(out / "benchmark.csv", bench_rows, measure.BENCH_COLUMNS)

    sweep_rows: list[dict[str, Any]] = []
    slope_rows: list[dict[str, Any]] = []
    if plan["sweep"]:
        prim_sizes, model_names, model_sizes = plan["sweep"]
        series = scaling.primitive_series(prim_sizes) + scaling.model_series(model_names, model_sizes)
        for ser in series:
            t0 = time.perf_counter()
            key = f"{ser.kind}/{ser.name}/{ser.spatial_dims}D"
            sig = dict(settings=s.__dict__, time_limit=plan["time_limit"], sizes=ser.sizes)
            stored = progress.get("sweep", key, sig)
            if stored is not None:
                ser.rows = stored
            else:
                scaling.run_series(ser, s, plan["time_limit"])
                progress.add("sweep", key, sig, ser.rows, time.perf_counter() - t0)
            sweep_rows += ser.rows
            marks = ", ".join(f"{r['size']}:{r.get('time_ms', r.get('status'))}" for r in ser.rows)
            print(f"  sweep {ser.kind} {ser.name} {ser.spatial_dims}D: {marks} ({time.perf_counter() - t0:.0f} s)",
                  flush=True)
        slope_rows = scaling.slopes(sweep_rows)
        write_csv(out / "scaling.csv", sweep_rows, scaling.SCALING_COLUMNS)
        write_csv(out / "scaling_slopes.csv", slope_rows, scaling.SLOPE_COLUMNS)

    targets_md = None
    if args.targets is not None:
        targets_md = run_targets(args.targets or ["tiny_srf"], s, out / "targets")

    acc_rows = None
    if plan["accuracy"]:
        acc_rows = accuracy.run_accuracy(args.accuracy_tasks, out, args.quick, args.accuracy_timeout,
                                         args.accuracy_budget, progress=progress)
        write_csv(out / "accuracy.csv", acc_rows, accuracy.ACCURACY_COLUMNS)
        write_csv(out / "interpretability.csv", accuracy.interpretability_rows(acc_rows),
                  accuracy.INTERPRETABILITY_COLUMNS)
        for r in acc_rows:
            print(f"  accuracy {r['task']} {r['model']}: {r.get('score', '–')} ({r['status']})", flush=True)

    images = {
        "throughput": plots.throughput_plot(bench_rows, out / "throughput.png"),
        "primitives": plots.scaling_plot(sweep_rows, slope_rows, "primitive", out / "scaling_primitives.png"),
        "models": plots.scaling_plot(sweep_rows, slope_rows, "model", out / "scaling_models.png"),
    }
    if any(r.get("peak_mem_mib") for r in sweep_rows):  # CUDA allocator stats: GPU runs only
        for kind in ("primitive", "model"):
            images[f"{kind}_memory"] = plots.scaling_plot(
                sweep_rows, slope_rows, kind, out / f"scaling_{kind}s_memory.png", value="peak_mem_mib",
                ylabel="peak allocated MiB, batch 1")
    plan["reused"], plan["reused_seconds"] = progress.reused, progress.reused_seconds
    report = write_report(out, env, s, plan, bench_rows, sweep_rows, slope_rows, acc_rows, images,
                          time.perf_counter() - start, targets_md)
    print(f"report: {report} ({(time.perf_counter() - start) / 60:.1f} min)")
    if args.publish:
        print(f"published: {publish(out, device_slug(s))}")
    return report


def run_targets(variants: list[str], s: measure.Settings, out: Path) -> str:
    """Issue 16's target table for `variants` (`benchmarks.focalnet_vs_timm --targets` with this report's device,
    batch, threads, timer and repeats); returns its Markdown."""
    from . import focalnet_vs_timm, targets

    argv = ["--targets", "--models", ",".join(variants), "--device", s.device, "--batch", str(s.batch_size),
            "--img-size", str(s.img_size or 224), "--repeats", str(s.repeats), "--warmup", str(s.warmup),
            "--timer", s.timer, "--out", str(out)]
    if s.threads is not None:
        argv += ["--threads", str(s.threads)]
    return targets.markdown(focalnet_vs_timm.main(argv))


def main(argv: Sequence[str] | None = None) -> None:
    run_main(run, argv)


if __name__ == "__main__":
    main()
