"""Interpretability as numbers: attribution maps (focal modulation's own and post-hoc) and their scores.

    maps, scores = evaluate_explanations(model, x, methods=("modulator", "gradcam", "random"))
    scores["modulator"]["fid_in"], scores["gradcam"]["deletion_auc"]

Metrics and their sources: `focalmod.interpret.metrics`; methods: `focalmod.interpret.methods`. The post-hoc
methods (Grad-CAM, integrated gradients) need captum (``pip install focalmod[interpret]``).
"""
from .evaluate import (
    METRICS,
    average_scores,
    evaluate_explanations,
    score_explanations,
    scores_table,
    top_fraction_mask,
)
from .figures import plot_explanations
from .methods import METHODS, explain, last_stage

__all__ = [
    "METHODS",
    "METRICS",
    "average_scores",
    "evaluate_explanations",
    "explain",
    "last_stage",
    "plot_explanations",
    "score_explanations",
    "scores_table",
    "top_fraction_mask",
]
