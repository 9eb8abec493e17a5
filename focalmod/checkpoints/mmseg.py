"""UPerNet checkpoints: the official FocalNet segmentation release (mmseg layout) or ours -> `UPerNet` keys.

mmseg layout (``state_dict`` of ``upernet_focalnet_*_ade20k.pth``) -> ours:

* ``backbone.norm{i}.*`` (one LayerNorm per output) -> ``out_norms.{i}.*``
* ``backbone.<official FocalNet key>`` -> ``backbone.model.<focalmod key>`` through the FocalNet converter
  (``patch_embed`` -> ``stem``, ``layers.i.downsample`` -> ``layers.(i+1).downsample``, the 1x1-conv ``h`` ->
  Linear, focal kernel surgery when the model's kernels differ)
* ``decode_head.*`` and ``auxiliary_head.*``: the same names (our heads keep mmseg's ``conv`` / ``bn`` /
  ``conv_seg`` keys).

A classifier of another class count (fine-tuning on another label set) is left at its initialisation in both
heads, with a warning.
"""
from __future__ import annotations

import re
import warnings

import torch

from ..models.upernet import FocalNetFeatures, UPerNet
from .focalnet import convert_focalnet
from .loading import Converted, register_converter

__all__ = ["convert_upernet"]

SENTINELS = ("decode_head.conv_seg.weight",)
_OUT_NORM = re.compile(r"^backbone\.norm(\d+)\.")
_CLASSIFIERS = ("decode_head.conv_seg.", "auxiliary_head.conv_seg.")


def _is_mmseg_focalnet(state_dict: dict[str, torch.Tensor]) -> bool:
    return "backbone.patch_embed.proj.weight" in state_dict


def convert_upernet(state_dict: dict[str, torch.Tensor], model: UPerNet) -> Converted:
    """Map an mmseg FocalNet-UPerNet checkpoint (or one of ours) onto `model`'s keys."""
    if _is_mmseg_focalnet(state_dict):
        if not isinstance(model.backbone, FocalNetFeatures):
            raise ValueError(
                f"this is an mmseg FocalNet UPerNet checkpoint, but the model's backbone is "
                f"{type(model.backbone).__name__}; build it with focalmod.create_model('upernet_focalnet_...')"
            )
        out = _convert_mmseg(state_dict, model)
    else:
        out = Converted(dict(state_dict), format="focalmod")
    _keep_other_classifiers(out, model)
    return out


def _convert_mmseg(state_dict: dict[str, torch.Tensor], model: UPerNet) -> Converted:
    out = Converted({}, format="mmseg")
    backbone: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        norm = _OUT_NORM.match(key)
        if norm:
            out.state_dict[f"out_norms.{norm[1]}.{key[norm.end():]}"] = value
        elif key.startswith("backbone."):
            backbone[key[len("backbone.") :]] = value
        else:
            out.state_dict[key] = value
    inner = convert_focalnet(backbone, model.backbone.model)
    out.state_dict.update({f"backbone.model.{k}": v for k, v in inner.state_dict.items()})
    out.ignored += [f"backbone.{k}" for k in inner.ignored]
    out.initialised += [f"backbone.model.{k}" for k in inner.initialised]
    out.notes += inner.notes
    return out


def _keep_other_classifiers(out: Converted, model: UPerNet) -> None:
    """Drop checkpoint classifiers whose class count differs from the model's; they keep their initialisation."""
    expected = model.state_dict()
    for prefix in _CLASSIFIERS:
        keys = [k for k in expected if k.startswith(prefix)]
        found = [k for k in keys if k in out.state_dict]
        if not found or all(out.state_dict[k].shape == expected[k].shape for k in found):
            continue
        shapes = ", ".join(f"{k} {tuple(out.state_dict[k].shape)} vs model {tuple(expected[k].shape)}" for k in found)
        msg = f"classifier does not match ({shapes}); keeping the model's initialised {prefix.rstrip('.')}"
        warnings.warn(msg, stacklevel=4)
        out.notes.append(msg)
        out.ignored += found
        out.initialised += keys
        for k in found:
            out.state_dict.pop(k)


register_converter(UPerNet, convert_upernet, SENTINELS)
