"""FocalNet checkpoints in official Microsoft, mmdet-backbone, timm, HF transformers or our format -> our keys.

Key maps (reference focalnet.md Sec. 5), as ``official | timm | HF transformers -> ours`` (ours follow timm's
layout with Linear, i.e. 2-D, weights):

* ``patch_embed.{proj,norm}`` | ``stem.*`` | ``embeddings.patch_embeddings.projection``, ``embeddings.norm``
  -> ``stem.{proj,norm}``
* ``layers.i.downsample`` (end of stage i) | ``layers.(i+1).downsample`` |
  ``encoder.stages.i.downsample.{projection,norm}`` -> ``layers.(i+1).downsample.{proj,norm}``
* ``layers.i.blocks.j`` | same | ``encoder.stages.i.layers.j`` -> ``layers.i.blocks.j``
* ``modulation.{f,h,proj}`` (h a 1x1 conv) | same, all 1x1 convs | ``modulation.projection_{in,context,out}``
  -> ``modulation.{f,h,proj}`` (Linear)
* ``modulation.ln`` | ``modulation.norm`` | ``modulation.layernorm`` -> ``modulation.norm``
* ``gamma_1/gamma_2`` | ``ls1.gamma/ls2.gamma`` | ``gamma_1/gamma_2`` -> ``ls1.gamma/ls2.gamma``
* ``norm1/norm2`` (post-norm too) | ``norm1_post/norm2_post`` when post-norm | ``norm1/norm2`` -> ``norm1/norm2``
* ``norm`` (mmdet: ``norm0..3``) | ``norm`` | ``layernorm`` -> ``norm``; ``head`` | ``head.fc`` | ``classifier``
  -> ``head.fc``

mmdet: the last per-output norm (``norm3``, on the same tensor as the classifier's final norm) becomes `norm`;
the others are ignored. `normalize_modulator` has no weights, so it comes from the model's config, not the file.
"""
from __future__ import annotations

import re
import warnings
from typing import Callable

import torch
from torch import nn

from ..models.focalnet import FocalNet
from .loading import Converted, register_converter, reshape_like
from .surgery import expand_focal_projection, resize_kernel

__all__ = ["convert_focalnet", "detect_focalnet_format"]

SENTINELS = (
    "focalnet.embeddings.patch_embeddings.projection.weight",  # HF ForImageClassification / Backbone
    "embeddings.patch_embeddings.projection.weight",  # HF FocalNetModel
    "patch_embed.proj.weight",  # official, mmdet backbone
    "stem.proj.weight",  # timm, ours
)

Rule = tuple[str, "str | Callable[[re.Match], str]"]


def _next_stage(template: str) -> Callable[[re.Match], str]:
    return lambda m: template.format(int(m[1]) + 1)


_OFFICIAL: list[Rule] = [
    (r"^patch_embed\.", "stem."),
    (r"^layers\.(\d+)\.downsample\.", _next_stage("layers.{}.downsample.")),
    (r"\.gamma_([12])$", r".ls\1.gamma"),
    (r"\.modulation\.ln\.", ".modulation.norm."),
    (r"^head\.", "head.fc."),
]
_HF: list[Rule] = [
    (r"^focalnet\.", ""),
    (r"^embeddings\.patch_embeddings\.projection\.", "stem.proj."),
    (r"^embeddings\.norm\.", "stem.norm."),
    (r"^encoder\.stages\.(\d+)\.layers\.(\d+)\.", r"layers.\1.blocks.\2."),
    (r"^encoder\.stages\.(\d+)\.downsample\.projection\.", _next_stage("layers.{}.downsample.proj.")),
    (r"^encoder\.stages\.(\d+)\.downsample\.norm\.", _next_stage("layers.{}.downsample.norm.")),
    (r"\.modulation\.projection_in\.", ".modulation.f."),
    (r"\.modulation\.projection_context\.", ".modulation.h."),
    (r"\.modulation\.projection_out\.", ".modulation.proj."),
    (r"\.modulation\.layernorm\.", ".modulation.norm."),
    (r"\.gamma_([12])$", r".ls\1.gamma"),
    (r"^layernorm\.", "norm."),
    (r"^classifier\.", "head.fc."),
]
_TIMM: list[Rule] = [(r"\.norm([12])_post\.", r".norm\1.")]
_FOCAL_KERNEL = re.compile(r"\.modulation\.focal_layers\.\d+\.0\.weight$")
_MMDET_NORM = re.compile(r"^norm(\d+)\.")


