"""Training presets: the official FocalNet-UPerNet ADE20K recipe, and the embedded synthetic default.

`ade20k` = ``segmentation/configs/focalnet/upernet_focalnet_tiny_*_ade20k_*.py`` with its ``_base_`` files: AdamW
lr 6e-5, betas (0.9, 0.999), weight decay 0.01 (none for norms), poly power 1 to 0 with 1500 linear warm-up
iterations from ratio 1e-6, 160k iterations of 16 images (8 GPUs x 2), 512x512 crops from images resized to
(2048, 512) x U(0.5, 2.0) (keep ratio), ``cat_max_ratio`` 0.75, flip, photometric distortion; whole-image test at
(2048, 512) keep ratio, multi-scale ratios 0.5-1.75 + flip. Validation every 16k iterations (schedule_160k).

`synthetic`: the same recipe shrunk to the 96x128 scenes of `synthetic.py` and trained from scratch on a CPU: a
small FocalNet (C = 32, depths 1-1-2-1, focal window 9 as the official backbone) under a 64-channel UPerHead,
96x96 crops from images resized to (512, 96) x U(0.5, 2.0), a larger learning rate for training from scratch.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["PRESETS", "Recipe"]


@dataclass(frozen=True)
class Recipe:
    model: str
    model_args: dict[str, Any] = field(default_factory=dict)
    lr: float = 6e-5
    weight_decay: float = 0.01
    warmup_iters: int = 1500
    max_iters: int = 160_000
    batch_size: int = 16
    crop_size: int = 512
    img_scale: tuple[int, int] = (2048, 512)
    ratio_range: tuple[float, float] = (0.5, 2.0)
    cat_max_ratio: float = 0.75
    photometric: bool = True
    val_interval: int = 16_000
    test_mode: str = "whole"
    test_stride: int = 341

    def as_flags(self) -> dict[str, Any]:
        """The preset as CLI option values (`dest` names)."""
        values = asdict(self)
        values["model_arg"] = [f"{k}={json.dumps(v)}" for k, v in values.pop("model_args").items()]
        values["img_scale"], values["ratio_range"] = list(self.img_scale), list(self.ratio_range)
        return values


PRESETS = {
    "ade20k": Recipe(model="upernet_focalnet_tiny_srf"),
    "synthetic": Recipe(
        model="upernet_focalnet_tiny_srf",
        model_args=dict(embed_dim=32, depths=(1, 1, 2, 1), channels=64, aux_channels=32, drop_path_rate=0.1),
        lr=1e-3,
        warmup_iters=100,
        max_iters=800,
        batch_size=8,
        crop_size=96,
        img_scale=(512, 96),
        val_interval=400,
        test_stride=64,
    ),
}
