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

from typing import List, Sequence

import torch
import torch.nn.functional as F
from timm.layers import trunc_normal_
from torch import nn

from ._nd import check_channels_first, check_positive, check_spatial_dims, checks_apply, conv_nd
from .norm import LayerNormNd

__all__ = ["GlobalLocalFilter"]


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
        return _filter_on_grid(self.complex_weight, list(grid), self.spatial_dims, dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_scripting():
            if checks_apply(x):
                check_channels_first(type(self).__name__, x, self.dim, self.spatial_dims, self.dw.weight.dtype)
        x = self.pre_norm(x)
        x1, x2 = torch.chunk(x, 2, dim=1)
        x = torch.stack((self.dw(x1), _global_filter(x2, self.complex_weight, self.spatial_dims)), dim=2)
        return self.post_norm(x.flatten(1, 2))  # interleaved: (l_0, g_0, l_1, g_1, ...)


def _filter_on_grid(weight: torch.Tensor, grid: List[int], spatial_dims: int, dtype: torch.dtype) -> torch.Tensor:
    """`weight` `(C, *size, 2)` as a complex filter on the rfft grid `grid`, resized (align_corners) when needed."""
    weight = weight.to(dtype)
    # A trace always resizes (to the same grid the resize is exact: align_corners samples the stored points), so
    # the traced graph follows the input size instead of freezing this branch for the example's size.
    if torch.jit.is_tracing() or list(weight.shape[1:-1]) != grid:
        mode = "linear" if spatial_dims == 1 else ("bilinear" if spatial_dims == 2 else "trilinear")
        weight = F.interpolate(weight.movedim(weight.dim() - 1, 0), size=grid, mode=mode, align_corners=True)
        weight = weight.movedim(0, weight.dim() - 1)
    return torch.view_as_complex(weight.contiguous())


def _global_filter(x: torch.Tensor, weight: torch.Tensor, spatial_dims: int) -> torch.Tensor:
    """The global half: float32 (float64 stays; no half-precision FFT, as official) -> rfftn(ortho) -> times the
    filter on the input's rfft grid -> irfftn back to the input size, in the input's dtype."""
    spatial = list(range(2, 2 + spatial_dims))
    x_fft = x if x.dtype == torch.float32 or x.dtype == torch.float64 else x.float()
    freq = torch.fft.rfftn(x_fft, dim=spatial, norm="ortho")
    freq = freq * _filter_on_grid(weight, list(freq.shape[2:]), spatial_dims, x_fft.dtype)
    return torch.fft.irfftn(freq, s=x.shape[2:], dim=spatial, norm="ortho").to(x.dtype)


# torch.fx records these as single calls (their shape- and dtype-dependent branches run on real tensors later), so
# FX feature extraction traces through the layer.
torch.fx.wrap("_global_filter")
