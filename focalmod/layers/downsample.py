"""Strided-conv patch embedding / patch merging for N-d inputs (FocalNet stem and between-stage downsample)."""
from __future__ import annotations

import torch
from torch import nn

from ._nd import check_channels_first, check_positive, checks_apply, conv_nd
from .norm import LayerNormNd


class Downsample(nn.Module):
    """Conv with kernel = stride (or overlapping: k7 p2 for stride 4, k3 p1 for stride 2), then LayerNorm.

    `(B, in_chs, *S)` -> `(B, out_chs, *S // stride)`. Sizes that are not multiples of the stride are floored, as
    in the official FocalNet; inputs smaller than the kernel raise a ValueError.
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        spatial_dims: int = 2,
        stride: int = 4,
        overlap: bool = False,
        norm: bool = True,
        norm_eps: float = 1e-5,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        check_positive("in_chs", in_chs)
        check_positive("out_chs", out_chs)
        kernel_size, padding = stride, 0
        if overlap:
            if stride not in (2, 4):
                raise ValueError(f"overlapping downsample supports stride 2 or 4, got {stride}")
            kernel_size, padding = (7, 2) if stride == 4 else (3, 1)
        self.in_chs, self.spatial_dims, self.stride = in_chs, spatial_dims, stride
        self.min_size = kernel_size - 2 * padding
        self.proj = conv_nd(spatial_dims)(in_chs, out_chs, kernel_size, stride=stride, padding=padding, **dd)
        self.norm = LayerNormNd(out_chs, eps=norm_eps, **dd) if norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_scripting():
            if checks_apply(x):
                check_channels_first(type(self).__name__, x, self.in_chs, self.spatial_dims, self.proj.weight.dtype)
                if min(x.shape[2:]) < self.min_size:
                    raise ValueError(
                        f"spatial size {tuple(x.shape[2:])} is too small for a stride-{self.stride} downsample "
                        f"(needs at least {self.min_size} per dim)"
                    )
        return self.norm(self.proj(x))
