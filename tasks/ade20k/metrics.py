"""mmseg's segmentation metrics (``mmseg.core.evaluation.metrics``) from a confusion matrix accumulated over the
whole set with torchmetrics (which also sums it across DDP processes).

Per class c, over all evaluated pixels whose label is not 255: intersection = pixels labelled and predicted c,
union = labelled c + predicted c - intersection. IoU_c = intersection / union, Acc_c = intersection / labelled c;
a 0/0 gives NaN, and mIoU / mAcc are NaN-means, so a class absent from both labels and predictions does not
count, while one that is only predicted counts with IoU 0 (as in mmseg). aAcc = all correct / all labelled pixels.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torchmetrics.classification import MulticlassConfusionMatrix

from .data import IGNORE_INDEX

__all__ = ["confusion_matrix_metric", "segmentation_scores"]


def confusion_matrix_metric(num_classes: int) -> MulticlassConfusionMatrix:
    """Rows: label, columns: prediction; pixels labelled 255 are skipped."""
    return MulticlassConfusionMatrix(num_classes, ignore_index=IGNORE_INDEX, validate_args=False)


def segmentation_scores(confusion: torch.Tensor, class_names: Sequence[str]) -> dict:
    """mIoU, mAcc, aAcc (fractions) and per-class IoU / Acc (NaN where 0/0) from a `(K, K)` confusion matrix."""
    confusion = confusion.double()
    intersect = confusion.diag()
    labelled, predicted = confusion.sum(1), confusion.sum(0)
    union = labelled + predicted - intersect
    iou = intersect / union  # 0/0 -> NaN
    acc = intersect / labelled
    total = labelled.sum().item()
    return {
        "mIoU": _nanmean(iou),
        "mAcc": _nanmean(acc),
        "aAcc": intersect.sum().item() / total if total else math.nan,
        "IoU": dict(zip(class_names, iou.tolist())),
        "Acc": dict(zip(class_names, acc.tolist())),
    }


def _nanmean(values: torch.Tensor) -> float:
    finite = values[~values.isnan()]
    return finite.mean().item() if len(finite) else math.nan
