"""Optimiser pieces the training recipes share: linear LR scaling, AdamW without decay on 1-D params,
and a per-step cosine schedule with linear warmup (timm `CosineLRScheduler` semantics as a `LambdaLR`)."""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
from timm.optim import param_groups_weight_decay
from torch import nn
from torch.optim.lr_scheduler import LambdaLR


def scaled_lr(base_lr: float, total_batch: int, reference_batch: int = 512) -> float:
    """Linear scaling rule: `base_lr` is quoted per `reference_batch` images (FocalNet/Swin/ConvNeXt use 512)."""
    return base_lr * total_batch / reference_batch


def adamw_without_1d_decay(
    model: nn.Module,
    lr: float,
    weight_decay: float,
    betas: Sequence[float] = (0.9, 0.999),
    eps: float = 1e-8,
) -> torch.optim.AdamW:
    """AdamW whose 1-D parameters (norm weights, biases, layer-scale gammas) and `model.no_weight_decay()` names
    get no weight decay, as in the official FocalNet/Swin `optimizer.py`."""
    skip = model.no_weight_decay() if hasattr(model, "no_weight_decay") else ()
    groups = param_groups_weight_decay(model, weight_decay, no_weight_decay_list=skip)
    return torch.optim.AdamW(groups, lr=lr, betas=tuple(betas), eps=eps)


def cosine_with_warmup(
    total_steps: int, warmup_steps: int, peak_lr: float, warmup_lr: float, min_lr: float
) -> Callable[[int], float]:
    """LR at optimiser step `t` divided by `peak_lr`: linear from `warmup_lr` to `peak_lr` over `warmup_steps`,
    then `min_lr + (peak_lr - min_lr) * (1 + cos(pi * t / total_steps)) / 2` (timm `CosineLRScheduler` with
    `t_in_epochs=False`, `warmup_prefix=False`, as the official FocalNet `lr_scheduler.py` builds it)."""
    total_steps = max(int(total_steps), 1)
    warmup_steps = max(int(warmup_steps), 0)

    def factor(step: int) -> float:
        if step < warmup_steps:
            lr = warmup_lr + step * (peak_lr - warmup_lr) / warmup_steps
        elif step >= total_steps:
            lr = min_lr
        else:
            lr = min_lr + 0.5 * (peak_lr - min_lr) * (1 + math.cos(math.pi * step / total_steps))
        return lr / peak_lr if peak_lr > 0 else 0.0

    return factor


def cosine_warmup_scheduler(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int, warmup_lr: float, min_lr: float
) -> LambdaLR:
    """`LambdaLR` stepped once per optimiser step (Lightning `interval="step"`); the peak is each group's `lr`.
    Its state (`last_epoch`) is saved in Lightning checkpoints, so `--resume` continues the same curve."""
    peak = max(group["lr"] for group in optimizer.param_groups)
    return LambdaLR(optimizer, cosine_with_warmup(total_steps, warmup_steps, peak, warmup_lr, min_lr))
