"""Issue 16's performance targets measured side by side in one process (`python -m benchmarks.focalnet_vs_timm
--targets`): our FocalNet against timm's FocalNet of the same variant (same weights) and timm's ConvNeXt-T, the
equal-GMACs reference (4.47 GMACs vs FocalNet-T's 4.41).

Per variant, every timed candidate runs round-robin in one `interleave` call, so load from other processes hits all
alike; ratios are throughput ratios of the medians (> 1: the first one faster). Candidates:

* ``ours``: `focalmod.optimize(model, device)` (the fast path chosen once; fp32), ``timm``, ``convnext``: plain;
  each in every layout of ``--layouts``, the best layout of each kept (as in the issue's table);
* ``*_compiled``: `torch.compile` with inductor weight freezing on CPU inference (`focalmod.optimize(...,
  compile=True)` for ours: the oneDNN fast modules, compiled; `compile_frozen` for timm's models);
* ``ours_bf16`` / ``ours_bf16_compiled``: `focalmod.optimize(model, device, dtype=torch.bfloat16)` (without / with
  compile); the faster is "our best bf16 path", its top-1 compared with our fp32 eager on a fixed input set;
* training step (SGD, cross-entropy): ours with the training fast path, ours with ``recompute=True``, timm, ConvNeXt;
* activation memory: bytes autograd saves for backward in one training forward (distinct storages, parameters
  excluded; `torch.autograd.graph.saved_tensors_hooks`) and the peak memory of one training step (CUDA: the
  allocator's peak; CPU: the peak RSS of a fresh child process above its RSS with the model built).
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

import focalmod
from focalmod.models.optimize import compile_frozen

from ._timing import inference_call, interleave, median, train_step_call

REPO_ROOT = Path(__file__).resolve().parents[1]
REFERENCE = "convnext_tiny"
LAYOUTS = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}
# column -> (target, direction): ">=" higher is better, "<=" lower is better
TARGETS: dict[str, tuple[float, str]] = {
    "eager_vs_timm": (1.3, ">="),
    "train_vs_timm": (1.2, ">="),
    "compiled_vs_timm_compiled": (1.1, ">="),
    "compiled_vs_our_eager": (1.0, ">="),
    "bf16_vs_our_fp32": (2.5, ">="),
    "bf16_top1_agreement": (0.99, ">="),
    "act_bytes_vs_timm": (0.8, "<="),
}


@dataclass
class TargetRow:
    """One variant: the ratios of `TARGETS`, the same against ConvNeXt-T, and the raw numbers behind them."""

    model: str
    eager_vs_timm: float
    train_vs_timm: float
    train_recompute_vs_timm: float
    compiled_vs_timm_compiled: float
    compiled_vs_our_eager: float
    bf16_vs_our_fp32: float
    bf16_path: str
    bf16_top1_agreement: float
    act_bytes_vs_timm: float
    peak_vs_timm: float
    eager_vs_convnext: float
    train_vs_convnext: float
    compiled_vs_convnext_compiled: float
    act_bytes_vs_convnext: float
    img_s: dict[str, float]
    act_bytes: dict[str, int]
    peak_bytes: dict[str, float]
    layouts: dict[str, str]


def saved_activation_bytes(model: nn.Module, x: torch.Tensor) -> int:
    """Bytes of the distinct storages autograd saves for backward in ``model(x)`` (parameters excluded)."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x)
    return sum(n for ptr, n in storages.items() if ptr not in params)


def top1_agreement(reference: Callable, candidate: Callable, inputs: torch.Tensor, batch: int,
                   dtype: torch.dtype) -> float:
    """Fraction of `inputs` on which both models predict the same class (the candidate gets `dtype` inputs)."""
    agree = 0
    with torch.inference_mode():
        for chunk in inputs.split(batch):
            ref = reference(chunk).argmax(-1)
            agree += int((candidate(chunk.to(dtype)).float().argmax(-1) == ref).sum())
    return agree / len(inputs)


