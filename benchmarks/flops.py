"""MAC counting in the papers' convention: fvcore `FlopCountAnalysis` (one multiply-add = 1), plus what it misses.

fvcore counts convs, matmuls/linears, einsum and norms but not `scaled_dot_product_attention` (timm's ViT, VOLO
and our SDPA attention use it), so a handle adds its two matmuls (Q·Kᵀ and A·V). Element-wise products (focal
modulation's gating `ctx * gate` (or `addcmul`) and `q * h(ctx)`, gnConv's recursive gating, layer scale) are not
MACs; they are counted separately as multiplies (tensor ⊙ tensor, one per output element; products with a Python
scalar are not counted). Additions, activations, softmax and pooling are counted in neither column.
"""
from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

CONVENTION = (
    "GMACs: fvcore FlopCountAnalysis, one multiply-add = 1 (the papers' 'GFLOPs'; torch.utils.flop_counter gives "
    "about 2x), plus Q·Kᵀ and A·V of scaled_dot_product_attention. 'elementwise G-mul': tensor⊙tensor products "
    "(focal modulation/gnConv gating, layer scale), one per output element, reported separately and NOT included "
    "in GMACs; additions, activations, softmax and pooling are counted in neither."
)
_MUL_OPS = {"aten::mul": 0, "aten::mul_": 0, "aten::addcmul": 1, "aten::addcmul_": 1}  # op -> first factor


@dataclass(frozen=True)
class MacCount:
    """MACs and element-wise multiplies of one forward pass (raw counts, not giga)."""

    macs: float
    elementwise_muls: float
    unsupported: dict[str, int]

    @property
    def gmacs(self) -> float:
        return self.macs / 1e9

    @property
    def elementwise_gmuls(self) -> float:
        return self.elementwise_muls / 1e9


def _shape(value: Any) -> list[int] | None:
    """Static shape of a traced value, or None for scalars / unknown shapes."""
    if not isinstance(value.type(), torch._C.TensorType):
        return None
    sizes = value.type().sizes()
    return list(sizes) if sizes is not None else None


def sdpa_macs(inputs: list[Any], outputs: list[Any]) -> int:
    """Q·Kᵀ + A·V for `scaled_dot_product_attention(q (…, Lq, E), k (…, Lk, E), v (…, Lk, Ev))`."""
    q, k, v = (_shape(x) for x in inputs[:3])
    if q is None or k is None or v is None:
        return 0
    batch = math.prod(q[:-2])
    return batch * q[-2] * k[-2] * (q[-1] + v[-1])


def elementwise_mul_count(inputs: list[Any], outputs: list[Any], first: int = 0) -> int:
    """Output elements of a product whose two factors (`inputs[first:first+2]`) are tensors of > 1 element."""
    shapes = [_shape(x) for x in inputs[first : first + 2]]
    if any(s is None or math.prod(s) <= 1 for s in shapes):
        return 0
    out = _shape(outputs[0])
    return math.prod(out) if out is not None else 0


def count_macs(model: nn.Module, example: torch.Tensor) -> MacCount:
    """Trace `model(example)` once (eval mode, autograd on) and count MACs and element-wise multiplies."""
    from fvcore.nn import FlopCountAnalysis

    was_training = model.training
    model.eval()
    try:  # autograd stays on: fused inference-only kernels (oneDNN conv+GELU) are opaque to fvcore
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            analysis = FlopCountAnalysis(model, example)
            analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
            analysis.set_op_handle("aten::scaled_dot_product_attention", sdpa_macs)
            for op, first in _MUL_OPS.items():
                analysis.set_op_handle(op, functools.partial(elementwise_mul_count, first=first))
            by_op = analysis.by_operator()
            unsupported = dict(analysis.unsupported_ops())
    finally:
        model.train(was_training)
    muls = sum(by_op.get(op.split("::")[-1], 0) for op in _MUL_OPS)
    macs = sum(by_op.values()) - muls
    return MacCount(float(macs), float(muls), unsupported)
