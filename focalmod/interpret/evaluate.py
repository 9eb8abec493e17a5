"""Score attribution maps of a classifier with the metrics of `focalmod.interpret.metrics`.

The explanation mask ``M`` of a map keeps its top ``1 - quantile`` fraction of positions (the sound paper's 0.9
quantile threshold, taken by rank so that ties and constant maps keep exactly that fraction instead of everything).
Removed positions take the `baseline` value in every channel (0: the mean of standardised inputs).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import nn

from . import metrics as m
from .methods import METHODS, explain

__all__ = ["METRICS", "average_scores", "evaluate_explanations", "score_explanations", "scores_table",
           "top_fraction_mask"]

# Metric keys of `score_explanations`, and whether higher is better.
METRICS = {
    "fid_in": True,
    "ff_masked_out": True,
    "ff_masked_out_median": True,
    "ff_masked_in": False,
    "ai": True,
    "ad": False,
    "ag": True,
    "sparseness": True,
    "complexity": False,
    "deletion_auc": False,
    "insertion_auc": True,
}


def top_fraction_mask(attribution: torch.Tensor, fraction: float) -> torch.Tensor:
    """`(B, *S)` bool mask of the `ceil(fraction * n)` highest positions of each sample (stable order on ties)."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    flat = attribution.flatten(1)
    n = flat.shape[1]
    keep = max(1, min(n, int(torch.tensor(fraction * n).ceil())))
    order = flat.argsort(dim=1, descending=True, stable=True)
    mask = torch.zeros_like(flat, dtype=torch.bool).scatter_(1, order[:, :keep], True)
    return mask.view_as(attribution)


def _apply(x: torch.Tensor, keep: torch.Tensor, baseline: float) -> torch.Tensor:
    """`x` where `keep` `(B, *S)` is set (all channels), `baseline` elsewhere."""
    return torch.where(keep[:, None], x, torch.full_like(x, baseline))


