"""Training with fewer activations saved for backward: cheap pointwise results are recomputed instead of stored.

`use_recompute(model)` (what ``focalmod.optimize(model, inference=False)`` calls) switches, in place and once:

* every timm `Mlp` (fc1 -> GELU -> fc2, no hidden dropout or norm; the MLP of every FocalNet/HorNet block) to
  `RecomputeMlp`: backward recomputes the GELU output from the saved fc1 output instead of keeping both
  (4C of the ~21C floats per token a FocalNet block saves);
* every `FocalModulation` to `RecomputeFocalModulation`: the focal levels (depthwise conv + GELU, gated sum) are
  recomputed in backward from the saved context and gates (2L of them).

Numbers and gradients are those of the plain modules (the same ops run again; tests compare them), parameters and
state-dict keys are unchanged, and only public PyTorch APIs are used (`torch.autograd.Function`,
`torch.autograd.grad`). The plain modules stay the default (scriptable, exportable); `use_plain_modules` undoes the
switch. Measured by `python -m benchmarks.focalnet_vs_timm` (saved-activation column).
"""
from __future__ import annotations

import contextlib
from typing import Any

import torch
import torch.nn.functional as F
from timm.layers import Mlp
from torch import nn
from torch.autograd.function import once_differentiable

from .focal_modulation import FocalModulation

__all__ = ["RecomputeFocalModulation", "RecomputeMlp", "use_plain_modules", "use_recompute"]


def _save_autocast(ctx: Any, x: torch.Tensor) -> None:
    """Remember the autocast state of the forward, so backward recomputes in the same dtypes."""
    ctx.device_type = x.device.type
    ctx.autocast = torch.is_autocast_enabled(ctx.device_type)
    ctx.autocast_dtype = torch.get_autocast_dtype(ctx.device_type) if ctx.autocast else None


def _forward_autocast(ctx: Any) -> contextlib.AbstractContextManager:
    if not ctx.autocast:
        return contextlib.nullcontext()
    return torch.autocast(ctx.device_type, dtype=ctx.autocast_dtype)


class _LinearGeluLinear(torch.autograd.Function):
    """``fc2(GELU(fc1(x)))`` saving `x` and fc1's output only; GELU's output is recomputed in backward."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor | None, w2: torch.Tensor,
                b2: torch.Tensor | None, approximate: str) -> torch.Tensor:
        hidden = F.linear(x, w1, b1)
        _save_autocast(ctx, x)
        ctx.save_for_backward(x, hidden, w1, w2)
        ctx.approximate, ctx.has_b1, ctx.has_b2 = approximate, b1 is not None, b2 is not None
        return F.linear(F.gelu(hidden, approximate=approximate), w2, b2)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor):
        x, hidden, w1, w2 = ctx.saved_tensors
        need_x, need_w1, need_b1, need_w2, need_b2, _ = ctx.needs_input_grad
        with _forward_autocast(ctx):  # the forward's dtypes (under autocast: its bf16/fp16 matmuls)
            with torch.enable_grad():  # GELU again, and its backward through autograd (no private op)
                hidden = hidden.detach().requires_grad_()
                act = F.gelu(hidden, approximate=ctx.approximate)
            flat_grad = grad.reshape(-1, grad.shape[-1])
            grad_w2 = flat_grad.t().mm(act.detach().reshape(-1, act.shape[-1])) if need_w2 else None
            grad_b2 = flat_grad.sum(0) if need_b2 and ctx.has_b2 else None
            (grad_hidden,) = torch.autograd.grad(act, hidden, grad.matmul(w2))
            flat_hidden = grad_hidden.reshape(-1, grad_hidden.shape[-1])
            grad_w1 = flat_hidden.t().mm(x.reshape(-1, x.shape[-1])) if need_w1 else None
            grad_b1 = flat_hidden.sum(0) if need_b1 and ctx.has_b1 else None
            grad_x = grad_hidden.matmul(w1) if need_x else None
        return grad_x, grad_w1, grad_b1, grad_w2, grad_b2, None


class RecomputeMlp(Mlp):
    """timm's `Mlp` (fc1 -> GELU -> fc2) that saves fc1's output but not GELU's for backward; same parameters."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fc1, fc2 = self.fc1, self.fc2
        return self.drop2(_LinearGeluLinear.apply(x, fc1.weight, fc1.bias, fc2.weight, fc2.bias, self.act.approximate))


class _RecomputedAggregation(torch.autograd.Function):
    """The focal levels of a `FocalModulation` (its plain `_aggregate`), saving only their inputs (context and gates)
    and running them again in backward to get the gradients of the inputs and of the depthwise conv weights."""

    @staticmethod
    def forward(ctx: Any, module: FocalModulation, context: torch.Tensor, gates: torch.Tensor,
                *weights: torch.Tensor) -> torch.Tensor:
        ctx.module = module
        _save_autocast(ctx, context)
        ctx.save_for_backward(context, gates)
        return FocalModulation._aggregate(module, context, gates)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor):
        context, gates = ctx.saved_tensors
        weights = [level[0].weight for level in ctx.module.focal_layers]
        with torch.enable_grad(), _forward_autocast(ctx):
            inputs = [context.detach().requires_grad_(ctx.needs_input_grad[1]),
                      gates.detach().requires_grad_(ctx.needs_input_grad[2])]
            out = FocalModulation._aggregate(ctx.module, *inputs)
        wanted = [t for t, need in zip(inputs + weights, ctx.needs_input_grad[1:]) if need]
        grads = iter(torch.autograd.grad(out, wanted, grad))
        return (None, *(next(grads) if need else None for need in ctx.needs_input_grad[1:]))


class RecomputeFocalModulation(FocalModulation):
    """`FocalModulation` whose focal levels are recomputed in backward instead of saved; same parameters and maps."""

    def _aggregate(self, ctx: torch.Tensor, gates: torch.Tensor) -> torch.Tensor:
        weights = [level[0].weight for level in self.focal_layers]
        return _RecomputedAggregation.apply(self, ctx, gates, *weights)


def _recompute_class(module: nn.Module) -> type[nn.Module] | None:
    if type(module) is FocalModulation:
        return RecomputeFocalModulation
    mlp_fits = type(module) is Mlp and type(module.act) is nn.GELU and isinstance(module.norm, nn.Identity)
    if mlp_fits and module.drop1.p == 0 and isinstance(module.fc1, nn.Linear) and isinstance(module.fc2, nn.Linear):
        return RecomputeMlp
    return None


def use_recompute(model: nn.Module) -> int:
    """Switch every plain `FocalModulation` and eligible timm `Mlp` in `model` (in place) to its recomputing subclass.
    Returns how many modules were switched (an `Mlp` with hidden dropout or a hidden norm keeps the plain class)."""
    count = 0
    for module in model.modules():
        cls = _recompute_class(module)
        if cls is not None:
            module.__class__ = cls
            count += 1
    return count


def use_plain_modules(model: nn.Module) -> int:
    """Undo `use_recompute`. Returns how many modules got their plain class back."""
    plain = {RecomputeFocalModulation: FocalModulation, RecomputeMlp: Mlp}
    count = 0
    for module in model.modules():
        if type(module) in plain:
            module.__class__ = plain[type(module)]
            count += 1
    return count
