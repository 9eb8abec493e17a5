"""The official FocalNet + UPerNet ADE20K models (`upernet_focalnet_{tiny,small,base}_{srf,lrf}`) and
`build_upernet`, the same heads on any focalmod or timm backbone (for comparisons).

Configuration = the official ``segmentation/configs/focalnet/upernet_focalnet_*_ade20k_*.py`` (microsoft/FocalNet):
backbone focal windows 9 in every stage (kernels 9, 11 for srf; 9, 11, 13 for lrf), drop path 0.3 (all sizes),
one LayerNorm per output; UPerHead with 512 channels, pool scales 1-2-3-6, dropout 0.1; FCN auxiliary head on
stage 3 with 256 channels; 150 classes.

`params_m`: counted from that structure (see ``tests/test_upernet.py``, which rebuilds the official key list from
the config numbers); the README's rounded numbers are 61 / 61 / 83 / 84 / 124 / 126 M (the reference file's
84.60 for small_lrf is 84.595 rounded up). `PUBLISHED` keeps the
README's single- / multi-scale mIoU and GFLOPs (mmseg's counter at a 512x2048 input, the Swin convention).
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torch import nn

from ._registry import ModelSpec, create_model, get_spec, register_spec
from .baselines import build_baseline
from .focalnet import FocalNet
from .upernet import FocalNetFeatures, UPerNet

__all__ = ["PUBLISHED", "Published", "build_upernet", "upernet_focalnet"]



@dataclass(frozen=True)
class Published:
    """The official README's numbers (ADE20K val, 160k iterations, 512x512 crops)."""

    miou_ss: float
    miou_ms: float
    params_m: float
    gflops_512x2048: float


PUBLISHED = {
    "upernet_focalnet_tiny_srf": Published(46.5, 47.2, 61, 944),
    "upernet_focalnet_tiny_lrf": Published(46.8, 47.8, 61, 949),
    "upernet_focalnet_small_srf": Published(49.3, 50.1, 83, 1035),
    "upernet_focalnet_small_lrf": Published(49.1, 50.1, 84, 1044),
    "upernet_focalnet_base_srf": Published(50.2, 51.1, 124, 1180),
    "upernet_focalnet_base_lrf": Published(50.5, 51.4, 126, 1192),
}


def upernet_focalnet(num_classes: int = 150, **kwargs: Any) -> UPerNet:
    """UPerNet on a `FocalNetFeatures` backbone: `UPerNet`'s own arguments (channels, aux_channels, ...) go to the
    heads, the rest to `FocalNet` (embed_dim, depths, focal_levels, ...)."""
    heads, focalnet_kwargs = _split_head_kwargs(kwargs)
    return UPerNet(FocalNetFeatures(FocalNet(num_classes=0, **focalnet_kwargs)), num_classes, **heads)


def build_upernet(backbone: str | nn.Module, num_classes: int = 150, **kwargs: Any) -> UPerNet:
    """The same UPerNet on any backbone: a module with `feature_info`, or a name.

    Names: a 2D focalmod FocalNet (`focalnet_tiny_srf`, ... -> `FocalNetFeatures`), any other focalmod model with
    ``features_only`` (e.g. `hornet_tiny_7x7`) or a timm model (`swin_tiny_patch4_window7_224`, `convnext_tiny`),
    built without weights. `UPerNet`'s own arguments (channels, aux_channels, out_norms, ...) go to the heads, the
    rest to the backbone (e.g. ``embed_dim=32, depths=(1, 1, 2, 1)``).
    """
    heads, backbone_kwargs = _split_head_kwargs(kwargs)
    if isinstance(backbone, str):
        backbone = _features_backbone(backbone, **backbone_kwargs)
    elif backbone_kwargs:
        raise ValueError(f"backbone_kwargs {sorted(backbone_kwargs)} need a backbone name, got a module")
    return UPerNet(backbone, num_classes, **heads)


_HEAD_ARGS = tuple(inspect.signature(UPerNet).parameters)[2:]  # after (backbone, num_classes)


def _split_head_kwargs(kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    heads = {k: v for k, v in kwargs.items() if k in _HEAD_ARGS}
    return heads, {k: v for k, v in kwargs.items() if k not in _HEAD_ARGS}


def _features_backbone(name: str, **kwargs: Any) -> nn.Module:
    try:
        spec = get_spec(name)
    except ValueError:
        spec = None
    if spec is not None and spec.model_cls is FocalNet and spec.kwargs.get("spatial_dims", 2) == 2:
        return FocalNetFeatures(create_model(name, num_classes=0, **kwargs))
    return build_baseline(name, features_only=True, **kwargs)


def _cfg() -> dict:
    return {
        "input_size": (3, 512, 512),  # training crop; evaluation resizes to (2048, 512) keeping the aspect ratio
        "test_input_size": (3, 512, 2048),  # the input of the published GFLOPs
        "mean": IMAGENET_DEFAULT_MEAN,  # mmseg's (123.675, 116.28, 103.53) / 255
        "std": IMAGENET_DEFAULT_STD,
        "num_classes": 150,
        "task": "semantic_segmentation",
        "first_conv": "backbone.model.stem.proj",
        "classifier": "decode_head.conv_seg",
        "license": "mit",
    }


T, S = (2, 2, 6, 2), (2, 2, 18, 2)
# name: (backbone kwargs, parameters M counted from the official structure)
_VARIANTS = {
    "upernet_focalnet_tiny_srf": (dict(embed_dim=96, depths=T, focal_levels=2), 60.823),
    "upernet_focalnet_tiny_lrf": (dict(embed_dim=96, depths=T, focal_levels=3), 61.573),
    "upernet_focalnet_small_srf": (dict(embed_dim=96, depths=S, focal_levels=2), 83.061),
    "upernet_focalnet_small_lrf": (dict(embed_dim=96, depths=S, focal_levels=3), 84.595),
    "upernet_focalnet_base_srf": (dict(embed_dim=128, depths=S, focal_levels=2), 123.681),
    "upernet_focalnet_base_lrf": (dict(embed_dim=128, depths=S, focal_levels=3), 125.726),
}
for _name, (_kwargs, _params) in _VARIANTS.items():
    register_spec(ModelSpec(
        _name, upernet_focalnet, dict(_kwargs, focal_windows=9, drop_path_rate=0.3, num_classes=150), _cfg(),
        params_m=_params, notes=f"official mmseg config, ADE20K; README: {PUBLISHED[_name]}",
    ))