def _probs(model: nn.Module, x: torch.Tensor, target: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Softmax probability of `target` for `x` holding k copies of the batch (sample order repeats)."""
    probs = torch.cat([model(chunk).float().softmax(-1) for chunk in x.split(batch_size)])
    return probs.gather(1, target.repeat(len(x) // len(target))[:, None])[:, 0]


@torch.no_grad()
def score_explanations(
    model: nn.Module,
    x: torch.Tensor,
    attributions: Mapping[str, torch.Tensor],
    quantile: float = 0.9,
    baseline: float = 0.0,
    curve_steps: int = 16,
    batch_size: int = 64,
) -> dict[str, dict[str, float]]:
    """``{method: {metric: mean over samples}}`` for `(B, *S)` maps of input `x` `(B, C, *S)`.

    Fid-In, AI, AD, AG and ``ff_masked_in`` use the masked-in input (top ``1 - quantile`` kept), ``ff_masked_out``
    (mean and median) the masked-out one (the L-MAC recipe's FF); sparseness and complexity score the map itself;
    deletion / insertion AUC use `curve_steps + 1` points. See `METRICS` for which direction is better.
    """
    if not 0.0 <= quantile < 1.0:
        raise ValueError(f"quantile must be in [0, 1), got {quantile}")
    if curve_steps < 1:
        raise ValueError(f"curve_steps must be >= 1, got {curve_steps}")
    training = model.training
    model.eval()
    try:
        logits = torch.cat([model(chunk) for chunk in x.split(batch_size)]).float()
        target = logits.argmax(-1)
        p = logits.softmax(-1).gather(1, target[:, None])[:, 0]
        return {name: _score(model, x, attr, target, logits, p, quantile, baseline, curve_steps, batch_size)
                for name, attr in attributions.items()}
    finally:
        model.train(training)


def _score(model, x, attr, target, logits, p, quantile, baseline, curve_steps, batch_size) -> dict[str, float]:
    if attr.shape != (x.shape[0], *x.shape[2:]):
        raise ValueError(f"attribution of shape {tuple(attr.shape)} does not match input {tuple(x.shape)}: "
                         f"expected {(x.shape[0], *x.shape[2:])}")
    attr = attr.to(x.device)
    keep = top_fraction_mask(attr, 1.0 - quantile)
    masked_in, masked_out = _apply(x, keep, baseline), _apply(x, ~keep, baseline)
    logits_in = torch.cat([model(chunk) for chunk in masked_in.split(batch_size)]).float()
    o = logits_in.softmax(-1).gather(1, target[:, None])[:, 0]
    p_out = _probs(model, masked_out, target, batch_size)
    ff_out = m.faithfulness(p, p_out)
    deletion, insertion = _curves(model, x, attr, target, baseline, curve_steps, batch_size)
    scores = {
        "fid_in": m.input_fidelity(logits, logits_in).mean(),
        "ff_masked_out": ff_out.mean(),
        "ff_masked_out_median": ff_out.median(),
        "ff_masked_in": m.faithfulness(p, o).mean(),
        "ai": m.average_increase(p, o).mean(),
        "ad": m.average_drop(p, o).mean(),
        "ag": m.average_gain(p, o).mean(),
        "sparseness": m.sparseness(attr).mean(),
        "complexity": m.complexity(attr).mean(),
        "deletion_auc": m.curve_auc(deletion).mean(),
        "insertion_auc": m.curve_auc(insertion).mean(),
    }
    return {k: float(v) for k, v in scores.items()}


def _curves(model, x, attr, target, baseline, steps, batch_size) -> tuple[torch.Tensor, torch.Tensor]:
    """`(B, steps + 1)` probabilities of `target` while deleting / inserting positions in attribution order."""
    fractions = [s / steps for s in range(steps + 1)]
    deleted, inserted = [], []
    for fraction in fractions:
        top = top_fraction_mask(attr, fraction) if fraction > 0 else torch.zeros_like(attr, dtype=torch.bool)
        deleted.append(_apply(x, ~top, baseline))
        inserted.append(_apply(x, top, baseline))
    probs = _probs(model, torch.cat(deleted + inserted), target, batch_size).view(2 * len(fractions), -1)
    return probs[: len(fractions)].T, probs[len(fractions):].T


def evaluate_explanations(
    model: nn.Module,
    x: torch.Tensor,
    methods: Sequence[str] = METHODS,
    quantile: float = 0.9,
    baseline: float = 0.0,
    curve_steps: int = 16,
    seed: int = 0,
    ig_steps: int = 32,
    batch_size: int = 64,
) -> tuple[dict[str, torch.Tensor], dict[str, dict[str, float]]]:
    """Compute the maps of `methods` (see `explain`) for `x` and score them: returns `(maps, scores)`.

    Methods the model cannot give (``modulator`` / ``gates`` without `FocalModulation` layers) raise a ValueError
    naming the method; leave them out for such models.
    """
    maps = {}
    for method in methods:
        try:
            maps[method] = explain(model, x, method, baseline=baseline, ig_steps=ig_steps, seed=seed)
        except ValueError as err:
            raise ValueError(f"explanation method {method!r}: {err}") from None
    return maps, score_explanations(model, x, maps, quantile, baseline, curve_steps, batch_size)


def average_scores(runs: Sequence[Mapping[str, Mapping[str, float]]]) -> dict[str, dict[str, float]]:
    """Mean of each method's metrics over several `score_explanations` results (e.g. one per fold); a method or
    metric missing from some runs is averaged over the runs that have it."""
    values: dict[str, dict[str, list[float]]] = {}
    for scores in runs:
        for method, per_metric in scores.items():
            for metric, value in per_metric.items():
                values.setdefault(method, {}).setdefault(metric, []).append(float(value))
    return {method: {metric: sum(v) / len(v) for metric, v in per_metric.items()}
            for method, per_metric in values.items()}


def scores_table(scores: Mapping[str, Mapping[str, float]], metrics: Sequence[str] = tuple(METRICS)) -> str:
    """A Markdown table, one row per method, one column per metric (arrows say which direction is better)."""
    header = ["method", *(f"{k} {'↑' if METRICS.get(k, True) else '↓'}" for k in metrics)]
    rows = [[method, *(f"{per_metric[k]:.3f}" if k in per_metric else "" for k in metrics)]
            for method, per_metric in scores.items()]
    lines = [header, ["---"] * len(header), *rows]
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)
