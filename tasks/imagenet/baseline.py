"""The image-folder baseline: logistic regression (scikit-learn) on downsampled pixels, fitted on the training
folder and scored (top-1) on the validation folder, the same images the network sees.

Each image is converted to RGB and resized whole (no crop, box filter) to 16 x 16, 768 numbers in [0, 1]. On large
sets the fit uses at most `max_train` training images (the first files of each class, equally many per class);
the score is always on every readable validation image.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..common.baseline import logistic_regression

__all__ = ["BASELINE_NAME", "PIXELS", "pixel_baseline_accuracy", "pixel_features"]

PIXELS = 16
BASELINE_NAME = f"logistic regression on {PIXELS}x{PIXELS} pixels"


def pixel_features(paths: Sequence[Path | str], size: int = PIXELS) -> np.ndarray:
    """`(N, 3 * size * size)` float32 in [0, 1]: every image as RGB, resized whole with a box filter."""
    from PIL import Image

    out = np.empty((len(paths), 3 * size * size), dtype=np.float32)
    for i, path in enumerate(paths):
        with Image.open(path) as img:
            small = img.convert("RGB").resize((size, size), Image.Resampling.BOX)
        out[i] = np.asarray(small, dtype=np.float32).reshape(-1) / 255.0
    return out


def _per_class_cap(samples: Sequence[tuple[str, int]], max_total: int) -> list[tuple[str, int]]:
    """At most `max_total` samples, equally many per class (the first ones of each)."""
    by_class: dict[int, list[tuple[str, int]]] = {}
    for sample in samples:
        by_class.setdefault(int(sample[1]), []).append(sample)
    cap = max(1, max_total // max(len(by_class), 1))
    return [s for label in sorted(by_class) for s in by_class[label][:cap]]


def pixel_baseline_accuracy(train: Sequence[tuple[str, int]], val: Sequence[tuple[str, int]],
                            max_train: int = 20000) -> tuple[float, int]:
    """(top-1 of the baseline on `val`, training images used); samples are `(path, class index)` pairs."""
    train = _per_class_cap(train, max_train)
    train_x = pixel_features([p for p, _ in train])
    val_x = pixel_features([p for p, _ in val])
    predicted = logistic_regression(train_x, np.array([y for _, y in train]), val_x)
    return float((predicted == np.array([y for _, y in val])).mean()), len(train)
