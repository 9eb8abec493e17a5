"""The segmentation baseline: one intensity window per class, the best on the training cases, scored on the
validation cases (per-class Dice, mean over cases as MONAI's `DiceMetric(ignore_empty=True)`), on the images as the
network sees them (the deterministic transforms: orientation, spacing, intensity scaling, foreground crop).

A voxel belongs to class c when its intensity lies in c's window [lo, hi), the pair of intensity quantiles (of the
training voxels, `bins` + 1 edges) with the highest Dice for c over all training voxels: what intensity alone can
do, with no shape or context.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["BASELINE_NAME", "best_windows", "network_view", "window_dice", "window_dice_per_class"]

BASELINE_NAME = "best intensity window"


def best_windows(images: Sequence[np.ndarray], labels: Sequence[np.ndarray], num_foreground: int,
                 bins: int = 128) -> list[tuple[float, float, float]]:
    """Per foreground class 1..num_foreground: `(lo, hi, dice)`, the intensity window with the highest Dice over
    all voxels of `images` (pooled) and that Dice."""
    values = np.concatenate([np.ravel(x) for x in images]).astype(np.float64)
    target = np.concatenate([np.ravel(y) for y in labels])
    edges = np.quantile(values, np.linspace(0, 1, bins + 1))
    which = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, bins - 1)
    counts = np.stack([np.bincount(which[target == c], minlength=bins) for c in range(num_foreground + 1)])
    cum_all = np.concatenate([[0], np.cumsum(counts.sum(0))])
    lower = np.concatenate([[-np.inf], edges[1:-1]])  # the first and last bins are open-ended (unseen intensities)
    upper = np.append(edges[1:-1], np.inf)
    windows = []
    for c in range(1, num_foreground + 1):
        cum = np.concatenate([[0], np.cumsum(counts[c])])
        tp = cum[None, :] - cum[:, None]  # bins [lo, hi)
        predicted = cum_all[None, :] - cum_all[:, None]
        dice = np.where(tp > 0, 2 * tp / np.maximum(predicted + cum[-1], 1), 0.0)
        lo, hi = np.unravel_index(int(dice.argmax()), dice.shape)
        windows.append((float(lower[lo]), float(upper[hi - 1]), float(dice.max())))
    return windows


def window_dice_per_class(images: Sequence[np.ndarray], labels: Sequence[np.ndarray],
                          windows: Sequence[tuple[float, float, float]]) -> list[float]:
    """Per class: the Dice of its window, averaged over the cases that contain the class (NaN if none does)."""
    scores = []
    for c, (lo, hi, _) in enumerate(windows, start=1):
        per_case = []
        for image, label in zip(images, labels):
            truth = np.asarray(label) == c
            if not truth.any():
                continue
            predicted = (image >= lo) & (image < hi)
            per_case.append(2 * float((predicted & truth).sum()) / float(predicted.sum() + truth.sum()))
        scores.append(float(np.mean(per_case)) if per_case else float("nan"))
    return scores


def window_dice(train: Sequence[tuple[np.ndarray, np.ndarray]], val: Sequence[tuple[np.ndarray, np.ndarray]],
                num_foreground: int) -> tuple[float, list[float]]:
    """(mean foreground Dice, per-class Dice) on `val` of the windows best on `train`; cases are (image, label)."""
    windows = best_windows([i for i, _ in train], [lbl for _, lbl in train], num_foreground)
    per_class = window_dice_per_class([i for i, _ in val], [lbl for _, lbl in val], windows)
    finite = [d for d in per_class if np.isfinite(d)]
    return (float(np.mean(finite)) if finite else float("nan")), per_class


def network_view(cases: Sequence[dict], transform) -> list[tuple[np.ndarray, np.ndarray]]:
    """`(image, label)` arrays of each case after `transform` (the validation transforms; first channel)."""
    out = []
    for case in cases:
        item = transform(case)
        out.append((np.asarray(item["image"][0], dtype=np.float32), np.asarray(item["label"][0]).astype(np.int64)))
    return out
