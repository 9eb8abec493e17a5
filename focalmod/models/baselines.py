"""Build any model the benchmarks compare by name: ours from the focalmod registry, the rest from timm.

VOLO (outlook attention) is timm's implementation, untouched: ``build_baseline("volo_d1", num_classes=10)``
builds timm's ``volo_d1_224`` without weights. Short VOLO names map to the 224 entries.
"""
from __future__ import annotations

import difflib
from typing import Any

import timm
from torch import nn

from ._registry import create_model, get_spec, list_models

__all__ = ["VOLO_ALIASES", "build_baseline"]

VOLO_ALIASES = {f"volo_d{i}": f"volo_d{i}_224" for i in range(1, 6)}


def build_baseline(name: str, mixer: str | None = None, **kwargs: Any) -> nn.Module:
    """A focalmod model (`create_model`) or, for any other name, ``timm.create_model(name, pretrained=False)``.

    Args:
        name: a `focalmod.list_models()` name, a timm model name, or a VOLO alias ('volo_d1' ... 'volo_d5').
        mixer: optional 'gnconv' / 'focal': the token mixer of a FocalNet / Focal-UNet, chosen at construction
            (their `mixer` argument; gnConv with HorNet's order schedule), for comparisons with everything else equal.
        **kwargs: passed to the constructor (`num_classes`, `in_chans`, `img_size`, ...).
    """
    if kwargs.get("pretrained"):
        raise ValueError("build_baseline never downloads weights; pass pretrained=False and load a local checkpoint")
    kwargs.pop("pretrained", None)
    if _is_ours(name):
        return create_model(name, **kwargs) if mixer is None else create_model(name, mixer=mixer, **kwargs)
    if mixer is not None:
        raise ValueError(f"mixer={mixer!r} needs a focalmod model, {name!r} is not one")
    timm_name = VOLO_ALIASES.get(name, name)
    if not timm.is_model(timm_name):
        known = list_models() + timm.list_models() + list(VOLO_ALIASES)
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ValueError(f"unknown model name {name!r}: not in focalmod.list_models() nor timm{hint}")
    return timm.create_model(timm_name, pretrained=False, **kwargs)


def _is_ours(name: str) -> bool:
    try:
        get_spec(name)
    except ValueError:
        return False
    return True
