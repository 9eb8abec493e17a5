"""Named Focal-UNet configurations (`focalmod.create_model(name, num_classes=...)`; `num_classes` = out_channels).

* `focal_unet_tiny_lrf`: the paper's 2D model (Naderi et al. 2022, `focalnet_tiny_lrf.yaml`): FocalNet-T-LRF
  encoder (embed 96, depths 2-2-6-2, focal levels 3, patch 4, drop path 0.2), asymmetric focal decoder, 224x224
  slices repeated to 3 channels, 9 Synapse classes. The encoder loads ImageNet `focalnet_tiny_lrf` weights
  (``focalmod.load_checkpoint(model.encoder, path, strict=False)``).
* `focal_unet_3d`: the SwinUNETR layout (feature size 48, depths 2-2-2-2, patch 2, MONAI UNETR decoder) with
  the FocalNet encoder, at SwinUNETR's usual BTCV setting (1 channel, 96^3 crops, 14 classes).
"""
from __future__ import annotations

from typing import Any

from ._registry import ModelSpec, register_spec
from .focal_unet import FocalUNet


def _build(num_classes: int, **kwargs: Any) -> FocalUNet:
    """Registry entry point: `num_classes` (the registry's name for it) is the segmentation `out_channels`."""
    return FocalUNet(out_channels=num_classes, **kwargs)


register_spec(ModelSpec(
    "focal_unet_tiny_lrf", _build,
    dict(spatial_dims=2, in_channels=3, num_classes=9, feature_size=96, depths=(2, 2, 6, 2), focal_levels=3,
         focal_windows=3, patch_size=4, drop_path_rate=0.2, decoder="focal"),
    pretrained_cfg={"input_size": (3, 224, 224), "num_classes": 9, "task": "segmentation", "license": "mit"},
    notes="Focal-UNet (arXiv 2212.09263), Synapse setting",
))
register_spec(ModelSpec(
    "focal_unet_3d", _build,
    dict(spatial_dims=3, in_channels=1, num_classes=14, feature_size=48, depths=(2, 2, 2, 2), focal_levels=2,
         focal_windows=3, patch_size=2, decoder="unetr"),
    pretrained_cfg={"input_size": (1, 96, 96, 96), "num_classes": 14, "task": "segmentation", "license": "mit"},
    notes="SwinUNETR layout with a FocalNet encoder, BTCV setting",
))
