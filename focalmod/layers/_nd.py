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


def check_channels_first(module_name: str, x: torch.Tensor, channels: int, spatial_dims: int) -> None:
    """Raise a ValueError naming the expected shape unless `x` is `(B, channels, *spatial)`."""
    if x.ndim != spatial_dims + 2 or x.shape[1] != channels:
        expected = f"(B, {channels}, {SPATIAL_NAMES[spatial_dims]})"
        raise ValueError(f"{module_name} expects input of shape {expected}, got {tuple(x.shape)}")


def to_channels_last(x: torch.Tensor) -> torch.Tensor:
    """`(B, C, *S)` -> `(B, *S, C)` as a view (free when the memory is already channels-last)."""
    return x.movedim(1, -1)


def to_channels_first(x: torch.Tensor) -> torch.Tensor:
    """`(B, *S, C)` -> `(B, C, *S)` as a view."""
    return x.movedim(-1, 1)
