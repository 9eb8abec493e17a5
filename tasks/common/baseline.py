"""The simple, well-known baseline every task reports beside its network (DESIGN.md "Measuring"): the linear
classifier the sound and image tasks fit on their own hand-made features, and the sentence that compares a run's
score with its baseline in the summary line."""
from __future__ import annotations

import numpy as np

from .metrics import Score

__all__ = ["compare_with_baseline", "logistic_regression"]


def logistic_regression(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, seed: int = 0) -> np.ndarray:
    """Predicted labels of `test_x` from scikit-learn's standardised multinomial logistic regression (L2, C = 1)
    fitted on `(train_x, train_y)`; one training class predicts that class."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    train_y = np.asarray(train_y)
    classes = np.unique(train_y)
    if len(classes) == 1:
        return np.full(len(test_x), classes[0])
    model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000, random_state=seed))
    model.fit(np.asarray(train_x, dtype=np.float64), train_y)
    return model.predict(np.asarray(test_x, dtype=np.float64))


def compare_with_baseline(metric: Score, baseline: Score | None, why_none: str = "") -> str:
    """One sentence for the summary: the baseline's score and whether the network beats it (higher is better).
    `why_none`: said when there is no baseline."""
    if baseline is None:
        return f"no baseline: {why_none}" if why_none else "no baseline"
    if baseline.value is None:
        return f"baseline {baseline.name}: could not be computed"
    line = f"baseline {baseline.name}: {baseline.value:.4f}"
    if metric.value is None:
        return f"{line}; the network's {metric.name} could not be computed"
    if metric.value > baseline.value:
        return f"{line}; the network beats it by {metric.value - baseline.value:.4f}"
    return (f"{line}; the network does NOT beat its baseline ({metric.name} {metric.value:.4f} vs "
            f"{baseline.value:.4f})")
