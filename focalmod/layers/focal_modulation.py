"""Focal modulation (Yang et al., "Focal Modulation Networks", NeurIPS 2022, Sec. 3.2, Eq. 3-6) for 1D/2D/3D."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable
from torch.nn.modules import module as _global_hooks

from ._nd import check_channels_first, check_positive, check_spatial_dims, conv_nd, to_channels_first, to_channels_last

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

    def forward(self, x: torch.Tensor, return_maps: bool = False):
        """`x`: `(B, dim, *S)`. Returns `(B, dim, *S)`, or `(out, {"gates", "modulator"})` with `return_maps`."""
        if not torch.jit.is_scripting():
            check_channels_first(type(self).__name__, x, self.dim, self.spatial_dims)
        out, maps = self.forward_channels_last(to_channels_last(x))
        out = to_channels_first(out)
        return (out, maps) if return_maps else out

    def forward_channels_last(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """`x`: `(B, *S, dim)`. Returns the output `(B, *S, dim)` and the channels-first gate/modulator maps."""
        path = cpu_path(x, self.f.weight, self, skip=(self.gates_tap, self.modulator_tap))
        q, ctx, gates = self._project_in(x, path)
        ctx, gates = to_channels_first(ctx), self.gates_tap(to_channels_first(gates))

        ctx_all = ctx  # placeholder for TorchScript; overwritten at level 0
        for level, focal_layer in enumerate(self.focal_layers):
            if path == FUSED:
                ctx = dwconv_gelu(ctx, focal_layer[0])
            elif path == DNNL and self.spatial_dims == 1:
                ctx = focal_layer[1](conv1d_as_2d(ctx, focal_layer[0]))
            else:
                ctx = focal_layer(ctx)
            gate = gates[:, level : level + 1]
            # In-place accumulate (mul/addcmul save their inputs, not ctx_all): no zero tensor, one pass per level.
            ctx_all = ctx * gate if level == 0 else ctx_all.addcmul_(ctx, gate)
        # Global level: mean over the channels-last view, so its backward (an expand) is channels-last as well and
        # the conv/GELU backward passes get gradients in their own layout (no NCHW <-> NHWC reorders).
        spatial = tuple(range(1, 1 + self.spatial_dims))
        ctx_global = to_channels_first(self.act(to_channels_last(ctx).mean(spatial, keepdim=True)))
        ctx_all = ctx_all.addcmul_(ctx_global, gates[:, self.focal_level :])
        if self.normalize_modulator:
            ctx_all = ctx_all.div_(self.focal_level + 1)

        modulator = self.modulator_tap(to_channels_first(linear(to_channels_last(ctx_all), self.h, path)))
        out = self.proj_drop(linear(self.norm(q * to_channels_last(modulator)), self.proj, path))
        return out, {"gates": gates, "modulator": modulator}

    def _project_in(self, x: torch.Tensor, path: str = "plain") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`f` as three GEMMs on row slices of its weight, so q, ctx and gates come out contiguous.

        One GEMM followed by `split` would leave ctx strided, and the depthwise conv would copy it; the row slices
        are views, so the parameters (and state-dict key `f`) stay as in the official model.
        """
        c = self.dim
        w, b = self.f.weight, self.f.bias
        q, ctx, gates = ((w[i:j], None if b is None else b[i:j]) for i, j in ((0, c), (c, 2 * c), (2 * c, None)))
        # The L+1 gate columns stay on MKL (F.linear): for so few outputs oneDNN's call overhead is larger.
        return linear_fn(x, *q, path), linear_fn(x, *ctx, path), F.linear(x, *gates)


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


# ---- CPU fast paths -----------------------------------------------------------------------------------------------
# PLAIN: PyTorch ops (GPU, other dtypes, compile/script/trace, autocast, functorch transforms, hooked submodules).
# DNNL: fp32 CPU with autograd: linears through oneDNN's matmul in a custom autograd Function (forward and input
#       gradient ~8 % faster than MKL's sgemm on this AVX-512 CPU); everything else plain.
# FUSED: fp32 CPU without autograd: oneDNN linears, and conv + GELU and fc1 + GELU as single ops (GELU post-op).
# All give the same numbers to ~1e-6 (tests/test_layers_speedpath.py checks them against each other and timm).
PLAIN, DNNL, FUSED = "plain", "dnnl", "fused"

