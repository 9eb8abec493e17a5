"""LayerNorm over the channel dim of channels-first N-d tensors."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._nd import to_channels_first, to_channels_last


class LayerNormNd(nn.LayerNorm):
    """`nn.LayerNorm(C)` applied to `(B, C, *S)` by normalising the channel dim (same state-dict keys)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.layer_norm(to_channels_last(x), self.normalized_shape, self.weight, self.bias, self.eps)
        return to_channels_first(y)
