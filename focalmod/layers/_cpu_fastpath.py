"""Opt-in oneDNN fast path for focal modulation and the FocalNet block on fp32 CPU, chosen once per model.

The default modules run plain PyTorch ops (scriptable, traceable, exportable, compilable, any device and dtype): the
reference every other path is tested against. `use_cpu_fast_path(model, autograd=...)` swaps every
`FocalModulation` / `FocalNetBlock` in `model` for the subclasses below, which keep every parameter, buffer and
state-dict key and only replace how the linears, depthwise convs and GELUs run:

* ``autograd=False`` (inference): oneDNN linears, and depthwise conv + GELU and fc1 + GELU as single ops (GELU
  post-op). Calling such a module with autograd on raises, since these ops have no backward.
* ``autograd=True`` (training): linears through oneDNN's matmul in a custom autograd Function (forward and input
  gradient ~8 % faster than MKL's sgemm on AVX-512), 1D depthwise convs as 2D convs (oneDNN's channels-last kernel);
  everything else plain.

The ops are private (`torch.ops.mkldnn._linear_pointwise`, `_convolution_pointwise`): they are called only inside
two `torch.library` custom ops (`focalmod::dnnl_linear`, `focalmod::dnnl_same_conv_gelu`, with fake implementations),
so `torch.compile` keeps them as extern kernels; `tests/test_layers_speedpath.py` pins their schemas (it fails loudly
when torch changes them), runs `torch.library.opcheck` on the custom ops and checks the fast modules against the
plain ones. Under `torch.autocast` (for the device of the input) the fast modules run the plain modules' ops, so
autocast's per-op dtype policy applies as on the plain path (`_plain_under_autocast`; issue #30). Forward hooks on
`h`, `proj` and `mlp.fc1/fc2` do not fire in the fast modules
(those Linears are called through oneDNN directly); hooks on `gates_tap` / `modulator_tap` do. Measured gain
(focalnet_tiny_srf, batch 8 at 224, 1 thread, `python -m benchmarks.cpu_fastpath`, 2026-11-21, before this switch
moved to construction time): inference 1.19x, training step 1.07x.
"""
from __future__ import annotations

from typing import Dict, List, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from ._nd import _autocast
from .focal_modulation import FocalModulation
from .focalnet_block import FocalNetBlock

__all__ = ["FastFocalModulation", "FastFocalNetBlock", "HAS_MKLDNN_FUSED", "use_cpu_fast_path", "use_plain_path"]

HAS_MKLDNN_FUSED = (
    torch.backends.mkldnn.is_available()
    and hasattr(torch.ops.mkldnn, "_convolution_pointwise")
    and hasattr(torch.ops.mkldnn, "_linear_pointwise")
)


# The private ops are called only through these two custom ops (public `torch.library` API): eager runs them as
# they are, and `torch.compile` sees opaque ops with known output shapes (`register_fake`), so inductor calls them as
# extern kernels and fuses the pointwise rest of the model around them instead of bypassing the fast path.


@torch.library.custom_op("focalmod::dnnl_linear", mutates_args=())
def dnnl_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                attr: str = "none") -> torch.Tensor:
    """``F.linear(x, weight, bias)``, followed by GELU (erf) when `attr` is ``"gelu"``, as one oneDNN call."""
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, attr, [], "none" if attr == "gelu" else "")


@dnnl_linear.register_fake
def _(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, attr: str = "none") -> torch.Tensor:
    return x.new_empty((*x.shape[:-1], weight.shape[0]))


@torch.library.custom_op("focalmod::dnnl_same_conv_gelu", mutates_args=())
def dnnl_same_conv_gelu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, padding: List[int],
                        groups: int) -> torch.Tensor:
    """GELU(conv(x)) of a stride-1 2D/3D conv whose padding keeps the size, as one oneDNN call; the output has the
    shape and strides of `x` (channels-last in, channels-last out)."""
    ones = [1] * (x.ndim - 2)
    out = torch.ops.mkldnn._convolution_pointwise(x, weight, bias, padding, ones, ones, groups, "gelu", [], "none")
    return out if out.stride() == x.stride() else torch.empty_like(x).copy_(out)


