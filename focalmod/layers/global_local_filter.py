"""HorNet's Global-Local Filter (Rao et al., NeurIPS 2022, Sec. 3.3 / official ``GlobalLocalFilter``), N-d.

Half the channels get a depthwise 3^d conv (local), the other half a learnable filter in the Fourier domain
(global, the GFNet filter). 2D reproduces the official layer exactly; 1D/3D apply the same rule with
``rfftn`` over all spatial dims and (tri)linear resizing of the weight grid.

On resizing: like the official code, the complex weight is resized with ``align_corners=True`` whenever the
input's rfft grid differs from the weight grid. Along the last (half-spectrum) axis the grid runs monotonically
from frequency 0 to Nyquist, so the resize is a consistent frequency resampling. Along the other axes the rfft
layout wraps around (0, 1, ..., -1) and the official resize ignores that; we keep that behaviour for parity in 2D
and use the same rule in 3D (in 1D there is only the half-spectrum axis, so the resize is exact in meaning).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from timm.layers import trunc_normal_
from torch import nn

from ._nd import check_channels_first, check_positive, check_spatial_dims, conv_nd
from .norm import LayerNormNd

__all__ = ["GlobalLocalFilter"]

_INTERP_MODE = {1: "linear", 2: "bilinear", 3: "trilinear"}


class GlobalLocalFilter(nn.Module):
    """`(B, dim, *S)` -> `(B, dim, *S)`.

    Order (official): pre-LayerNorm; channel halves x1 (local) / x2 (global); x1 -> depthwise 3^d conv without
    bias; x2 -> float32 (float64 stays) -> ``rfftn(norm='ortho')`` -> times the complex weight (resized to the
    rfft grid when needed) -> ``irfftn`` back to the input size; outputs INTERLEAVED along channels (local_0,
    global_0, local_1, ...); post-LayerNorm.

    Args:
        dim: channels (even).
        size: weight grid = the rfft grid of the expected input, ``(*S[:-1], S[-1] // 2 + 1)``; e.g. (14, 8) for
            a 14x14 map. Other input sizes work through resizing.
        spatial_dims: 1, 2 or 3.
    """

    def __init__(
        self,
        dim: int,
        size: Sequence[int],
        spatial_dims: int = 2,
        norm_eps: float = 1e-6,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.dim = check_positive("dim", dim)
        self.spatial_dims = check_spatial_dims(spatial_dims)
        if dim % 2:
            raise ValueError(f"GlobalLocalFilter needs an even number of channels (half local, half global), got {dim}")
        size = tuple(size)
        if len(size) != spatial_dims or not all(isinstance(s, int) and s > 0 for s in size):
            raise ValueError(f"size (the complex weight grid) must be {spatial_dims} positive ints, got {size!r}")
        self.size = size
        half = dim // 2
        self.pre_norm = LayerNormNd(dim, eps=norm_eps, **dd)
        self.dw = conv_nd(spatial_dims)(half, half, 3, padding=1, groups=half, bias=False, **dd)
        self.complex_weight = nn.Parameter(torch.empty(half, *size, 2, device=device, dtype=torch.float32))
        trunc_normal_(self.complex_weight, std=0.02)
        self.post_norm = LayerNormNd(dim, eps=norm_eps, **dd)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, size={self.size}, spatial_dims={self.spatial_dims}"

    def filter_weight(self, grid: Sequence[int], dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The complex filter on an rfft grid `grid`, resized from the stored grid when they differ."""
        weight = self.complex_weight.to(dtype)
        if tuple(grid) != self.size:
            weight = F.interpolate(
                weight.movedim(-1, 0), size=tuple(grid), mode=_INTERP_MODE[self.spatial_dims], align_corners=True
            ).movedim(0, -1)
        return torch.view_as_complex(weight.contiguous())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_scripting():
            check_channels_first(type(self).__name__, x, self.dim, self.spatial_dims)
        x = self.pre_norm(x)
        x1, x2 = torch.chunk(x, 2, dim=1)
        x1 = self.dw(x1)
        spatial = tuple(range(2, 2 + self.spatial_dims))
        x2 = x2 if x2.dtype in (torch.float32, torch.float64) else x2.float()  # no half-precision FFT (official)
        freq = torch.fft.rfftn(x2, dim=spatial, norm="ortho")
        freq = freq * self.filter_weight(freq.shape[2:], x2.dtype)
        x2 = torch.fft.irfftn(freq, s=x.shape[2:], dim=spatial, norm="ortho").to(x1.dtype)
        x = torch.stack((x1, x2), dim=2).flatten(1, 2)  # interleave: (l_0, g_0, l_1, g_1, ...)
        return self.post_norm(x)
