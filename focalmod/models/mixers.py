"""Token mixers for controlled comparisons: focal modulation vs HorNet's gnConv, everything else equal.

Both mixers share one protocol: channels-first ``forward(x)`` like `nn.ConvNd` and
``forward_channels_last(x) -> (out, maps)``, the call a `MixerBlock` makes on its mixer. The mixer is chosen at
construction (``focalmod.create_model("focalnet_tiny_srf", mixer="gnconv")``, `FocalUNet(mixer=...)`), from the
factories `mixer_layers` gives; `swap_mixer` replaces the mixers of a built model in place (same factories, same
init) and is kept for models built elsewhere::

    model = focalmod.create_model("focalnet_tiny_srf", mixer="gnconv")  # HorNet order schedule 2..5
"""
from __future__ import annotations

from functools import partial
from typing import Any, Callable, Sequence

from torch import nn

from ..layers import FocalModulation, GnConv
from .backbone import init_weights

__all__ = ["MIXERS", "build_mixer", "hornet_orders", "mixer_layers", "swap_mixer"]

MIXERS: dict[str, type[nn.Module]] = {"focal": FocalModulation, "gnconv": GnConv}


def build_mixer(name: str, dim: int, spatial_dims: int = 2, **kwargs: Any) -> nn.Module:
    """`FocalModulation` ('focal') or `GnConv` ('gnconv') for `(B, dim, *S)` tensors; `kwargs` go to the class."""
    check_mixer(name)
    try:
        return MIXERS[name](dim, spatial_dims=spatial_dims, **kwargs)
    except TypeError as err:
        raise TypeError(f"build_mixer({name!r}): {err}") from None


def check_mixer(name: str) -> str:
    if name not in MIXERS:
        raise ValueError(f"mixer must be one of {sorted(MIXERS)}, got {name!r}")
    return name


def hornet_orders(dims: Sequence[int], max_order: int = 5) -> dict[int, int]:
    """HorNet's schedule by width rank: smallest width -> order 2, next -> 3, ... capped at `max_order`."""
    return {d: min(2 + rank, max_order) for rank, d in enumerate(sorted(set(dims)))}


def mixer_layers(
    name: str, dims: Sequence[int], order: int | str = "hornet", **kwargs: Any
) -> list[Callable[..., nn.Module]]:
    """One mixer factory per width in `dims`, for a block's `mixer_layer` (called as ``f(dim, spatial_dims=...)``).

    Args:
        name: 'focal' or 'gnconv'.
        dims: the widths of the blocks that will hold the mixers.
        order: gnConv order, an int for every mixer or 'hornet' for `hornet_orders` over `dims` (2, 3, 4, 5 for a
            4-stage backbone, like HorNet). Ignored for 'focal'.
        **kwargs: other constructor arguments of the mixer (e.g. ``mixer='gf', gf_size=...``, ``focal_level=3``).
    """
    cls = MIXERS[check_mixer(name)]
    if name != "gnconv":
        return [partial(cls, **kwargs) for _ in dims]
    if order == "hornet":
        orders = hornet_orders(dims)
    elif isinstance(order, int) and not isinstance(order, bool):
        orders = {d: order for d in dims}
    else:
        raise ValueError(f"order must be an int or 'hornet', got {order!r}")
    return [partial(cls, order=orders[d], **kwargs) for d in dims]


def swap_mixer(
    model: nn.Module, name: str = "gnconv", order: int | str = "hornet", **kwargs: Any
) -> nn.Module:
    """Replace every `FocalModulation` / `GnConv` in `model` that is not already a `name` mixer (in place) by a
    fresh `name` mixer of the same width and dimensionality, under the same attribute (e.g. a block's
    `modulation`). Prefer choosing the mixer at construction (`mixer=`); this is for models built elsewhere.

    Args:
        model: any module tree holding mixers as submodules.
        name, order, **kwargs: as in `mixer_layers`.

    New mixers get the FocalNet/HorNet init rule (`init_weights`: truncated normal std .02 on Linear weights, zero
    bias; convs keep PyTorch's default) and the device/dtype of the module they replace. Returns `model`.
    """
    check_mixer(name)
    targets = [
        (parent, child_name, child)
        for parent in model.modules()
        for child_name, child in parent.named_children()
        if isinstance(child, tuple(MIXERS.values()))
    ]
    if not targets:
        raise ValueError(f"swap_mixer: {type(model).__name__} has no FocalModulation or GnConv submodule to replace")
    targets = [t for t in targets if not isinstance(t[2], MIXERS[name])]
    layers = mixer_layers(name, [old.dim for _, _, old in targets], order, **kwargs)
    for (parent, child_name, old), layer in zip(targets, layers):
        ref = next(old.parameters())
        try:
            new = layer(old.dim, spatial_dims=old.spatial_dims, device=ref.device, dtype=ref.dtype)
        except TypeError as err:
            raise TypeError(f"swap_mixer({name!r}): {err}") from None
        new.apply(init_weights)
        new.train(old.training)
        setattr(parent, child_name, new)
    return model