@dnnl_same_conv_gelu.register_fake
def _(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, padding: List[int],
      groups: int) -> torch.Tensor:
    return torch.empty_like(x)


class _DnnlLinear(torch.autograd.Function):
    """`F.linear` with oneDNN matmuls for the output and the input gradient (weight gradient: one `mm`)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return dnnl_linear(x, weight, bias)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = dnnl_linear(grad, weight.t(), None)
        flat_grad = grad.reshape(-1, grad.shape[-1])
        if ctx.needs_input_grad[1]:
            grad_w = flat_grad.t().mm(x.reshape(-1, x.shape[-1]))
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = flat_grad.sum(0)
        return grad_x, grad_w, grad_b


def _conv1d_as_2d(x: torch.Tensor, conv: nn.Module) -> torch.Tensor:
    """A stride-1 `nn.Conv1d` run as a 2D conv on `(B, C, 1, L)`: oneDNN's channels-last 2D depthwise kernel is ~5x
    faster (forward and backward) on channels-last-strided inputs than the 1D path (measured, 1 thread)."""
    out = F.conv2d(x.unsqueeze(2), conv.weight.unsqueeze(2), conv.bias, 1, [0, *conv.padding], 1, conv.groups)
    return out.squeeze(2)


def _dwconv_gelu(x: torch.Tensor, conv: nn.Module) -> torch.Tensor:
    """GELU(depthwise conv(x)) in one oneDNN call; `x` channels-first in any layout; no backward."""
    weight, pad = conv.weight, list(conv.padding)
    one_d = x.ndim == 3
    if one_d:  # the fused op takes 2D/3D convs: run 1D as (B, C, 1, L)
        x, weight, pad = x.unsqueeze(2), weight.unsqueeze(2), [0, *pad]
    out = dnnl_same_conv_gelu(x, weight, conv.bias, pad, conv.groups)
    return out.squeeze(2) if one_d else out


def _plain_under_autocast(x: torch.Tensor) -> bool:
    """Whether autocast is on for `x`'s device, in which case a fast module runs the plain module's ops instead.

    The fused ops are fp32 oneDNN calls with no autocast rule: under autocast they would get bf16/fp16 activations
    (from the autocast ops before them) with fp32 weights, and oneDNN raises ("could not create a primitive
    descriptor for the inner product forward propagation primitive"), or, where the activation is still fp32, they
    silently compute in fp32 where the plain model computes in the autocast dtype. The plain ops follow autocast's
    per-op policy on every device and ISA (oneDNN's low-precision kernels need AVX512-BF16/AMX). Autocast is
    thread-local state of the call, not of the model, so `optimize` cannot choose once: one thread-local read at
    the top of each overridden method (five per block) is the whole cost on the fp32 path (no walk over submodules,
    no casts), and `torch.compile` guards on the autocast state, so a compiled model traces each branch once.
    Autocast for another device (``torch.autocast("cuda")`` around a CPU model) leaves CPU ops alone: fused path.
    """
    return _autocast(x)


class _FastPath:
    """What the two fast modules share: the mode chosen by `use_cpu_fast_path` and the linear it implies."""

    fast_autograd: bool = False

    def _fast_linear(self, x: torch.Tensor, layer: nn.Linear) -> torch.Tensor:
        if self.fast_autograd:
            return _DnnlLinear.apply(x, layer.weight, layer.bias)
        return dnnl_linear(x, layer.weight, layer.bias)

    def _refuse_autograd(self, x: torch.Tensor, weight: torch.Tensor) -> None:
        if not self.fast_autograd and torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad):
            raise RuntimeError(
                f"{type(self).__name__} was set up for inference (focalmod.optimize(..., inference=True)) and its "
                "fused oneDNN ops have no backward; run it under torch.no_grad()/inference_mode(), or call "
                "focalmod.optimize(model, inference=False) (or focalmod.models.optimize.restore_plain(model)) to train"
            )


class FastFocalModulation(_FastPath, FocalModulation):
    """`FocalModulation` with the oneDNN fast path (see the module docstring); same parameters and maps."""

    def forward_channels_last(self, x: torch.Tensor) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        self._refuse_autograd(x, self.f.weight)
        return super().forward_channels_last(x)

    def _project_in(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if _plain_under_autocast(x):
            return super()._project_in(x)
        c, w, b = self.dim, self.f.weight, self.f.bias
        rows = [(w[i:j], None if b is None else b[i:j]) for i, j in ((0, c), (c, 2 * c), (2 * c, w.shape[0]))]
        if self.fast_autograd:
            q, ctx = (_DnnlLinear.apply(x, *rows[i]) for i in (0, 1))
        else:
            q, ctx = (dnnl_linear(x, *rows[i]) for i in (0, 1))
        # The L+1 gate columns stay on MKL (F.linear): for so few outputs oneDNN's call overhead is larger.
        return q, ctx, F.linear(x, *rows[2])

    def _aggregate(self, ctx: torch.Tensor, gates: torch.Tensor) -> torch.Tensor:
        if _plain_under_autocast(ctx):
            return super()._aggregate(ctx, gates)
        ctx_all = ctx
        for level, focal_layer in enumerate(self.focal_layers):
            if not self.fast_autograd:
                ctx = _dwconv_gelu(ctx, focal_layer[0])
            elif self.spatial_dims == 1:
                ctx = focal_layer[1](_conv1d_as_2d(ctx, focal_layer[0]))
            else:
                ctx = focal_layer(ctx)
            ctx_all = self._accumulate(ctx_all, ctx, gates, level)
        return self._add_global(ctx_all, ctx, gates)

    def _h(self, x: torch.Tensor) -> torch.Tensor:
        return super()._h(x) if _plain_under_autocast(x) else self._fast_linear(x, self.h)

    def _proj(self, x: torch.Tensor) -> torch.Tensor:
        return super()._proj(x) if _plain_under_autocast(x) else self._fast_linear(x, self.proj)


class FastFocalNetBlock(_FastPath, FocalNetBlock):
    """`FocalNetBlock` whose MLP runs through oneDNN (fc1 + GELU fused in inference); same parameters."""

    def _mlp(self, x: torch.Tensor) -> torch.Tensor:
        mlp = self.mlp
        self._refuse_autograd(x, mlp.fc1.weight)
        if _plain_under_autocast(x):
            return super()._mlp(x)
        if not self.fast_autograd and not self.training:
            hidden = dnnl_linear(x, mlp.fc1.weight, mlp.fc1.bias, "gelu")
        else:
            hidden = mlp.drop1(mlp.act(self._fast_linear(x, mlp.fc1)))
        return mlp.drop2(self._fast_linear(mlp.norm(hidden), mlp.fc2))


_FAST = {FocalModulation: FastFocalModulation, FocalNetBlock: FastFocalNetBlock}


def use_cpu_fast_path(model: nn.Module, autograd: bool) -> int:
    """Swap every `FocalModulation` / `FocalNetBlock` in `model` (in place) for its fast subclass, in the inference
    (``autograd=False``) or training (``autograd=True``) mode. Returns how many modules were swapped."""
    if not HAS_MKLDNN_FUSED:
        raise RuntimeError("this torch build has no oneDNN fused CPU ops (torch.ops.mkldnn._linear_pointwise)")
    count = 0
    for module in model.modules():
        plain = next((cls for cls in _FAST if isinstance(module, cls)), None)
        if plain is None:
            continue
        if not isinstance(module, _FastPath):
            module._plain_class = type(module)
            module.__class__ = _FAST[plain]
        module.fast_autograd = autograd
        count += 1
    return count


def use_plain_path(model: nn.Module) -> int:
    """Undo `use_cpu_fast_path`: every fast module gets its original class back. Returns how many were restored."""
    count = 0
    for module in model.modules():
        if isinstance(module, _FastPath):
            module.__class__ = module.__dict__.pop("_plain_class")
            module.__dict__.pop("fast_autograd", None)
            count += 1
    return count
