"""HorNet checkpoints in official (`raoyongming/HorNet`), mmpretrain or our format -> our keys.

Official (`{'model': ...}`)                        ours
``downsample_layers.0.{0,1}.*``                    ``stem.{proj,norm}.*``
``downsample_layers.{i}.{0,1}.*`` (i > 0)          ``stages.{i}.downsample.{norm,proj}.*``
``stages.{i}.{j}.gamma1`` / ``gamma2``             ``stages.{i}.blocks.{j}.ls1.gamma`` / ``ls2.gamma``
``stages.{i}.{j}.pwconv1`` / ``pwconv2``           ``stages.{i}.blocks.{j}.mlp.fc1`` / ``mlp.fc2``
``stages.{i}.{j}.{norm1,norm2,gnconv.*}``          ``stages.{i}.blocks.{j}.{...}`` (same names, incl. ``pws``)
``norm.*`` / ``head.*``                            ``head.norm.*`` / ``head.fc.*``

mmpretrain (`tools/model_converters/hornet2mmpretrain.py`, `{'state_dict': ...}`) adds ``backbone.``, renames
``gnconv.pws`` -> ``gnconv.projs``, ``gamma1`` -> ``gamma1.weight``, ``norm`` -> ``norm3`` and ``head`` ->
``head.fc``; these are undone first and ``data_preprocessor.*`` buffers are ignored. 1x1 conv weights
``(out, in, 1, 1)`` become our Linear ``(out, in)``, and a ``complex_weight`` whose grid differs from the model's
is resized ((bi/tri)linear, ``align_corners=True``) as the official fine-tuning loader does (e.g. 224 weights into
`hornet_large_gf_img384`).
"""
from __future__ import annotations

import re
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ..models.hornet import HorNet
from .io import unwrap_state_dict
from .loading import Converted, register_converter, reshape_like

__all__ = ["convert_hornet_state_dict", "detect_hornet_format", "resize_complex_weight"]

SENTINELS = (
    "backbone.downsample_layers.0.0.weight",  # mmpretrain classifier: keep `head.fc` next to `backbone.`
    "downsample_layers.0.0.weight",  # official (or mmpretrain backbone-only)
    "stem.proj.weight",  # ours
)
_MMPRETRAIN = [
    (r"^backbone\.", ""),
    (r"\.gnconv\.projs\.", ".gnconv.pws."),
    (r"\.gamma([12])\.weight$", r".gamma\1"),
    (r"^norm3\.", "norm."),
    (r"^head\.fc\.", "head."),
]
_OFFICIAL = [
    (r"^downsample_layers\.0\.0\.", "stem.proj."),
    (r"^downsample_layers\.0\.1\.", "stem.norm."),
    (r"^downsample_layers\.(\d+)\.0\.", r"stages.\1.downsample.norm."),
    (r"^downsample_layers\.(\d+)\.1\.", r"stages.\1.downsample.proj."),
    (r"^stages\.(\d+)\.(\d+)\.gamma([12])$", r"stages.\1.blocks.\2.ls\3.gamma"),
    (r"^stages\.(\d+)\.(\d+)\.pwconv([12])\.", r"stages.\1.blocks.\2.mlp.fc\3."),
    (r"^stages\.(\d+)\.(\d+)\.", r"stages.\1.blocks.\2."),
    (r"^norm\.", "head.norm."),
    (r"^head\.", "head.fc."),
]
_INTERP_MODE = {1: "linear", 2: "bilinear", 3: "trilinear"}


def detect_hornet_format(state_dict: Mapping[str, Any]) -> str:
    """'mmpretrain', 'official' or 'focalmod' from the key names (wrapper prefixes already stripped)."""
    keys = list(state_dict)
    if any(k.startswith("backbone.") or ".gnconv.projs." in k or k.endswith(".gamma1.weight") for k in keys):
        return "mmpretrain"
    if any(k.startswith("downsample_layers.") for k in keys):
        return "official"
    return "focalmod"


def resize_complex_weight(weight: torch.Tensor, grid: tuple[int, ...]) -> torch.Tensor:
    """GF weight `(C, *grid_old, 2)` -> `(C, *grid, 2)` by (bi/tri)linear interpolation, ``align_corners=True``."""
    mode = _INTERP_MODE[weight.ndim - 2]
    resized = F.interpolate(weight.float().movedim(-1, 0), size=tuple(grid), mode=mode, align_corners=True)
    return resized.movedim(0, -1).contiguous().to(weight.dtype)


def _rename(key: str, rules: list[tuple[str, str]], first_only: bool) -> str:
    for pattern, repl in rules:
        key, n = re.subn(pattern, repl, key)
        if n and first_only:
            break
    return key


def convert_hornet_state_dict(state_dict: Mapping[str, Any], model: nn.Module) -> Converted:
    """Official / mmpretrain / our HorNet weights (optionally wrapped in `model`/`state_dict`) -> `model`'s keys."""
    sd = unwrap_state_dict(state_dict)
    fmt = detect_hornet_format(sd)
    out = Converted({}, format=fmt)
    expected = model.state_dict()
    resized = []
    for key, value in sd.items():
        if key.startswith("data_preprocessor."):  # mmpretrain mean/std buffers
            out.ignored.append(key)
            continue
        if fmt == "mmpretrain":
            key = _rename(key, _MMPRETRAIN, first_only=False)
        if fmt != "focalmod":
            key = _rename(key, _OFFICIAL, first_only=True)
        target = expected.get(key)
        if target is not None:
            value = reshape_like(value, target.shape)
            if key.endswith("complex_weight") and value.shape != target.shape and value.ndim == target.ndim:
                value = resize_complex_weight(value, tuple(target.shape[1:-1]))
                resized.append(key)
        out.state_dict[key] = value
    if resized:
        out.notes.append(f"resized {len(resized)} GF complex weights to the model's rfft grids (align_corners=True)")
    return out


register_converter(HorNet, convert_hornet_state_dict, SENTINELS)
