"""Scores for explanations of a classifier, as functions of tensors (no model inside).

Notation (SpeechBrain's sound-interpretability recipes, Della Libera et al. 2024; L-MAC, Paissan et al. 2024):
``c`` is the class the model predicts on the original input ``X``, ``p = p_c(X)`` its softmax probability and
``o = p_c(X_in)`` the probability of the same class on the *masked-in* input ``X_in = M * X`` (only the explained
region kept). Every function returns one value per sample; averages over samples are taken by the caller.

* Fid-In (input fidelity): ``1[argmax f(X_in) = c]``; higher is better.
* FF (faithfulness): ``p - p_c(X')``. On the masked-out input ``X' = (1 - M) * X`` (the L-MAC recipe) a faithful
  explanation removes what the decision rests on, so higher is better; on the masked-in input lower is better.
* AI (average increase): ``100 * 1[p < o]``; AD (average drop): ``100 * relu(p - o) / p``;
  AG (average gain): ``100 * relu(o - p) / (1 - p)`` (Chattopadhay et al. 2018, Grad-CAM++ Sec. 6; AG from L-MAC).
* Sparseness: the Gini index of ``|a|`` (Chalasani et al. 2020; quantus ``Sparseness``); 1 = all mass on one
  position, 0 = uniform; higher means a more concentrated explanation.
* Complexity: the entropy of ``|a| / sum |a|`` (Bhatt et al. 2020; quantus ``Complexity``), in nats; lower is less
  complex. It grows with log(number of positions), so compare it only at equal input size.
* Deletion / insertion AUC (Petsiuk et al. 2018, RISE Sec. 4.1): ``p_c`` while the positions are removed (replaced
  by the baseline) or revealed in decreasing attribution order, averaged over the curve (trapezoid rule on [0, 1]).
  Lower deletion AUC and higher insertion AUC are better.
"""
from __future__ import annotations

import torch

__all__ = [
    "average_drop",
    "average_gain",
    "average_increase",
    "complexity",
    "curve_auc",
    "faithfulness",
    "input_fidelity",
    "sparseness",
]


def _check_probs(p: torch.Tensor, o: torch.Tensor) -> None:
    if p.shape != o.shape or p.ndim != 1:
        raise ValueError(f"expected two (B,) probability vectors, got {tuple(p.shape)} and {tuple(o.shape)}")


def input_fidelity(logits: torch.Tensor, logits_masked_in: torch.Tensor) -> torch.Tensor:
    """`(B,)` 1.0 where the masked-in input keeps the original prediction, else 0.0."""
    if logits.shape != logits_masked_in.shape:
        raise ValueError(f"logit shapes differ: {tuple(logits.shape)} vs {tuple(logits_masked_in.shape)}")
    return (logits.argmax(-1) == logits_masked_in.argmax(-1)).float()


def faithfulness(p: torch.Tensor, p_masked: torch.Tensor) -> torch.Tensor:
    """`(B,)` ``p_c(X) - p_c(X')`` for the masked input `X'` (masked-out: higher is better; masked-in: lower)."""
    _check_probs(p, p_masked)
    return p - p_masked


def average_increase(p: torch.Tensor, o: torch.Tensor) -> torch.Tensor:
    """`(B,)` 100 where the masked-in input raises the predicted class's probability, else 0."""
    _check_probs(p, o)
    return 100.0 * (p < o).float()


def average_drop(p: torch.Tensor, o: torch.Tensor) -> torch.Tensor:
    """`(B,)` ``100 * relu(p - o) / p``: relative confidence lost by keeping only the explained region."""
    _check_probs(p, o)
    return 100.0 * torch.relu(p - o) / p.clamp_min(1e-12)


def average_gain(p: torch.Tensor, o: torch.Tensor) -> torch.Tensor:
    """`(B,)` ``100 * relu(o - p) / (1 - p)``: relative confidence gained by keeping only the explained region."""
    _check_probs(p, o)
    return 100.0 * torch.relu(o - p) / (1.0 - p).clamp_min(1e-12)


def sparseness(attribution: torch.Tensor) -> torch.Tensor:
    """`(B,)` Gini index of ``|a|`` over all non-batch positions of `attribution` `(B, ...)`.

    ``G = sum_k (2k - n - 1) a_(k) / (n sum_k a_(k))`` over the ascending sorted values ``a_(1..n)``, with quantus'
    ``+1e-7`` so an all-zero map scores 0 instead of NaN.
    """
    a = attribution.detach().flatten(1).abs().double() + 1e-7
    n = a.shape[1]
    a, _ = a.sort(dim=1)
    k = torch.arange(1, n + 1, dtype=a.dtype, device=a.device)
    return ((2 * k - n - 1) * a).sum(1) / (n * a.sum(1))


def complexity(attribution: torch.Tensor) -> torch.Tensor:
    """`(B,)` entropy (nats) of ``|a| / sum |a|`` over all non-batch positions of `attribution` `(B, ...)`."""
    a = attribution.detach().flatten(1).abs().double()
    total = a.sum(1, keepdim=True)
    q = torch.where(total > 0, a / total.clamp_min(1e-300), torch.full_like(a, 1.0 / a.shape[1]))
    return -(q * torch.log(q.clamp_min(1e-300))).sum(1)


def curve_auc(values: torch.Tensor) -> torch.Tensor:
    """`(B,)` area under `(B, steps + 1)` curves sampled at equally spaced fractions of [0, 1] (trapezoid rule)."""
    if values.ndim != 2 or values.shape[1] < 2:
        raise ValueError(f"expected (B, steps + 1) curve values with steps >= 1, got {tuple(values.shape)}")
    return torch.trapezoid(values, dx=1.0 / (values.shape[1] - 1), dim=1)
