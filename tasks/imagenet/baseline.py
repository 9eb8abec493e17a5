"""The image-folder baseline a practitioner tries first: a linear classifier (standardised logistic regression,
scikit-learn) on hand-made features, fitted on the training folder and scored (top-1) on the validation folder, the
same images the network sees. The features are chosen by 3-fold cross-validation inside the training split (the
validation folder is never used to choose) among the following. A linear SVM on the same features was measured too
and never won the cross-validation on the realsets (docs/realsets.md), so it is not a candidate (it doubled the cost).

- pixels: the image as RGB, resized whole (box filter) to 16 x 16, 768 numbers in [0, 1] (the earlier baseline);
- HOG: histograms of oriented gradients (scikit-image, Dalal & Triggs 2005: 9 orientations, 8 x 8-pixel cells,
  2 x 2-cell blocks, L2-Hys) of the grey image resized whole to 64 x 64;
- HOG + colour: the HOG features and an 8-bin histogram of each RGB channel.

On large sets the fit uses at most `max_train` training images (the first files of each class, equally many per
class); the score is always on every readable validation image.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..common.baseline import BaselineChoice, choose_baseline, fit_predict

__all__ = ["FEATURES", "ImageBaseline", "colour_histogram", "hog_features", "image_baseline", "pixel_features"]

PIXELS = 16
HOG_SIDE = 64
COLOUR_BINS = 8


def _images(paths: Sequence[Path | str], size: int, mode: str, resample: int) -> list[np.ndarray]:
    from PIL import Image

    out = []
    for path in paths:
        with Image.open(path) as img:
            out.append(np.asarray(img.convert(mode).resize((size, size), resample), dtype=np.float32) / 255.0)
    return out


def pixel_features(paths: Sequence[Path | str], size: int = PIXELS) -> np.ndarray:
    """`(N, 3 * size * size)` float32 in [0, 1]: every image as RGB, resized whole with a box filter."""
    from PIL import Image

    images = _images(paths, size, "RGB", Image.Resampling.BOX)
    return np.stack([im.reshape(-1) for im in images]) if images else np.zeros((0, 3 * size * size), np.float32)


def hog_features(paths: Sequence[Path | str], side: int = HOG_SIDE) -> np.ndarray:
    """`(N, D)` HOG descriptors of the grey images resized whole to `side` x `side` (scikit-image)."""
    from PIL import Image
    from skimage.feature import hog

    return np.stack([hog(im, orientations=9, pixels_per_cell=(8, 8), cells_per_block=(2, 2), block_norm="L2-Hys")
                     for im in _images(paths, side, "L", Image.Resampling.BILINEAR)]).astype(np.float32)


def colour_histogram(paths: Sequence[Path | str], bins: int = COLOUR_BINS) -> np.ndarray:
    """`(N, 3 * bins)`: the fraction of pixels in each of `bins` intensity bins, per RGB channel."""
    from PIL import Image

    rows = []
    for im in _images(paths, HOG_SIDE, "RGB", Image.Resampling.BILINEAR):
        rows.append(np.concatenate([np.histogram(im[..., c], bins=bins, range=(0.0, 1.0))[0] / im[..., c].size
                                    for c in range(3)]))
    return np.asarray(rows, dtype=np.float32)


FEATURES: dict[str, Callable[[Sequence[Path | str]], np.ndarray]] = {
    "pixels": pixel_features,
    "HOG": hog_features,
    "HOG + colour": lambda paths: np.concatenate([hog_features(paths), colour_histogram(paths)], axis=1),
}


CLASSIFIERS = ("logistic regression",)


@dataclass
class ImageBaseline:
    """`accuracy` on the validation images of the `choice` (features + classifier, with every candidate's CV
    accuracy on the training images), fitted on `train_images` images."""

    choice: BaselineChoice
    accuracy: float
    train_images: int

    @property
    def name(self) -> str:
        return self.choice.name


def _per_class_cap(samples: Sequence[tuple[str, int]], max_total: int) -> list[tuple[str, int]]:
    """At most `max_total` samples, equally many per class (the first ones of each)."""
    by_class: dict[int, list[tuple[str, int]]] = {}
    for sample in samples:
        by_class.setdefault(int(sample[1]), []).append(sample)
    cap = max(1, max_total // max(len(by_class), 1))
    return [s for label in sorted(by_class) for s in by_class[label][:cap]]


def image_baseline(train: Sequence[tuple[str, int]], val: Sequence[tuple[str, int]], max_train: int = 20000,
                   seed: int = 0, features: Sequence[str] = tuple(FEATURES),
                   classifiers: Sequence[str] = CLASSIFIERS) -> ImageBaseline:
    """The baseline on `val` with features and classifier chosen by cross-validation on `train`; samples are
    `(path, class index)` pairs."""
    train = _per_class_cap(train, max_train)
    train_y, val_y = np.array([y for _, y in train]), np.array([y for _, y in val])
    train_x = {name: FEATURES[name]([p for p, _ in train]) for name in features}
    choice = choose_baseline(train_x, train_y, classifiers, seed)
    val_x = FEATURES[choice.features]([p for p, _ in val])
    predicted = fit_predict(choice.classifier, train_x[choice.features], train_y, val_x, seed)
    return ImageBaseline(choice, float((predicted == val_y).mean()), len(train))
