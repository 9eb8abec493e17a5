"""CPU fast paths of focal modulation and the FocalNet block (fp32 on CPU only; everything else takes PLAIN).

They use oneDNN ops PyTorch exposes privately (`torch.ops.mkldnn._linear_pointwise`, `_convolution_pointwise`),
so they are guarded by `_HAS_MKLDNN_FUSED` and tested against the plain path and timm
(tests/test_layers_speedpath.py). Measured gain on focalnet_tiny_srf, batch 8 at 224, 1 thread, CPU time,
interleaved with the path forced PLAIN (`python -m benchmarks.cpu_fastpath`, 2-core AMD EPYC, 2026-11-21):
inference 1.19x, training step 1.07x.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable
from torch.nn.modules import module as _global_hooks

__all__ = ["DNNL", "FUSED", "PLAIN", "conv1d_as_2d", "cpu_path", "dwconv_gelu", "linear", "linear_fn",
           "linear_gelu", "use_fused_cpu_path"]

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