def detect_focalnet_format(state_dict: dict[str, torch.Tensor]) -> str:
    """'hf', 'official', 'mmdet', 'timm' or 'focalmod', from sentinel keys (prefixes already stripped)."""
    keys = list(state_dict)
    if any(k.startswith(("focalnet.embeddings.", "embeddings.patch_embeddings.")) for k in keys):
        return "hf"
    if "patch_embed.proj.weight" in state_dict:
        return "mmdet" if any(_MMDET_NORM.match(k) for k in keys) else "official"
    timm = any(k.endswith(("norm1_post.weight", "norm2_post.weight")) for k in keys) or any(
        k.endswith(".modulation.f.weight") and v.ndim > 2 for k, v in state_dict.items()
    )
    return "timm" if timm else "focalmod"


def _rename(key: str, rules: list[Rule]) -> str:
    for pattern, repl in rules:
        key = re.sub(pattern, repl, key)
    return key


def convert_focalnet(state_dict: dict[str, torch.Tensor], model: FocalNet) -> Converted:
    """Map any supported FocalNet checkpoint onto `model`'s keys, with the official kernel/level surgery."""
    fmt = detect_focalnet_format(state_dict)
    out = Converted({}, format=fmt)
    rules = {"hf": _HF, "official": _OFFICIAL, "mmdet": _OFFICIAL, "timm": _TIMM}.get(fmt, [])
    last_norm = f"norm{len(model.layers) - 1}."
    for key, value in state_dict.items():
        if fmt == "hf" and key.startswith("hidden_states_norms."):  # FocalNetBackbone's per-stage output norms
            out.ignored.append(key)
            continue
        if fmt == "mmdet" and _MMDET_NORM.match(key):
            if key.startswith(last_norm) and "norm.weight" not in state_dict:
                out.state_dict["norm." + key[len(last_norm) :]] = value
            else:
                out.ignored.append(key)
            continue
        out.state_dict[_rename(key, rules)] = value
    _fit_to_model(out, model)
    if fmt == "timm" and any(getattr(m, "normalize_modulator", False) for m in model.modules()):
        msg = (
            "timm's FocalNet never divides the context by focal_level+1, but this model has normalize_modulator=True "
            "(the official large/xlarge fl4 configs), so its logits differ from timm's for the same weights; build "
            "it with normalize_modulator=False to reproduce timm"
        )
        out.notes.append(msg)
        warnings.warn(msg, stacklevel=4)
    return out


def _fit_to_model(out: Converted, model: nn.Module) -> None:
    """1x1 conv -> Linear reshapes, then the official surgery for other kernel sizes and more focal levels."""
    expected = model.state_dict()
    sd = out.state_dict
    resized, cropped, grown = 0, 0, []
    for key in list(sd):
        if key not in expected:
            continue
        value, shape = reshape_like(sd[key], expected[key].shape), expected[key].shape
        if _FOCAL_KERNEL.search(key) and value.ndim == len(shape) and value.shape[:2] == shape[:2]:
            if value.shape[2:] != shape[2:]:
                cropped += any(a > b for a, b in zip(value.shape[2:], shape[2:]))
                value, resized = resize_kernel(value, tuple(shape[2:])), resized + 1
        elif key.endswith((".modulation.f.weight", ".modulation.f.bias")) and value.shape[0] < shape[0]:
            if value.shape[1:] == shape[1:]:
                dim = expected[key.rsplit(".", 1)[0] + ".weight"].shape[1]
                value = expand_focal_projection(value, shape[0], dim)
                grown.append(key.rsplit(".", 2)[0])  # "...modulation"
        sd[key] = value
    if resized:
        out.notes.append(f"resized {resized} focal kernels to the model's sizes (centered zero-pad / crop)")
    if cropped:
        warnings.warn(f"center-cropped {cropped} focal kernels to the model's smaller kernel sizes", stacklevel=5)
    if grown:
        modulations = sorted(set(grown))
        new_layers = [k for k in expected if k.rsplit(".focal_layers.", 1)[0] in modulations and k not in sd]
        out.initialised += new_layers
        msg = (
            f"{len(modulations)} modulations gain focal levels: new gate rows of `f` start at zero and "
            f"{len(new_layers)} new focal_layers tensors keep their initialisation (official surgery)"
        )
        out.notes.append(msg)
        warnings.warn(msg, stacklevel=5)


register_converter(FocalNet, convert_focalnet, SENTINELS)
