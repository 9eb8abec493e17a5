"""One figure comparing explanation methods on a few inputs (PNG through the Agg canvas, no pyplot state)."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import torch

from ..viz.figures import to_display

__all__ = ["plot_explanations"]


def _unit(value: torch.Tensor) -> torch.Tensor:
    lo, hi = value.min(), value.max()
    return (value - lo) / (hi - lo) if hi > lo else torch.zeros_like(value)


def _as_image(value: torch.Tensor) -> torch.Tensor:
    """A map of one sample `(*S)` -> 2D for imshow: 1D stretched to one row band, 3D its middle depth slice."""
    if value.ndim == 3:
        value = value[value.shape[0] // 2]
    if value.ndim == 1:
        value = value[None].expand(8, -1)
    return _unit(value.float().cpu())


def plot_explanations(
    x: torch.Tensor,
    maps: Mapping[str, torch.Tensor],
    path: str | Path,
    scores: Mapping[str, Mapping[str, float]] | None = None,
    titles: Sequence[str] | None = None,
    spectrogram: bool = False,
    max_examples: int = 4,
) -> Path:
    """Rows: up to `max_examples` inputs of `x` `(B, C, *S)`; columns: the input, then each method's `(B, *S)` map
    over it. With `scores`, each column title also shows that method's Fid-In and deletion / insertion AUC.
    `spectrogram` draws 2D inputs with the first spatial axis (time) horizontal. Returns the written path."""
    from matplotlib.figure import Figure

    rows = min(max_examples, x.shape[0])
    if rows == 0 or not maps:
        raise ValueError("plot_explanations needs at least one input and one method")
    cols = 1 + len(maps)
    fig = Figure(figsize=(2.6 * cols, 2.4 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for r in range(rows):
        sample = x[r]
        if spectrogram and sample.ndim == 3:
            sample = sample.mean(0).T  # (T, F) -> (F, T): frequency up, time right
        image, rgb = to_display(sample, spectrogram=spectrogram)
        axes[r, 0].imshow(image.numpy(), cmap=None if rgb else "gray", origin="lower" if spectrogram else "upper")
        axes[r, 0].set_title(titles[r] if titles else "input", fontsize=8)
        for c, (name, value) in enumerate(maps.items(), start=1):
            heat = _as_image(value[r])
            if spectrogram and heat.ndim == 2 and value[r].ndim == 2:
                heat = heat.T
            ax = axes[r, c]
            ax.imshow(image.numpy(), cmap=None if rgb else "gray", origin="lower" if spectrogram else "upper")
            ax.imshow(heat.numpy(), cmap="jet", alpha=0.45, origin="lower" if spectrogram else "upper",
                      extent=ax.images[0].get_extent())
            label = name
            if scores and r == 0 and name in scores:
                s = scores[name]
                label += f"\nFid-In {s['fid_in']:.2f} del {s['deletion_auc']:.2f} ins {s['insertion_auc']:.2f}"
            ax.set_title(label, fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    return path
