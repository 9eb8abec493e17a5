"""Recursive gated convolution gnConv (Rao et al., "HorNet", NeurIPS 2022, Sec. 3.1, Eq. 3-5) for 1D/2D/3D."""
from __future__ import annotations

from typing import Dict, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ._nd import (
    check_channels_first,
    check_positive,
    check_spatial_dims,
    checks_apply,
    conv_nd,
    to_channels_first,
    to_channels_last,
)
from .global_local_filter import GlobalLocalFilter

__all__ = ["GlobalLocalFilter", "GnConv", "gnconv_dims"]

MIXERS = ("dw7", "dw", "gf")


def gnconv_dims(dim: int, order: int) -> list[int]:
    """Official channel split, ascending: ``[dim // 2**(order-1), ..., dim // 2, dim]``."""
    check_positive("dim", dim)
    check_positive("order", order)
    if dim % 2 ** (order - 1):
        raise ValueError(
            f"gnConv dim must be divisible by 2**(order-1) = {2 ** (order - 1)} for order {order}, got dim={dim}"
        )
    return [dim // 2**i for i in range(order)][::-1]


class GnConv(nn.Module):
    """gnConv over `spatial_dims` dimensions, channels-first like `nn.ConvNd`: `(B, dim, *S)` -> `(B, dim, *S)`.

    Order of operations (official ``gnconv``): ``proj_in`` (1x1, dim -> 2 dim); split into `pwa` (dims[0]
    channels) and `abc` (sum(dims)); ``dwconv(abc) * scale``; split that into chunks of sizes `dims`;
    ``x = pwa * dw_0``; ``x = pws[i](x) * dw_{i+1}`` for i < order-1; ``proj_out`` (1x1). No activation: the
    only nonlinearity is the chain of `order` gating products.

    The 1x1 convs are `nn.Linear` on a channels-last view (same math; official `(out, in, 1, 1)` weights are
    reshaped by the checkpoint converter), as in `FocalModulation`. `forward_channels_last` has the same
    signature as `FocalModulation.forward_channels_last`, so a block can swap one mixer for the other.

    Args:
        dim: channels; divisible by ``2**(order-1)``.
        order: interaction order n (HorNet uses 2, 3, 4, 5 in stages 1-4).
        spatial_dims: 1, 2 or 3.
        mixer: 'dw7' (depthwise 7^d conv, official), 'dw' (depthwise of `kernel_size`) or 'gf'
            (`GlobalLocalFilter` with weight grid `gf_size`).
        gf_size: rfft grid of the GF weight, e.g. (14, 8) for a 14x14 map; required for 'gf'.
        scale: multiplies the depthwise output (1/3 in every released HorNet).
    """

    def __init__(
        self,
        dim: int,
        order: int = 5,
        spatial_dims: int = 2,
        mixer: str = "dw7",
        gf_size: Sequence[int] | None = None,
        scale: float = 1.0 / 3.0,
        kernel_size: int = 7,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.dims = gnconv_dims(dim, order)
        self.dim, self.order, self.scale = dim, order, scale
        self.spatial_dims = check_spatial_dims(spatial_dims)
        if mixer not in MIXERS:
            raise ValueError(f"mixer must be one of {MIXERS}, got {mixer!r}")
        self.mixer = mixer
        abc = self.abc_dim = sum(self.dims)
        self.proj_in = nn.Linear(dim, 2 * dim, bias=bias, **dd)
        if mixer == "gf":
            if gf_size is None:
                raise ValueError("mixer='gf' needs gf_size, the rfft grid of the complex weight (e.g. (14, 8))")
            if abc % 2:
                raise ValueError(f"mixer='gf' needs an even sum(dims) (got {abc} for dim={dim}, order={order})")
            self.dwconv = GlobalLocalFilter(abc, gf_size, spatial_dims, **dd)
        else:
            k = 7 if mixer == "dw7" else check_positive("kernel_size", kernel_size)
            if k % 2 == 0:
                raise ValueError(f"kernel_size must be odd for 'same' padding, got {k}")
            self.dwconv = conv_nd(spatial_dims)(abc, abc, k, padding=k // 2, groups=abc, bias=True, **dd)
        self.pws = nn.ModuleList(nn.Linear(self.dims[i], self.dims[i + 1], bias=bias, **dd) for i in range(order - 1))
        self.proj_out = nn.Linear(dim, dim, bias=bias, **dd)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, order={self.order}, dims={self.dims}, mixer={self.mixer!r}, scale={self.scale:.4f}"

    def forward(
        self, x: torch.Tensor, return_maps: bool = False
    ) -> torch.Tensor | Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """`x`: `(B, dim, *S)`. Returns `(B, dim, *S)` (or `(out, {})` with `return_maps`, like FocalModulation)."""
        if not torch.jit.is_scripting():
            if checks_apply(x):
                check_channels_first(type(self).__name__, x, self.dim, self.spatial_dims, self.proj_in.weight.dtype)
        out, maps = self.forward_channels_last(to_channels_last(x))
        out = to_channels_first(out)
        if return_maps:
            return out, maps
        return out

    def forward_channels_last(self, x: torch.Tensor) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """`x`: `(B, *S, dim)` -> `((B, *S, dim), {})`."""
        # proj_in as two GEMMs on row slices of its weight: `abc` comes out contiguous, so the depthwise conv
        # reads it without a copy (one GEMM + split would leave it strided); the parameter stays `proj_in`.
        w, b, d0 = self.proj_in.weight, self.proj_in.bias, self.dims[0]
        pwa = F.linear(x, w[:d0], None if b is None else b[:d0])
        abc = F.linear(x, w[d0:], None if b is None else b[d0:])
        dw_abc = to_channels_last(self.dwconv(to_channels_first(abc))) * self.scale
        dw_list = torch.split(dw_abc, self.dims, dim=-1)
        x = pwa * dw_list[0]
        for i, pw in enumerate(self.pws):
            x = pw(x) * dw_list[i + 1]
        maps: Dict[str, torch.Tensor] = {}
        return self.proj_out(x), maps
