"""The strongest cheap baseline every task reports beside its network (DESIGN.md "Measuring"): classical
classifiers on hand-made features, the combination chosen by cross-validation inside the training split
(`choose_baseline`), and the sentence that compares a run's score with its baseline in the summary line."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .metrics import Score

__all__ = ["CLASSIFIERS", "BaselineChoice", "choose_baseline", "compare_with_baseline", "fit_predict",
           "logistic_regression"]


def _logistic_regression(seed: int):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=1.0, max_iter=2000, random_state=seed)


def _rbf_svm(seed: int):
    from sklearn.svm import SVC

    return SVC(C=10.0, gamma="scale", random_state=seed)


# Every classifier runs on standardised features (scikit-learn's StandardScaler, fitted on the training data).
CLASSIFIERS = {"logistic regression": _logistic_regression, "RBF SVM": _rbf_svm}


def _pipeline(classifier: str, seed: int):
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), CLASSIFIERS[classifier](seed))


def fit_predict(classifier: str, train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray,
                seed: int = 0) -> np.ndarray:
    """Predicted labels of `test_x` from the standardised `classifier` (a `CLASSIFIERS` name) fitted on
    `(train_x, train_y)`; one training class predicts that class."""
    train_y = np.asarray(train_y)
    classes = np.unique(train_y)
    if len(classes) == 1:
        return np.full(len(test_x), classes[0])
    model = _pipeline(classifier, seed)
    model.fit(np.asarray(train_x, dtype=np.float64), train_y)
    return model.predict(np.asarray(test_x, dtype=np.float64))


def logistic_regression(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, seed: int = 0) -> np.ndarray:
    """`fit_predict` with scikit-learn's standardised multinomial logistic regression (L2, C = 1)."""
    return fit_predict("logistic regression", train_x, train_y, test_x, seed)


@dataclass
class BaselineChoice:
    """The features and classifier cross-validation picked, and every candidate's mean CV accuracy
    (`"<features> + <classifier>"` -> accuracy; empty when there was nothing to cross-validate)."""

    features: str
    classifier: str
    cross_validation: dict[str, float] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.features} + {self.classifier}"


def choose_baseline(features: dict[str, np.ndarray], train_y: np.ndarray, classifiers: Sequence[str] = (
        "logistic regression",), seed: int = 0, folds: int = 3) -> BaselineChoice:
    """The pair of feature set (`{name: (N, D) training features}`) and classifier (`CLASSIFIERS` names) that scores
    best in stratified `folds`-fold cross-validation inside the training split (the evaluation split is never seen).
    Ties go to the earlier (simpler) candidate; with a class of fewer than two examples there is nothing to
    cross-validate, and the first pair is taken."""
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    train_y = np.asarray(train_y)
    pairs = [(f, c) for f in features for c in classifiers]
    counts = np.unique(train_y, return_counts=True)[1]
    if len(counts) < 2 or counts.min() < 2:
        return BaselineChoice(*pairs[0])
    splits = StratifiedKFold(n_splits=min(folds, int(counts.min())), shuffle=True, random_state=seed)
    scores = {f"{f} + {c}": float(cross_val_score(_pipeline(c, seed), np.asarray(features[f], dtype=np.float64),
                                                  train_y, cv=splits).mean()) for f, c in pairs}
    best = max(range(len(pairs)), key=lambda i: (scores[f"{pairs[i][0]} + {pairs[i][1]}"], -i))
    return BaselineChoice(*pairs[best], scores)


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
