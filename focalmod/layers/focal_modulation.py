"""Focal modulation (Yang et al., "Focal Modulation Networks", NeurIPS 2022, Sec. 3.2, Eq. 3-6) for 1D/2D/3D."""
from __future__ import annotations

from typing import Dict, Tuple

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

__all__ = ["FocalModulation", "FocalModulation1d", "FocalModulation2d", "FocalModulation3d"]


class FocalModulation(nn.Module):
    """Focal modulation over `spatial_dims` dimensions, channels-first like `nn.ConvNd`.

    Input and output: `(B, C, L)`, `(B, C, H, W)` or `(B, C, D, H, W)`; any spatial size, size 1 included.

    Order of operations (official ``classification/focalnet.py``): one linear `f` gives query q, context and
    L+1 raw gates (no sigmoid/softmax); level k applies a depthwise conv of kernel ``focal_factor*k +
    focal_window`` + GELU to the previous level's output; the global level is GELU of the spatial mean of the
    last level; ``ctx_all = sum_k ctx_k * gate_k`` (optionally / (L+1)); ``out = proj(q * h(ctx_all))`` with an
    optional LayerNorm before `proj` (`use_post_norm`, official ``use_postln_in_modulation``).

    Computation runs channels-last, so the linear layers are plain GEMMs and LayerNorm needs no copy; the
    depthwise convs see a channels-last view. The gates `(B, L+1, *S)` and the modulator `(B, C, *S)` pass
    through the identity submodules `gates_tap` and `modulator_tap` (attach forward hooks there) and are
    returned by ``forward(x, return_maps=True)``; nothing is stored on the module.
    """

    def __init__(
        self,
        dim: int,
        spatial_dims: int = 2,
        focal_level: int = 2,
        focal_window: int = 3,
        focal_factor: int = 2,
        bias: bool = True,
        normalize_modulator: bool = False,
        use_post_norm: bool = False,
        proj_drop: float = 0.0,
        norm_eps: float = 1e-5,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.dim = check_positive("dim", dim)
        self.spatial_dims = check_spatial_dims(spatial_dims)
        self.focal_level = check_positive("focal_level", focal_level)
        self.focal_window = check_positive("focal_window", focal_window)
        if focal_window % 2 == 0:
            raise ValueError(f"focal_window must be odd so that 'same' padding is symmetric, got {focal_window}")
        if not isinstance(focal_factor, int) or focal_factor < 0 or focal_factor % 2:
            raise ValueError(f"focal_factor must be a non-negative even int (kernels stay odd), got {focal_factor!r}")
        if not 0.0 <= proj_drop < 1.0:
            raise ValueError(f"proj_drop must be in [0, 1), got {proj_drop}")
        self.focal_factor = focal_factor
        self.normalize_modulator = normalize_modulator
        self.kernel_sizes = [focal_factor * k + focal_window for k in range(focal_level)]
        self._spatial_last = list(range(1, 1 + spatial_dims))  # spatial dims of a channels-last tensor

        self.f = nn.Linear(dim, 2 * dim + focal_level + 1, bias=bias, **dd)
        conv = conv_nd(spatial_dims)
        self.focal_layers = nn.ModuleList(
            nn.Sequential(conv(dim, dim, k, padding=k // 2, groups=dim, bias=False, **dd), nn.GELU())
            for k in self.kernel_sizes
        )
        self.act = nn.GELU()
        self.h = nn.Linear(dim, dim, bias=bias, **dd)
        self.norm = nn.LayerNorm(dim, eps=norm_eps, **dd) if use_post_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim, **dd)
        self.proj_drop = nn.Dropout(proj_drop)
        self.gates_tap = nn.Identity()
        self.modulator_tap = nn.Identity()

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, spatial_dims={self.spatial_dims}, focal_level={self.focal_level}, "
            f"kernel_sizes={self.kernel_sizes}, normalize_modulator={self.normalize_modulator}"
        )

    def forward(
        self, x: torch.Tensor, return_maps: bool = False
    ) -> torch.Tensor | Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """`x`: `(B, dim, *S)`. Returns `(B, dim, *S)`, or `(out, {"gates", "modulator"})` with `return_maps`."""
        if not torch.jit.is_scripting():
            if checks_apply(x):
                check_channels_first(type(self).__name__, x, self.dim, self.spatial_dims, self.f.weight.dtype)
        # One copy for channels-first memory (free for channels-last memory, e.g. inside FocalNet): the three
        # projections would otherwise each gather the strided view (measured 3.6x slower at 224x224x64).
        out, maps = self.forward_channels_last(to_channels_last(x).contiguous())
        out = to_channels_first(out)
        if return_maps:
            return out, maps
        return out

    def forward_channels_last(self, x: torch.Tensor) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """`x`: `(B, *S, dim)`. Returns the output `(B, *S, dim)` and the channels-first gate/modulator maps."""
        q, ctx, gates = self._project_in(x)
        gates = self.gates_tap(to_channels_first(gates))
        ctx_all = self._aggregate(to_channels_first(ctx), gates)
        if self.normalize_modulator:
            ctx_all = ctx_all.div_(self.focal_level + 1)
        modulator = self.modulator_tap(to_channels_first(self._h(to_channels_last(ctx_all))))
        out = self.proj_drop(self._proj(self.norm(q * to_channels_last(modulator))))
        return out, {"gates": gates, "modulator": modulator}

    def _aggregate(self, ctx: torch.Tensor, gates: torch.Tensor) -> torch.Tensor:
        """Eq. 4-5: the L focal levels (depthwise conv + GELU, sequential) and the global level, gated and summed."""
        ctx_all = ctx  # placeholder for TorchScript; replaced at level 0
        for level, focal_layer in enumerate(self.focal_layers):
            ctx = focal_layer(ctx)
            ctx_all = self._accumulate(ctx_all, ctx, gates, level)
        return self._add_global(ctx_all, ctx, gates)

    def _accumulate(self, ctx_all: torch.Tensor, ctx: torch.Tensor, gates: torch.Tensor, level: int) -> torch.Tensor:
        gate = gates[:, level : level + 1]
        # In-place accumulate (mul/addcmul save their inputs, not ctx_all): no zero tensor, one pass per level.
        return ctx * gate if level == 0 else ctx_all.addcmul_(ctx, gate)

    def _add_global(self, ctx_all: torch.Tensor, ctx: torch.Tensor, gates: torch.Tensor) -> torch.Tensor:
        # Global level: mean over the channels-last view, so its backward (an expand) is channels-last as well and
        # the conv/GELU backward passes get gradients in their own layout (no NCHW <-> NHWC reorders).
        ctx_global = to_channels_first(self.act(to_channels_last(ctx).mean(self._spatial_last, keepdim=True)))
        return ctx_all.addcmul_(ctx_global, gates[:, self.focal_level :])

    def _h(self, x: torch.Tensor) -> torch.Tensor:
        return self.h(x)

    def _proj(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)

    def _project_in(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`f` as three GEMMs on row slices of its weight, so q, ctx and gates come out contiguous.

        One GEMM followed by `split` would leave ctx strided, and the depthwise conv would copy it; the row slices
        are views, so the parameters (and state-dict key `f`) stay as in the official model.
        """
        c = self.dim
        w, b = self.f.weight, self.f.bias
        if b is None:
            return F.linear(x, w[:c]), F.linear(x, w[c : 2 * c]), F.linear(x, w[2 * c :])
        return F.linear(x, w[:c], b[:c]), F.linear(x, w[c : 2 * c], b[c : 2 * c]), F.linear(x, w[2 * c :], b[2 * c :])


class FocalModulation1d(FocalModulation):
    """`FocalModulation` for `(B, C, L)` inputs."""

    def __init__(self, dim: int, **kwargs) -> None:
        super().__init__(dim, spatial_dims=1, **kwargs)


class FocalModulation2d(FocalModulation):
    """`FocalModulation` for `(B, C, H, W)` inputs."""

    def __init__(self, dim: int, **kwargs) -> None:
        super().__init__(dim, spatial_dims=2, **kwargs)


class FocalModulation3d(FocalModulation):
    """`FocalModulation` for `(B, C, D, H, W)` inputs."""

    def __init__(self, dim: int, **kwargs) -> None:
        super().__init__(dim, spatial_dims=3, **kwargs)
