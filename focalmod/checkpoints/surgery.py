"""Weight surgery of the official downstream loader (`microsoft/FocalNet` `detection/mmcv_custom/checkpoint.py`).

* Depthwise focal kernels whose size differs from the model's are zero-padded centrally (3x3 -> 9x9 keeps
  the conv's output unchanged under 'same' padding) or center-cropped; here for 1D/2D/3D kernels alike.
* A model with more focal levels than the checkpoint gets the `f` projection rows remapped: query/context
  rows and the existing level gates copied in order, the global gate to the last row, new gate rows zero.
"""
from __future__ import annotations

import torch

__all__ = ["expand_focal_projection", "resize_kernel"]


def resize_kernel(weight: torch.Tensor, kernel_size: tuple[int, ...]) -> torch.Tensor:
    """`(C_out, C_in, *K)` -> `(C_out, C_in, *kernel_size)`: centered zero-padding or cropping per spatial dim."""
    if weight.ndim - 2 != len(kernel_size):
        raise ValueError(f"kernel_size {kernel_size} does not match weight of shape {tuple(weight.shape)}")
    out = weight
    for dim, size in enumerate(kernel_size, start=2):
        old = out.shape[dim]
        if size > old:
            shape = list(out.shape)
            shape[dim] = size
            padded = out.new_zeros(shape)
            padded.narrow(dim, (size - old) // 2, old).copy_(out)
            out = padded
        elif size < old:
            out = out.narrow(dim, (old - size) // 2, size)
    return out.contiguous()


def expand_focal_projection(value: torch.Tensor, rows: int, dim: int) -> torch.Tensor:
    """Grow the rows of `f` (weight `(2C+L+1, C)` or bias `(2C+L+1,)`) from L to more focal levels.

    Rows: ``[q (C), ctx (C), gate_0 .. gate_{L-1}, gate_global]``; the global gate stays last, new level gates
    (between the old ones and the global one) start at zero, so they contribute nothing at first.
    """
    old = value.shape[0]
    if old < 2 * dim + 2:
        raise ValueError(f"focal projection with {old} rows has no gate rows for dim {dim} (expected >= {2 * dim + 2})")
    if rows < old:
        raise ValueError(f"cannot shrink the focal projection from {old} to {rows} rows (fewer focal levels)")
    out = value.new_zeros((rows, *value.shape[1:]))
    out[: old - 1] = value[:-1]  # q, ctx and the existing level gates
    out[-1] = value[-1]  # global gate
    return out
