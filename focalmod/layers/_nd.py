"""Dimension helpers shared by the N-d layers: conv class lookup, validation, layout views."""
from __future__ import annotations

import torch
from torch import nn

CONV_BY_DIMS: dict[int, type[nn.Module]] = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
SPATIAL_NAMES: dict[int, str] = {1: "L", 2: "H, W", 3: "D, H, W"}


def check_spatial_dims(spatial_dims: int) -> int:
    if spatial_dims not in CONV_BY_DIMS:
        raise ValueError(f"spatial_dims must be 1, 2 or 3, got {spatial_dims!r}")
    return spatial_dims


def check_positive(name: str, value: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def conv_nd(spatial_dims: int) -> type[nn.Module]:
    """`nn.Conv1d`, `nn.Conv2d` or `nn.Conv3d` for `spatial_dims` (MONAI's `Conv[Conv.CONV, d]` in one line)."""
    return CONV_BY_DIMS[check_spatial_dims(spatial_dims)]


def checks_apply(x: torch.Tensor) -> bool:
    """Whether eager input checks should run: not while `x` is traced (`torch.jit.trace`, the legacy ONNX exporter,
    `torch.fx`), where shapes are fixed by the example or symbolic. MONAI's networks skip their checks the same way;
    callers also guard with ``if not torch.jit.is_scripting()``."""
    return not torch.jit.is_tracing() and not isinstance(x, torch.fx.Proxy)


def check_channels_first(
    module_name: str, x: torch.Tensor, channels: int, spatial_dims: int, dtype: torch.dtype | None = None
) -> None:
    """Raise one clear error unless `x` is a floating-point tensor `(B, channels, *spatial)`.

    Not a tensor (NumPy array, list): TypeError saying to pass a tensor. Integer or bool tensor (e.g. a uint8 image
    batch), or a float dtype other than `dtype` (the module's parameters): TypeError naming the dtype expected.
    Wrong rank or channel count: ValueError naming the expected shape.
    """
    expected = f"(B, {channels}, {SPATIAL_NAMES[spatial_dims]})"
    if not isinstance(x, torch.Tensor):
        raise TypeError(
            f"{module_name} expects a torch.Tensor of shape {expected}, got {type(x).__module__}.{type(x).__name__}; "
            "convert it first, e.g. torch.as_tensor(x, dtype=torch.float32)"
        )
    if not x.is_floating_point():
        want = dtype if dtype is not None else torch.float32
        raise TypeError(
            f"{module_name} expects a floating-point input of dtype {want} (the dtype of its parameters), got "
            f"{x.dtype}; convert it, e.g. x.to({want}) (and scale uint8 images to [0, 1] and normalise them)"
        )
    if dtype is not None and x.dtype != dtype and not _autocast(x):
        raise TypeError(
            f"{module_name} expects input of dtype {dtype} (the dtype of its parameters), got {x.dtype}; "
            f"convert the input (x.to({dtype})) or the model (model.to({x.dtype}))"
        )
    if x.ndim != spatial_dims + 2 or x.shape[1] != channels:
        raise ValueError(f"{module_name} expects input of shape {expected}, got {tuple(x.shape)}")


def _autocast(x: torch.Tensor) -> bool:
    """Autocast casts inputs per op, so any float input dtype is fine under it."""
    return x.device.type in ("cpu", "cuda", "xpu", "mps") and torch.is_autocast_enabled(x.device.type)


def to_channels_last(x: torch.Tensor) -> torch.Tensor:
    """`(B, C, *S)` -> `(B, *S, C)` as a view (free when the memory is already channels-last).

    Dims are non-negative on purpose: the legacy ONNX exporter writes ``movedim`` with a negative dim as a Transpose
    with a -1 in its permutation, which onnxruntime rejects.
    """
    return x.movedim(1, x.dim() - 1)


def to_channels_first(x: torch.Tensor) -> torch.Tensor:
    """`(B, *S, C)` -> `(B, C, *S)` as a view."""
    return x.movedim(x.dim() - 1, 1)
