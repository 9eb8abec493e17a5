"""PNG plots for the report (matplotlib, Agg backend): log-log scaling curves and a throughput bar chart."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # noqa: E402
from PIL import Image  # noqa: E402

DPI = 72
_DIM_NAMES = {1: "1D (sequence length)", 2: "2D (side²)", 3: "3D (side³)"}


def _short(v: float) -> str:
    """Tick label: 500, 2k, 50k, 1M."""
    if v >= 1e6:
        return f"{v / 1e6:g}M"
    return f"{v / 1e3:g}k" if v >= 1e4 else f"{v:g}"


def _save(fig: Any, path: Path) -> Path:
    """Save as a 64-colour palette PNG (a quarter of the RGBA size: these files are committed)."""
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    with Image.open(path) as im:
        small = im.convert("RGB").quantize(colors=64, method=Image.Quantize.MEDIANCUT)
    small.save(path, optimize=True)
    return path


def scaling_plot(rows: list[dict[str, Any]], slopes: list[dict[str, Any]], kind: str, path: Path,
                 value: str = "time_ms", ylabel: str = "forward time, batch 1 (ms)") -> Path | None:
    """One panel per spatial dimensionality: `value` vs tokens on log-log axes, one line per series.

    Failed sizes (OOM / timeout) are drawn as a red 'x' on the x axis at their token count; the legend gives the
    fitted slope of each line.
    """
    rows = [r for r in rows if r["kind"] == kind]
    dims = sorted({r["spatial_dims"] for r in rows})
    if not dims:
        return None
    fig, axes = plt.subplots(1, len(dims), figsize=(4.2 * len(dims), 3.6), squeeze=False)
    slope_of = {(s["name"], s["spatial_dims"]): s for s in slopes if s["kind"] == kind}
    for ax, d in zip(axes[0], dims):
        names = list(dict.fromkeys(r["name"] for r in rows if r["spatial_dims"] == d))
        for name in names:
            series = [r for r in rows if r["spatial_dims"] == d and r["name"] == name]
            ok = [r for r in series if r.get("status") == "ok" and r.get(value)]
            slope = slope_of.get((name, d), {}).get({"time_ms": "slope_time", "gmacs": "slope_gmacs"}.get(value, ""))
            label = f"{name} (slope {slope:.2f})" if isinstance(slope, float) and slope == slope else name
            if ok:
                (line,) = ax.plot([r["tokens"] for r in ok], [r[value] for r in ok], "o-", ms=3, label=label)
            failed = [r for r in series if str(r.get("status", "")).startswith(("oom", "timeout"))]
            if failed and ok:
                ax.plot([r["tokens"] for r in failed], [ok[-1][value]] * len(failed), "x", color="red", ms=7)
        ax.set_xscale("log")
        ax.set_yscale("log")
        for axis in (ax.xaxis, ax.yaxis):  # ticks at 1-2-5 of each decade, plain numbers
            axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            axis.set_major_formatter(FuncFormatter(lambda v, _: _short(v)))
            axis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(f"{'tokens' if kind == 'primitive' else 'input positions'} — {_DIM_NAMES.get(d, d)}")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=6)
    fig.suptitle(f"{kind} scaling (red x: OOM/timeout, drawn at the last completed value)", fontsize=9)
    return _save(fig, path)


def throughput_plot(rows: list[dict[str, Any]], path: Path) -> Path | None:
    """Horizontal bars of inference throughput (img/s at batch N) per model."""
    rows = [r for r in rows if r.get("infer_samples_per_sec")]
    if not rows:
        return None
    rows = sorted(rows, key=lambda r: r["infer_samples_per_sec"])
    fig, ax = plt.subplots(figsize=(6, 0.35 * len(rows) + 1.2))
    colors = ["tab:orange" if r.get("source") == "focalmod" else "tab:blue" for r in rows]
    ax.barh([r["model"] for r in rows], [r["infer_samples_per_sec"] for r in rows], color=colors)
    ax.set_xlabel(f"inference samples/s at batch {rows[0].get('infer_batch_size')} (orange: focalmod, blue: timm)")
    ax.tick_params(axis="y", labelsize=7)
    ax.grid(True, axis="x", alpha=0.3)
    return _save(fig, path)