_HAS_MKLDNN_FUSED = (
    torch.backends.mkldnn.is_available()
    and hasattr(torch.ops.mkldnn, "_convolution_pointwise")
    and hasattr(torch.ops.mkldnn, "_linear_pointwise")
)


def cpu_path(x: torch.Tensor, weight: torch.Tensor, module: nn.Module, skip: tuple[nn.Module, ...] = ()) -> str:
    """PLAIN, DNNL or FUSED for one call (see above); a forward hook on a submodule of `module` other than `skip`
    forces PLAIN, so hooks on `h`, `proj`, `mlp.fc1`, ... fire as usual."""
    if torch.jit.is_scripting() or not _HAS_MKLDNN_FUSED:
        return PLAIN
    if torch.jit.is_tracing() or torch.compiler.is_compiling() or torch._C._are_functorch_transforms_active():
        return PLAIN
    if x.device.type != "cpu" or x.dtype != torch.float32 or weight.dtype != torch.float32:
        return PLAIN
    if torch.is_autocast_enabled("cpu") or _has_hooks(module, skip):
        return PLAIN
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad):
        return DNNL
    return FUSED


def use_fused_cpu_path(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether a call with input `x` and parameter `weight` takes the FUSED path (hooks aside)."""
    return cpu_path(x, weight, nn.Identity()) == FUSED


def _has_hooks(module: nn.Module, skip: tuple[nn.Module, ...]) -> bool:
    if _global_hooks._global_forward_hooks or _global_hooks._global_forward_pre_hooks:
        return True
    return any((m._forward_hooks or m._forward_pre_hooks) and m not in skip for m in module.modules())


def linear(x: torch.Tensor, layer: nn.Linear, path: str) -> torch.Tensor:
    """`layer(x)` on the PLAIN path, oneDNN's matmul (bias in its epilogue) on the others."""
    return layer(x) if path == PLAIN else linear_fn(x, layer.weight, layer.bias, path)


def linear_fn(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, path: str) -> torch.Tensor:
    if path == FUSED:
        return _dnnl_linear(x, weight, bias)
    if path == DNNL:
        return _DnnlLinear.apply(x, weight, bias)
    return F.linear(x, weight, bias)


def _dnnl_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, attr: str = "none") -> torch.Tensor:
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, attr, [], "none" if attr == "gelu" else "")


class _DnnlLinear(torch.autograd.Function):
    """`F.linear` with oneDNN matmuls for the output and the input gradient (weight gradient: one `mm`)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return _dnnl_linear(x, weight, bias)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = _dnnl_linear(grad, weight.t(), None)
        flat_grad = grad.reshape(-1, grad.shape[-1])
        if ctx.needs_input_grad[1]:
            grad_w = flat_grad.t().mm(x.reshape(-1, x.shape[-1]))
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = flat_grad.sum(0)
        return grad_x, grad_w, grad_b


def linear_gelu(x: torch.Tensor, layer: nn.Linear) -> torch.Tensor:
    """GELU(layer(x)) in one oneDNN call (exact-erf GELU post-op); FUSED path only (no backward)."""
    return _dnnl_linear(x, layer.weight, layer.bias, "gelu")


def conv1d_as_2d(x: torch.Tensor, conv: nn.Module) -> torch.Tensor:
    """A stride-1 `nn.Conv1d` run as a 2D conv on `(B, C, 1, L)`: oneDNN's channels-last 2D depthwise kernel is ~5x
    faster (forward and backward) on channels-last-strided inputs than the 1D path (measured, 1 thread)."""
    pad = [0, *conv.padding]
    out = F.conv2d(x.unsqueeze(2), conv.weight.unsqueeze(2), conv.bias, 1, pad, 1, conv.groups)
    return out.squeeze(2)


def dwconv_gelu(x: torch.Tensor, conv: nn.Module) -> torch.Tensor:
    """GELU(depthwise conv(x)) in one oneDNN call; `x` channels-first in any layout; FUSED path only."""
    weight, pad = conv.weight, list(conv.padding)
    one_d = x.ndim == 3
    if one_d:  # the fused op takes 2D/3D convs: run 1D as (B, C, 1, L)
        x, weight, pad = x.unsqueeze(2), weight.unsqueeze(2), [0, *pad]
    ones = [1] * (x.ndim - 2)
    out = torch.ops.mkldnn._convolution_pointwise(
        x, weight, conv.bias, pad, ones, ones, conv.groups, "gelu", [], "none"
    )
    return out.squeeze(2) if one_d else out
