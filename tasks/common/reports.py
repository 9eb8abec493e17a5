"""Classification reports for any task: scikit-learn confusion matrix + per-class report, saved as CSV/TXT/PNG."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from .files import atomic_write, write_csv

__all__ = ["save_classification_report"]


def save_classification_report(
    out_dir: Path, y_true: Sequence[int], y_pred: Sequence[int], class_names: Sequence[str], title: str = ""
) -> dict:
    """Write `confusion_matrix.csv` (rows: true class, columns: predicted), `classification_report.txt` and
    `confusion_matrix.png` to `out_dir`; returns `{"accuracy", "confusion_matrix"}` (labels 0..K-1)."""
    from matplotlib.figure import Figure
    from sklearn.metrics import accuracy_score, classification_report, confusion_matrix

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    labels = list(range(len(class_names)))
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    matrix = confusion_matrix(y_true, y_pred, labels=labels)
    corner = "true\\predicted"
    rows = [{corner: name, **dict(zip(class_names, counts.tolist()))} for name, counts in zip(class_names, matrix)]
    write_csv(out_dir / "confusion_matrix.csv", rows, [corner, *class_names])
    report = classification_report(
        y_true, y_pred, labels=labels, target_names=list(class_names), digits=4, zero_division=0
    )
    accuracy = float(accuracy_score(y_true, y_pred))
    atomic_write(out_dir / "classification_report.txt", f"{title}\naccuracy {accuracy:.4f}\n\n{report}")

    size = max(4.0, 0.32 * len(class_names) + 2)
    fig = Figure(figsize=(size, size), layout="constrained")  # Agg canvas, no pyplot state
    ax = fig.subplots()
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(labels, class_names, rotation=90, fontsize=7)
    ax.set_yticks(labels, class_names, fontsize=7)
    ax.set(xlabel="predicted", ylabel="true", title=f"{title} (accuracy {accuracy:.3f})".strip())
    if len(class_names) <= 20:
        for i, j in np.ndindex(matrix.shape):
            if matrix[i, j]:
                ax.text(j, i, int(matrix[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if matrix[i, j] > matrix.max() / 2 else "black")
    fig.savefig(out_dir / "confusion_matrix.png", dpi=100)
    return {"accuracy": accuracy, "confusion_matrix": matrix}