def _train(model: nn.Module, x: torch.Tensor, num_classes: int) -> Callable[[], object]:
    return train_step_call(model, x, torch.randint(0, num_classes, (x.shape[0],), device=x.device))


def _compiled(model: nn.Module, device: torch.device) -> Callable:
    # as focalmod.optimize(compile=True) does for CPU inference: inductor weight freezing
    return compile_frozen(model) if device.type == "cpu" else torch.compile(model)


def _best(img_s: dict[str, float], name: str, layouts: list[str]) -> tuple[float, str]:
    value, layout = max((img_s[f"{name}/{lay}"], lay) for lay in layouts)
    return value, layout


def _sync(device: torch.device) -> Callable[[], None] | None:
    return torch.cuda.synchronize if device.type == "cuda" else None


def measure_variant(ours: nn.Module, timm_model: nn.Module, convnext: nn.Module, args: argparse.Namespace,
                    variant: str) -> TargetRow:
    """All columns for one variant (`ours` and `timm_model` hold the same weights; all three in eval, fp32)."""
    device = torch.device(args.device)
    size, layouts = args.img_size, args.layout_list
    gen = torch.Generator().manual_seed(args.seed)
    x_cpu = torch.randn(args.batch, 3, size, size, generator=gen)
    sync = _sync(device)
    plain = {"timm": timm_model, "convnext": convnext}

    # inference: eager (every layout) and compiled, fp32 and our bf16 paths, all round-robin in one call
    fns: dict[str, Callable[[], object]] = {}
    eager_ours: dict[str, nn.Module] = {}
    for lay in layouts:
        fmt = LAYOUTS[lay]
        x = x_cpu.to(device).contiguous(memory_format=fmt)
        eager_ours[lay] = focalmod.optimize(copy.deepcopy(ours), device, inference=True,
                                            channels_last=lay == "channels_last")
        fns[f"ours/{lay}"] = inference_call(eager_ours[lay], x)
        for name, model in plain.items():
            fns[f"{name}/{lay}"] = inference_call(copy.deepcopy(model).to(device, memory_format=fmt), x)
    fmt = LAYOUTS[args.compile_layout]
    x = x_cpu.to(device).contiguous(memory_format=fmt)
    if not args.no_compile:
        fns["ours_compiled"] = inference_call(focalmod.optimize(copy.deepcopy(ours), device, compile=True,
                                                        channels_last=args.compile_layout == "channels_last"), x)
        for name, model in plain.items():
            model = _compiled(copy.deepcopy(model).to(device, memory_format=fmt), device)
            fns[f"{name}_compiled"] = inference_call(model, x)
    bf16: dict[str, nn.Module] = {}
    if not args.no_bf16:
        bf16["ours_bf16"] = focalmod.optimize(copy.deepcopy(ours), device, dtype=torch.bfloat16,
                                              channels_last=args.compile_layout == "channels_last")
    if bf16 and not args.no_compile:
        bf16["ours_bf16_compiled"] = focalmod.optimize(copy.deepcopy(ours), device, dtype=torch.bfloat16,
                                                       compile=True,
                                                       channels_last=args.compile_layout == "channels_last")
    for name, model in bf16.items():
        fns[name] = inference_call(model, x.to(torch.bfloat16))
    # compiled candidates compile in their first (warm-up) call
    times = interleave(fns, repeats=args.repeats, warmup=args.warmup + 1, timer=args.timer, sync=sync)
    img_s = {k: args.batch / median(v) for k, v in times.items()}

    # training step (each in the first layout of --layouts)
    lay = layouts[0]
    x = x_cpu[: args.train_batch].to(device).contiguous(memory_format=LAYOUTS[lay])
    train_models = {
        "ours": focalmod.optimize(copy.deepcopy(ours).train(), device, inference=False,
                                  channels_last=lay == "channels_last"),
        "ours_recompute": focalmod.optimize(copy.deepcopy(ours).train(), device, inference=False, recompute=True,
                                            channels_last=lay == "channels_last"),
        **{k: copy.deepcopy(m).train().to(device, memory_format=LAYOUTS[lay]) for k, m in plain.items()},
    }
    train_fns = {f"train_{k}": _train(m, x, 1000) for k, m in train_models.items()}
    train_times = interleave(train_fns, repeats=args.repeats, warmup=args.warmup, timer=args.timer, sync=sync)
    img_s.update({k: args.train_batch / median(v) for k, v in train_times.items()})

    # activation bytes (our lean path: recompute) and peak memory of one training step
    act = {k: saved_activation_bytes(m, x) for k, m in train_models.items()}
    peak = {k: peak_train_bytes(variant, k, args) for k in ("ours_recompute", "timm", "convnext")}

    # bf16 top-1 agreement on a fixed input set, our best bf16 path against our fp32 eager
    best_bf16, agreement = "none (--no-bf16)", math.nan
    if bf16:
        best_bf16 = max(bf16, key=lambda k: img_s[k])
        inputs = torch.randn(args.agree_samples, 3, size, size, generator=torch.Generator().manual_seed(args.seed + 1))
        agreement = top1_agreement(eager_ours[layouts[0]], bf16[best_bf16], inputs.to(device), args.batch,
                                   torch.bfloat16)

    ours_eager, ours_layout = _best(img_s, "ours", layouts)
    timm_eager, timm_layout = _best(img_s, "timm", layouts)
    cnx_eager, cnx_layout = _best(img_s, "convnext", layouts)
    compiled = {k: img_s.get(f"{k}_compiled", math.nan) for k in ("ours", "timm", "convnext")}
    return TargetRow(
        model=variant,
        eager_vs_timm=ours_eager / timm_eager,
        train_vs_timm=img_s["train_ours"] / img_s["train_timm"],
        train_recompute_vs_timm=img_s["train_ours_recompute"] / img_s["train_timm"],
        compiled_vs_timm_compiled=compiled["ours"] / compiled["timm"],
        compiled_vs_our_eager=compiled["ours"] / ours_eager,
        bf16_vs_our_fp32=img_s.get(best_bf16, math.nan) / ours_eager,
        bf16_path=best_bf16,
        bf16_top1_agreement=agreement,
        act_bytes_vs_timm=act["ours_recompute"] / act["timm"],
        peak_vs_timm=peak["ours_recompute"] / peak["timm"],
        eager_vs_convnext=ours_eager / cnx_eager,
        train_vs_convnext=img_s["train_ours"] / img_s["train_convnext"],
        compiled_vs_convnext_compiled=compiled["ours"] / compiled["convnext"],
        act_bytes_vs_convnext=act["ours_recompute"] / act["convnext"],
        img_s={k: round(v, 3) for k, v in img_s.items()},
        act_bytes=act,
        peak_bytes=peak,
        layouts={"ours": ours_layout, "timm": timm_layout, "convnext": cnx_layout},
    )


