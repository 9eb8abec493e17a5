"""Explanations a task scores when asked (`--explain N`): which examples, which methods, the figure and the table."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from focalmod.interpret import METHODS, evaluate_explanations, plot_explanations
from focalmod.viz import find_modulations

__all__ = ["POST_HOC_METHODS", "explain_dataset", "pick_per_class", "score_and_plot"]

POST_HOC_METHODS = tuple(m for m in METHODS if m not in ("modulator", "gates"))


def pick_per_class(labels: Sequence[int] | np.ndarray, n: int) -> list[int]:
    """Up to `n` positions of `labels`, round-robin over the classes present (one per class before any second)."""
    labels = np.asarray(labels)
    by_class = [list(np.flatnonzero(labels == c)) for c in np.unique(labels)]
    picked: list[int] = []
    for rank in range(max((len(v) for v in by_class), default=0)):
        picked += [int(v[rank]) for v in by_class if rank < len(v)]
    return picked[:n]


def score_and_plot(model: nn.Module, x: torch.Tensor, figure: Path, quantile: float = 0.9, seed: int = 0,
                   spectrogram: bool = False) -> dict[str, dict[str, float]]:
    """Explain `x` `(B, C, *S)` with every method `model` allows (the modulator and gate maps need focal modulation;
    Grad-CAM, integrated gradients and the random floor always), score the maps (`focalmod.interpret`; masked
    positions take 0) and draw them over the inputs into `figure`; returns `{method: {metric: value}}`."""
    methods = METHODS if find_modulations(model) else POST_HOC_METHODS
    maps, scores = evaluate_explanations(model, x, methods, quantile=quantile, seed=seed)
    plot_explanations(x, maps, figure, scores=scores, spectrogram=spectrogram)
    return scores


def explain_dataset(model: nn.Module, dataset: Sequence, labels: Sequence[int], n: int, figure: Path,
                    quantile: float = 0.9, seed: int = 0) -> dict[str, dict[str, float]]:
    """`score_and_plot` on `n` items of `dataset` (each `(input, label)`, as a torch Dataset gives them) picked one
    class after another by `labels`, in `model`'s device and dtype."""
    param = next(model.parameters())
    x = torch.stack([dataset[i][0] for i in pick_per_class(labels, n)]).to(param.device, param.dtype)
    return score_and_plot(model.eval(), x, figure, quantile, seed)
