"""The segmentation baselines, fitted on the training cases and scored on the validation cases (per-class Dice, mean
over the cases that hold the class, as MONAI's `DiceMetric(ignore_empty=True)`), on the images as the network sees
them (the deterministic transforms: orientation, spacing, intensity scaling, foreground crop).

- The voxel classifier: scikit-learn's histogram gradient boosting on each voxel's intensity, its Gaussian-smoothed
  intensities at 3 scales (sigma 1, 2, 4 voxels) and its position normalised to [0, 1] per axis, fitted on a
  class-balanced subsample of the training voxels; what a practitioner tries before a network: intensity, local
  context and rough location, no learned shape.
- The intensity window: a voxel belongs to class c when its intensity lies in c's window [lo, hi), the pair of
  intensity quantiles (of the training voxels, `bins` + 1 edges) with the highest Dice for c over all training
  voxels: what intensity alone can do.

A run reports both; its baseline is the one that scores better in 2-fold cross-validation over the training cases
(the validation cases are never used to choose). Position helps where the cases share an anatomy frame and misleads
where they do not (blocks cut from different places), which is why neither is always the stronger.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

__all__ = ["BASELINE_NAME", "WINDOW_NAME", "ScanBaseline", "best_windows", "network_view", "scan_baseline",
           "voxel_classifier_dice", "voxel_features", "window_dice", "window_dice_per_class"]

BASELINE_NAME = "voxel classifier (intensity, smoothed intensities, position; gradient boosting)"
WINDOW_NAME = "best intensity window"
SIGMAS = (1.0, 2.0, 4.0)


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


def dice_per_class(predictions: Sequence[Callable[[int], np.ndarray]], labels: Sequence[np.ndarray],
                   num_foreground: int) -> list[float]:
    """Per class 1..num_foreground: the Dice of `predictions[i](c)` (case i's boolean mask of class c) against the
    labels, averaged over the cases that contain the class (NaN if none does)."""
    scores = []
    for c in range(1, num_foreground + 1):
        per_case = []
        for predicted, label in zip(predictions, labels):
            truth = np.asarray(label) == c
            if not truth.any():
                continue
            mask = predicted(c)
            per_case.append(2 * float((mask & truth).sum()) / float(mask.sum() + truth.sum()))
        scores.append(float(np.mean(per_case)) if per_case else float("nan"))
    return scores


def window_dice_per_class(images: Sequence[np.ndarray], labels: Sequence[np.ndarray],
                          windows: Sequence[tuple[float, float, float]]) -> list[float]:
    """Per class: the Dice of its window, averaged over the cases that contain the class (NaN if none does)."""
    masks = [lambda c, x=image: (x >= windows[c - 1][0]) & (x < windows[c - 1][1]) for image in images]
    return dice_per_class(masks, labels, len(windows))


def window_dice(train: Sequence[tuple[np.ndarray, np.ndarray]], val: Sequence[tuple[np.ndarray, np.ndarray]],
                num_foreground: int) -> tuple[float, list[float]]:
    """(mean foreground Dice, per-class Dice) on `val` of the windows best on `train`; cases are (image, label)."""
    windows = best_windows([i for i, _ in train], [lbl for _, lbl in train], num_foreground)
    per_class = window_dice_per_class([i for i, _ in val], [lbl for _, lbl in val], windows)
    return _mean(per_class), per_class


def _mean(per_class: Sequence[float]) -> float:
    finite = [d for d in per_class if np.isfinite(d)]
    return float(np.mean(finite)) if finite else float("nan")


def voxel_features(image: np.ndarray) -> np.ndarray:
    """`(voxels, 1 + len(SIGMAS) + ndim)`: each voxel's intensity, its Gaussian-smoothed intensities and its
    position normalised to [0, 1] per axis."""
    from scipy.ndimage import gaussian_filter

    image = np.asarray(image, dtype=np.float32)
    channels = [image] + [gaussian_filter(image, sigma) for sigma in SIGMAS]
    grids = list(np.meshgrid(*[np.linspace(0.0, 1.0, n, dtype=np.float32) for n in image.shape], indexing="ij"))
    return np.stack([c.ravel() for c in channels + grids], axis=1)


def voxel_classifier_dice(train: Sequence[tuple[np.ndarray, np.ndarray]], val: Sequence[tuple[np.ndarray, np.ndarray]],
                          num_foreground: int, max_voxels: int = 200_000, seed: int = 0
                          ) -> tuple[float, list[float]]:
    """(mean foreground Dice, per-class Dice) on `val` of the voxel classifier fitted on at most `max_voxels`
    training voxels, equally many per class (all of a rarer class)."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    rng = np.random.default_rng(seed)
    features = [voxel_features(image) for image, _ in train]
    x, y = np.concatenate(features), np.concatenate([np.ravel(label) for _, label in train])
    per_class = max_voxels // (num_foreground + 1)
    keep = np.concatenate([rng.permutation(np.flatnonzero(y == c))[:per_class] for c in np.unique(y)])
    model = HistGradientBoostingClassifier(max_iter=100, random_state=seed).fit(x[keep], y[keep])
    predictions = [model.predict(voxel_features(image)).reshape(np.shape(image)) for image, _ in val]
    scores = dice_per_class([lambda c, p=p: p == c for p in predictions], [label for _, label in val], num_foreground)
    return _mean(scores), scores


@dataclass
class ScanBaseline:
    """Both baselines' Dice (mean and per class) on the validation cases, their 2-fold CV Dice on the training cases
    and which of them the run reports (`name`, `dice`, `per_class`: the chosen one)."""

    voxel: tuple[float, list[float]]
    window: tuple[float, list[float]]
    cross_validation: dict[str, float]
    name: str

    @property
    def dice(self) -> float:
        return (self.voxel if self.name == BASELINE_NAME else self.window)[0]

    @property
    def per_class(self) -> list[float]:
        return (self.voxel if self.name == BASELINE_NAME else self.window)[1]


def scan_baseline(train: Sequence[tuple[np.ndarray, np.ndarray]], val: Sequence[tuple[np.ndarray, np.ndarray]],
                  num_foreground: int, seed: int = 0) -> ScanBaseline:
    """Both baselines on the same cases (`(image, label)` arrays as the network sees them), and the one 2-fold
    cross-validation over the training cases prefers (the voxel classifier with fewer than 2 training cases)."""
    fits = {BASELINE_NAME: lambda a, b: voxel_classifier_dice(a, b, num_foreground, seed=seed)[0],
            WINDOW_NAME: lambda a, b: window_dice(a, b, num_foreground)[0]}
    halves = (list(train[0::2]), list(train[1::2]))
    scores = {}
    if len(train) >= 2:
        scores = {name: float(np.nanmean([fit(halves[0], halves[1]), fit(halves[1], halves[0])]))
                  for name, fit in fits.items()}
    chosen = max(scores, key=lambda n: (scores[n], n == BASELINE_NAME)) if scores else BASELINE_NAME
    return ScanBaseline(voxel_classifier_dice(train, val, num_foreground, seed=seed),
                        window_dice(train, val, num_foreground), scores, chosen)


def network_view(cases: Sequence[dict], transform) -> list[tuple[np.ndarray, np.ndarray]]:
    """`(image, label)` arrays of each case after `transform` (the validation transforms; first channel)."""
    out = []
    for case in cases:
        item = transform(case)
        out.append((np.asarray(item["image"][0], dtype=np.float32), np.asarray(item["label"][0]).astype(np.int64)))
    return out
