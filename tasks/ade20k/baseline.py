"""The per-pixel baseline every run reports beside the network: multinomial logistic regression on a pixel's RGB
colour (scikit-learn), fitted on pixels sampled from the training split and scored with the same mIoU on the
evaluated split at the original resolution."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from .data import IGNORE_INDEX, Sample, load_image, load_label
from .metrics import segmentation_scores

__all__ = ["BASELINE_NAME", "pixel_colour_baseline"]

BASELINE_NAME = "per-pixel logistic regression on RGB (scikit-learn)"


def pixel_colour_baseline(
    train: Sequence[Sample], evaluated: Sequence[Sample], class_names: Sequence[str], max_images: int = 500,
    pixels_per_image: int = 400, seed: int = 0,
) -> dict:
    """`{"name", "value" (mIoU), "mAcc", "aAcc"}` of the colour-only classifier."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(seed)
    picked = rng.permutation(len(train))[:max_images]
    features, targets = [], []
    for i in picked:
        image, label = load_image(train[i].image), load_label(train[i].label)
        valid = np.flatnonzero(label.reshape(-1) != IGNORE_INDEX)
        chosen = rng.choice(valid, size=min(pixels_per_image, len(valid)), replace=False)
        features.append(image.reshape(-1, 3)[chosen])
        targets.append(label.reshape(-1)[chosen])
    x, y = np.concatenate(features).astype(np.float32) / 255.0, np.concatenate(targets)
    classifier = LogisticRegression(max_iter=500).fit(x, y)
    num_classes = len(class_names)
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.float64)
    for sample in evaluated:
        image, label = load_image(sample.image), load_label(sample.label).reshape(-1)
        pred = classifier.predict(image.reshape(-1, 3).astype(np.float32) / 255.0)
        keep = label != IGNORE_INDEX
        pairs = label[keep].astype(np.int64) * num_classes + pred[keep].astype(np.int64)
        confusion += torch.from_numpy(np.bincount(pairs, minlength=num_classes**2).reshape(num_classes, -1))
    scores = segmentation_scores(confusion, class_names)
    return {"name": BASELINE_NAME, "value": scores["mIoU"], "mAcc": scores["mAcc"], "aAcc": scores["aAcc"]}
