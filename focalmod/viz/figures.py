"""Matplotlib figures (PNG through the Agg canvas, no pyplot) overlaying modulator magnitude and gate maps on the input.

Rows are the chosen blocks (stage/block), columns: the input, the modulator magnitude over it, then one panel per
gate level (the last one is the global level). Maps are upsampled to the input size (bilinear in 2D, linear in 1D)
and min-max normalised per panel. A 2D input is an image `(C, H, W)` or a spectrogram `(F, T)` (drawn with low
frequencies at the bottom); 1D maps `(T,)` over a spectrogram are stretched over frequency; 3D inputs show their
middle depth slice.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F

from .maps import BlockMaps

__all__ = ["plot_modulation_maps", "to_display", "upsample_map"]


def upsample_map(value: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """`(*S)` map -> `size` (same number of dims) by (bi/tri)linear interpolation, as float32."""
    size = tuple(int(s) for s in size)
    if value.ndim != len(size):
        raise ValueError(f"map with {value.ndim} dims cannot be resized to {size}")
    mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[value.ndim]
    return F.interpolate(value[None, None].float(), size=size, mode=mode, align_corners=False)[0, 0]


def _unit(value: torch.Tensor) -> torch.Tensor:
    lo, hi = value.min(), value.max()
    return (value - lo) / (hi - lo) if hi > lo else torch.zeros_like(value)


def to_display(x: torch.Tensor, spectrogram: bool = False) -> tuple[torch.Tensor, bool]:
    """One sample of input -> an `(H, W)` or `(H, W, 3)` array in [0, 1] for `imshow`, and whether it is RGB.

    Image `(C, H, W)`: RGB if C == 3 else the channel mean. Spectrogram `(F, T)` (or `(1, F, T)`, or a 1D-model
    input `(n_bins, T)`): shown as is. Volume `(C, D, H, W)`: the middle depth slice.
    """
    x = x.detach().float().cpu()
    if x.ndim == 4:
        x = x[:, x.shape[1] // 2]
    if x.ndim == 2:
        return _unit(x), False
    if x.ndim != 3:
        raise ValueError(f"cannot display an input of shape {tuple(x.shape)}; expected (C, H, W) or (F, T)")
    if x.shape[0] == 3 and not spectrogram:
        return _unit(x.permute(1, 2, 0)), True
    return _unit(x.mean(0)), False


def _panel_map(value: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """A map of one sample -> `shape` (H, W): 2D resized, 1D resized along W and repeated over H, 3D middle slice."""
    if value.ndim == 3:
        value = value[value.shape[0] // 2]
    if value.ndim == 1:
        return _unit(upsample_map(value, shape[1:])).expand(shape[0], -1)
    return _unit(upsample_map(value, shape))


def plot_modulation_maps(
    x: torch.Tensor,
    maps: list[BlockMaps],
    path: str | Path,
    index: int = 0,
    spectrogram: bool = False,
    title: str | None = None,
    alpha: float = 0.55,
    show_gates: bool = True,
    dpi: int = 100,
) -> Path:
    """Write the overlay figure for sample `index` of the batch `x` (model input) to `path` (PNG) and return it.

    Args:
        x: the batch given to `modulation_maps`; `x[index]` is drawn.
        maps: its result.
        spectrogram: draw a single-channel 2D input as a spectrogram (origin at the bottom, gray-scale base).
        title: figure title (e.g. the predicted class).
        alpha: opacity of the heat maps over the input.
        show_gates: add one panel per gate level next to the magnitude.
    """
    from matplotlib.figure import Figure  # no pyplot: no global backend state, Agg chosen by savefig for PNG

    if not maps:
        raise ValueError("maps is empty: nothing to draw")
    if not 0 <= index < x.shape[0]:
        raise ValueError(f"index {index} out of range for a batch of {x.shape[0]}")
    base, rgb = to_display(x[index], spectrogram)
    shape = tuple(base.shape[:2])
    origin = "lower" if spectrogram or (not rgb and x[index].ndim == 2) else "upper"
    n_cols = 2 + (max(m.focal_level + 1 for m in maps) if show_gates else 0)
    fig = Figure(figsize=(2.4 * n_cols, 2.4 * len(maps)))
    axes = fig.subplots(len(maps), n_cols, squeeze=False)
    base_kw = dict(origin=origin, aspect="auto" if origin == "lower" else "equal")
    base_cmap = None if rgb else ("magma" if origin == "lower" else "gray")
    for row, block in zip(axes, maps):
        panels = [("input", None), ("|h(ctx_all)|", block.magnitude[index])]
        if show_gates:
            levels = block.focal_level + 1
            panels += [
                (f"gate {lvl}" + (" (global)" if lvl == levels - 1 else ""), block.gates[index, lvl])
                for lvl in range(levels)
            ]
        for ax, (label, value) in zip(row, panels):
            ax.imshow(base.numpy(), cmap=base_cmap, **base_kw)
            if value is not None:
                ax.imshow(_panel_map(value, shape).numpy(), cmap="jet", alpha=alpha, vmin=0, vmax=1, **base_kw)
            ax.set_title(label if value is not None else f"stage {block.stage} block {block.block}", fontsize=8)
        for ax in row:
            ax.set_xticks([]), ax.set_yticks([])
            if not ax.images:
                ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, format="png")
    return path
