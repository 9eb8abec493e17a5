"""Scaling sweeps: forward time (batch 1) against token count for token mixers and whole models, in 1D/2D/3D.

Each series runs its sizes in increasing order. Per config the first call is the warm-up probe: above the time
limit the config is marked 'timeout'; otherwise the repeats are cut so that the config fits the limit. A size
whose time, extrapolated from the previous two (at least linearly), exceeds the limit is marked 'timeout
(predicted)' without running; after an OOM or a timeout, larger sizes are 'skipped'. Slopes are least-squares
fits of log(time) and log(GMACs) against log(tokens) over the largest completed sizes: global attention tends to
2, linear-cost mixers (focal modulation, gnConv, window attention, convs) to 1.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ._timing import interleave, median, time_call
from .flops import count_macs
from .measure import ModelRequest, Settings, build_model, cuda_peak, inference_fn, is_oom, make_input, prepare

SCALING_COLUMNS = ["kind", "name", "spatial_dims", "size", "tokens", "batch", "time_ms", "repeats", "gmacs",
                   "peak_mem_mib", "status"]
SLOPE_COLUMNS = ["kind", "name", "spatial_dims", "slope_time", "slope_gmacs", "points", "tokens_range", "stopped"]
PRIMITIVES = ("focal_modulation", "gnconv", "window_attention", "global_attention")
WINDOW = {1: 49, 2: 7, 3: 7}  # window side per dimension (49 tokens in 1D/2D as Swin's 7x7, 343 in 3D as SwinUNETR)
SLOPE_POINTS = 4


# ---------------------------------------------------------------------------------------------------- primitives


class _MHSA(nn.Module):
    """qkv projection, `scaled_dot_product_attention`, output projection on `(B, N, C)` tokens."""

    def __init__(self, dim: int, head_dim: int = 32) -> None:
        super().__init__()
        self.heads = max(1, dim // head_dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, c))


class GlobalAttention(nn.Module):
    """Multi-head self-attention over all `prod(S)` positions of `(B, C, *S)` (cost quadratic in tokens)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.attn = _MHSA(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, *size = x.shape
        out = self.attn(x.flatten(2).transpose(1, 2))
        return out.transpose(1, 2).reshape(b, c, *size)


class WindowAttention(nn.Module):
    """Self-attention inside non-overlapping windows of `window` per dimension (Swin W-MSA without shift/bias).

    Works on `(B, C, *S)` for any number of spatial dims; inputs are zero-padded to whole windows (padded tokens
    are not masked, as in Swin) and the window is clipped to the input where the input is smaller.
    """

    def __init__(self, dim: int, window: int) -> None:
        super().__init__()
        self.window = window
        self.attn = _MHSA(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, *size = x.shape
        d = len(size)
        win = [min(self.window, s) for s in size]
        pads = [(-s) % w for s, w in zip(size, win)]
        x = x.movedim(1, -1)
        if any(pads):
            x = F.pad(x, [0, 0] + [p for pad in reversed(pads) for p in (0, pad)])
        grid = [(s + p) // w for s, p, w in zip(size, pads, win)]
        x = x.reshape(b, *[v for g, w in zip(grid, win) for v in (g, w)], c)
        perm = [0, *range(1, 2 * d, 2), *range(2, 2 * d + 1, 2), 2 * d + 1]
        x = self.attn(x.permute(perm).reshape(-1, math.prod(win), c))
        x = x.reshape(b, *grid, *win, c).permute([perm.index(i) for i in range(2 * d + 2)])
        x = x.reshape(b, *[g * w for g, w in zip(grid, win)], c)
        x = x[(slice(None), *[slice(0, s) for s in size])]
        return x.movedim(-1, 1)


def build_primitive(kind: str, dim: int, spatial_dims: int) -> nn.Module:
    """One token mixer of width `dim`; raises LookupError if the layer is not available in this install."""
    import focalmod.layers as layers

    if kind == "focal_modulation":
        return layers.FocalModulation(dim, spatial_dims=spatial_dims, focal_level=2)
    if kind == "gnconv":
        if not hasattr(layers, "GnConv"):
            raise LookupError("focalmod.layers.GnConv not available")
        return layers.GnConv(dim, order=3, spatial_dims=spatial_dims)
    if kind == "window_attention":
        return WindowAttention(dim, WINDOW[spatial_dims])
    if kind == "global_attention":
        return GlobalAttention(dim)
    raise ValueError(f"primitive must be one of {PRIMITIVES}, got {kind!r}")


# ---------------------------------------------------------------------------------------------------- sweeps


@dataclass
class Series:
    """One curve: a module built per size (`make(size)` -> (module, input size (C, *S)))."""

    kind: str  # 'primitive' or 'model'
    name: str
    spatial_dims: int
    sizes: list[int]
    make: Callable[[int], tuple[nn.Module, tuple[int, ...]]]
    count_macs: bool = True
    rows: list[dict[str, Any]] = field(default_factory=list)


def _run_config(call: Callable[[], Any], s: Settings, limit: float) -> tuple[float | None, int, str]:
    """(median seconds, repeats used, status) for one config under the time limit."""
    sync = s.sync if s.is_cuda else None
    first = time_call(call, timer=s.timer, sync=sync)
    if first > limit:
        return None, 0, "timeout"
    repeats = max(1, min(s.repeats, int((limit - first) / max(first, 1e-9))))
    times = interleave({"call": call}, repeats=repeats, warmup=max(0, s.warmup - 1), timer=s.timer, sync=sync)["call"]
    return median(times), repeats, "ok"


def run_series(series: Series, s: Settings, time_limit: float) -> list[dict[str, Any]]:
    """Measure `series` at each size (batch 1, inference); rows follow `SCALING_COLUMNS`."""
    done: list[tuple[int, float]] = []
    stopped = ""
    for size in series.sizes:
        tokens = size**series.spatial_dims
        row: dict[str, Any] = dict(kind=series.kind, name=series.name, spatial_dims=series.spatial_dims, size=size,
                                   tokens=tokens, batch=1)
        series.rows.append(row)
        if stopped:
            row["status"] = f"skipped ({stopped})"
            continue
        if done:
            n0, t0 = done[-2] if len(done) > 1 else done[-1]
            n1, t1 = done[-1]
            slope = max(1.0, math.log(t1 / t0) / math.log(n1 / n0)) if n1 > n0 and t0 > 0 and t1 > 0 else 1.0
            predicted = t1 * (tokens / n1) ** slope
            if predicted > time_limit:
                row["status"] = f"timeout (predicted {predicted:.3g} s)"
                stopped = f"timeout at {size}"
                continue
        mem: dict[str, float] = {}
        try:
            module, input_size = series.make(size)
            module = prepare(module.eval(), s)
            call = inference_fn(module, make_input(input_size, 1, s), s)
            with cuda_peak(s, mem, "peak_mem_mib"):
                t, repeats, status = _run_config(call, s, time_limit)
        except Exception as err:  # noqa: BLE001 - recorded in the row
            if s.is_cuda:
                torch.cuda.empty_cache()
            if is_oom(err):
                row["status"], stopped = "oom", f"oom at {size}"
            else:
                row["status"] = f"error: {type(err).__name__}: {str(err)[:80]}"
            continue
        row.update(status=status, repeats=repeats)
        if status != "ok":
            stopped = f"{status} at {size}"
            continue
        row["time_ms"] = round(t * 1e3, 4)
        if "peak_mem_mib" in mem:
            row["peak_mem_mib"] = round(mem["peak_mem_mib"], 1)
        done.append((tokens, t))
        if series.count_macs and t < time_limit / 4:
            try:  # traced where the module lives (a CPU copy would be slow for GPU-sized inputs)
                plain = getattr(module, "_orig_mod", module)  # under torch.compile: the original module
                example = torch.zeros(1, *input_size, device=s.torch_device, dtype=s.param_dtype)
                row["gmacs"] = round(count_macs(plain, example).gmacs, 6)
            except Exception:  # noqa: BLE001 - GMACs are optional in the sweep
                if s.is_cuda:
                    torch.cuda.empty_cache()
    return series.rows


def fit_loglog(x: list[float], y: list[float]) -> float:
    """Least-squares slope of log(y) against log(x) (needs two distinct x values)."""
    if len(x) < 2 or len(set(x)) < 2:
        return math.nan
    return float(np.polyfit(np.log(np.asarray(x, float)), np.log(np.asarray(y, float)), 1)[0])


def slopes(rows: list[dict[str, Any]], points: int = SLOPE_POINTS) -> list[dict[str, Any]]:
    """One row per series: slopes of time and GMACs vs tokens over its `points` largest completed sizes."""
    out = []
    keys = list(dict.fromkeys((r["kind"], r["name"], r["spatial_dims"]) for r in rows))
    for kind, name, dims in keys:
        series = [r for r in rows if (r["kind"], r["name"], r["spatial_dims"]) == (kind, name, dims)]
        ok = [r for r in series if r.get("status") == "ok"][-points:]
        with_macs = [r for r in ok if r.get("gmacs")]
        failed = [r for r in series if r.get("status") not in (None, "ok")]
        out.append(dict(
            kind=kind, name=name, spatial_dims=dims,
            slope_time=round(fit_loglog([r["tokens"] for r in ok], [r["time_ms"] for r in ok]), 2),
            slope_gmacs=round(fit_loglog([r["tokens"] for r in with_macs], [r["gmacs"] for r in with_macs]), 2),
            points=len(ok),
            tokens_range=f"{ok[0]['tokens']}-{ok[-1]['tokens']}" if ok else "",
            stopped=f"{failed[0]['status']} at {failed[0]['size']}" if failed else "",
        ))
    return out


# ---------------------------------------------------------------------------------------------------- plans


def primitive_series(sizes_by_dims: dict[int, list[int]], dim: int = 64) -> list[Series]:
    """The four token mixers at width `dim` over the given sides per spatial dimensionality."""
    out = []
    for dims, sizes in sizes_by_dims.items():
        for kind in PRIMITIVES:
            def make(size: int, kind: str = kind, dims: int = dims) -> tuple[nn.Module, tuple[int, ...]]:
                return build_primitive(kind, dim, dims), (dim, *([size] * dims))

            out.append(Series("primitive", kind, dims, list(sizes), make))
    return out


def model_series(models_by_dims: dict[int, list[str]], sizes_by_dims: dict[int, list[int]]) -> list[Series]:
    """Whole models: 2D ones at square images of each side, 1D at each length, 3D at cubic volumes."""
    out = []
    for dims, names in models_by_dims.items():
        for name in names:
            def make(size: int, name: str = name, dims: int = dims) -> tuple[nn.Module, tuple[int, ...]]:
                model, input_size = build_model(ModelRequest(name), size if dims == 2 else None)
                return model, (input_size[0], *([size] * dims))

            out.append(Series("model", name, dims, list(sizes_by_dims[dims]), make))
    return out
