"""Classifier head for channels-first N-d feature maps: global pool -> dropout -> `fc`."""
from __future__ import annotations

import torch
from torch import nn

POOL_TYPES = ("avg", "max", "avgmax", "")  # timm's names; avgmax = (avg + max) / 2


class ClassifierHead(nn.Module):
    """`(B, C, *S)` -> `(B, num_classes)`; `pool_type=''` keeps the map (for `reset_classifier(0, '')`)."""

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        pool_type: str = "avg",
        drop_rate: float = 0.0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.in_features, self.num_features, self.drop_rate = in_features, in_features, drop_rate
        self.drop = nn.Dropout(drop_rate)
        self.reset(num_classes, pool_type, device=device, dtype=dtype)

    def reset(
        self,
        num_classes: int,
        pool_type: str | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        if pool_type is not None:
            if pool_type not in POOL_TYPES:
                raise ValueError(f"global_pool must be one of {POOL_TYPES}, got {pool_type!r}")
            self.pool_type = pool_type
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0, got {num_classes}")
        self.num_classes = num_classes
        self.fc = nn.Linear(self.in_features, num_classes, device=device, dtype=dtype) if num_classes else nn.Identity()
        self.fc.train(self.training)  # a new classifier follows the model's train/eval mode (timm's contract)

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool_type == "":
            return x
        flat = x.flatten(2)
        if self.pool_type == "avg":
            return flat.mean(-1)
        if self.pool_type == "max":
            return flat.amax(-1)
        return 0.5 * (flat.mean(-1) + flat.amax(-1))  # avgmax

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.drop(self.pool(x))
        return x if pre_logits else self.fc(x)