# ---------------------------------------------------------------------------------------------- peak memory


def build_models(variant: str, seed: int) -> tuple[nn.Module, nn.Module, nn.Module]:
    """(ours, timm's FocalNet, timm's ConvNeXt-T), fp32, eval, drop path off; ours holds timm's weights."""
    import timm

    from focalmod.checkpoints import load_checkpoint

    torch.manual_seed(seed)
    reference = timm.create_model(f"focalnet_{variant}", drop_path_rate=0.0)
    ours = focalmod.create_model(f"focalnet_{variant}", drop_path_rate=0.0)
    load_checkpoint(ours, reference.state_dict(), strict=True)
    convnext = timm.create_model(REFERENCE, drop_path_rate=0.0)
    return ours.eval(), reference.eval(), convnext.eval()


def _train_model(which: str, variant: str, seed: int, device: torch.device) -> nn.Module:
    ours, reference, convnext = build_models(variant, seed)
    if which == "timm":
        return reference.train().to(device)
    if which == "convnext":
        return convnext.train().to(device)
    return focalmod.optimize(ours.train(), device, inference=False, recompute=which == "ours_recompute")


def peak_train_bytes(variant: str, which: str, args: argparse.Namespace) -> float:
    """Peak memory (bytes) of one training step above the memory with the model built: on CUDA in this process,
    on CPU as the peak RSS of a fresh child process (NaN when the child fails)."""
    device = torch.device(args.device)
    if device.type == "cuda":
        model = _train_model(which, variant, args.seed, device)
        x = torch.randn(args.train_batch, 3, args.img_size, args.img_size, device=device)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        _train(model, x, 1000)()
        torch.cuda.synchronize()
        return float(torch.cuda.max_memory_allocated() - base)
    payload = json.dumps({"variant": variant, "which": which, "seed": args.seed, "batch": args.train_batch,
                          "img_size": args.img_size, "threads": torch.get_num_threads()})
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, "-m", "benchmarks.targets", "--peak-child", payload], capture_output=True,
                          text=True, env=env, cwd=REPO_ROOT, timeout=1800)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    return float(json.loads(lines[-1])["peak_bytes"]) if proc.returncode == 0 and lines else math.nan


