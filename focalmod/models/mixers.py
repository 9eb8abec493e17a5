"""Token-mixer switch for controlled comparisons: focal modulation vs HorNet's gnConv, everything else equal.

Both mixers share one protocol: channels-first ``forward(x)`` like `nn.ConvNd` and
``forward_channels_last(x) -> (out, maps)``, the call `FocalNetBlock` makes on its `modulation`. So a mixer can
be swapped into any model built from `FocalNetBlock` (FocalNet in 1D/2D/3D, the audio models, Focal-UNet) after
construction with `swap_mixer`, keeping stem, norms, MLPs, layer scale, drop path, head and init rules equal::

    model = swap_mixer(focalmod.create_model("focalnet_tiny_srf"), "gnconv")  # HorNet order schedule 2..5
"""
from __future__ import annotations

from typing import Any

from timm.layers import trunc_normal_
from torch import nn

from ..layers import FocalModulation, GnConv

__all__ = ["MIXERS", "build_mixer", "hornet_orders", "swap_mixer"]

MIXERS: dict[str, type[nn.Module]] = {"focal": FocalModulation, "gnconv": GnConv}


def build_mixer(name: str, dim: int, spatial_dims: int = 2, **kwargs: Any) -> nn.Module:
    """`FocalModulation` ('focal') or `GnConv` ('gnconv') for `(B, dim, *S)` tensors; `kwargs` go to the class."""
    if name not in MIXERS:
        raise ValueError(f"mixer must be one of {sorted(MIXERS)}, got {name!r}")
    try:
        return MIXERS[name](dim, spatial_dims=spatial_dims, **kwargs)
    except TypeError as err:
        raise TypeError(f"build_mixer({name!r}): {err}") from None


def hornet_orders(dims: list[int], max_order: int = 5) -> dict[int, int]:
    """HorNet's schedule by width rank: smallest width -> order 2, next -> 3, ... capped at `max_order`."""
    return {d: min(2 + rank, max_order) for rank, d in enumerate(sorted(set(dims)))}


def swap_mixer(
    model: nn.Module, name: str = "gnconv", order: int | str = "hornet", **kwargs: Any
) -> nn.Module:
    """Replace every `FocalModulation` / `GnConv` in `model` that is not already a `name` mixer (in place) by a
    fresh `name` mixer of the same width and dimensionality.

    Args:
        model: any module tree whose blocks hold their mixer as a submodule (`FocalNetBlock.modulation`).
        name: 'gnconv' or 'focal'.
        order: gnConv order, an int for every mixer or 'hornet' for `hornet_orders` over the model's widths
            (2, 3, 4, 5 for a 4-stage backbone, like HorNet). Ignored for 'focal'.
        **kwargs: other constructor arguments of the new mixer (e.g. ``mixer='gf', gf_size=...``,
            ``focal_level=3``).

    New mixers get the FocalNet/HorNet init rule (truncated normal std .02 on Linear weights, zero bias; convs
    keep PyTorch's default) and the device/dtype of the module they replace. Returns `model`.
    """
    if name not in MIXERS:
        raise ValueError(f"mixer must be one of {sorted(MIXERS)}, got {name!r}")
    targets = [
        (parent, child_name, child)
        for parent in model.modules()
        for child_name, child in parent.named_children()
        if isinstance(child, tuple(MIXERS.values()))
    ]
    if not targets:
        raise ValueError(f"swap_mixer: {type(model).__name__} has no FocalModulation or GnConv submodule to replace")
    targets = [t for t in targets if not isinstance(t[2], MIXERS[name])]
    if name == "gnconv":
        if order == "hornet":
            orders = hornet_orders([m.dim for _, _, m in targets])
        elif isinstance(order, int) and not isinstance(order, bool):
            orders = {m.dim: order for _, _, m in targets}
        else:
            raise ValueError(f"order must be an int or 'hornet', got {order!r}")
    for parent, child_name, old in targets:
        ref = next(old.parameters())
        extra = {"order": orders[old.dim]} if name == "gnconv" else {}
        new = build_mixer(name, old.dim, old.spatial_dims, device=ref.device, dtype=ref.dtype, **extra, **kwargs)
        new.apply(_init_linear)
        new.train(old.training)
        setattr(parent, child_name, new)
    return model


def _init_linear(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