def _rss_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _peak_child(payload: str) -> None:
    data = json.loads(payload)
    torch.set_num_threads(data["threads"])
    model = _train_model(data["which"], data["variant"], data["seed"], torch.device("cpu"))
    x = torch.randn(data["batch"], 3, data["img_size"], data["img_size"])
    step = _train(model, x, 1000)
    base = _rss_bytes("VmRSS")
    step()
    print(json.dumps({"peak_bytes": _rss_bytes("VmHWM") - base}), flush=True)


# ---------------------------------------------------------------------------------------------- table


def _meets(column: str, value: float) -> str:
    target, direction = TARGETS[column]
    if math.isnan(value):
        return "n/a"
    ok = value >= target if direction == ">=" else value <= target
    return "yes" if ok else f"no ({direction} {target})"


def markdown(rows: list[TargetRow]) -> str:
    """Per variant: each target's measured ratio, the target, met or not; then the same against ConvNeXt-T."""
    from tasks.common.files import markdown_table

    lines: list[str] = []
    for r in rows:
        body = [[column, f"{getattr(r, column):.3f}", f"{TARGETS[column][1]} {TARGETS[column][0]}",
                 _meets(column, getattr(r, column))] for column in TARGETS]
        body += [
            ["train_recompute_vs_timm", f"{r.train_recompute_vs_timm:.3f}", "(speed cost of recompute)", ""],
            ["peak_vs_timm (recompute)", f"{r.peak_vs_timm:.3f}", "(peak memory, one step)", ""],
            ["eager_vs_convnext", f"{r.eager_vs_convnext:.3f}", "(ConvNeXt-T, equal GMACs)", ""],
            ["train_vs_convnext", f"{r.train_vs_convnext:.3f}", "", ""],
            ["compiled_vs_convnext_compiled", f"{r.compiled_vs_convnext_compiled:.3f}", "", ""],
            ["act_bytes_vs_convnext", f"{r.act_bytes_vs_convnext:.3f}", "", ""],
        ]
        lines += [f"### focalnet_{r.model}", "", f"best bf16 path: {r.bf16_path}; best layouts: {r.layouts}", "",
                  markdown_table(["ratio", "measured", "target", "met"], body), "",
                  "img/s: " + ", ".join(f"{k} {v:.2f}" for k, v in r.img_s.items()), "",
                  "saved-for-backward MiB: " + ", ".join(f"{k} {v / 2**20:.1f}" for k, v in r.act_bytes.items()),
                  "", "peak MiB (one training step): " + ", ".join(
                      f"{k} {v / 2**20:.1f}" for k, v in r.peak_bytes.items()), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--peak-child":
        _peak_child(sys.argv[2])
    else:
        sys.exit("usage: python -m benchmarks.focalnet_vs_timm --targets (this module is its helper)")
