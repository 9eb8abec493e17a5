"""The three compared networks and the LightningModule (DiceCE loss, sliding-window Dice/HD95 validation)."""
from __future__ import annotations

import math
from typing import Any, Sequence

import lightning.pytorch as pl
import numpy as np
import torch
from monai.inferers import sliding_window_inference
from monai.losses import DiceCELoss
from monai.metrics import DiceMetric, HausdorffDistanceMetric
from monai.networks.nets import SwinUNETR, UNet
from monai.networks.utils import one_hot
from monai.optimizers import WarmupCosineSchedule
from torch import nn

from focalmod.models.focal_unet import FocalUNet

__all__ = ["MODELS", "SegmentationModule", "build_model", "size_divisor"]

MODELS = ("focal_unet", "unet", "swin_unetr")


def build_model(name: str, spatial_dims: int, in_channels: int, out_channels: int, feature_size: int = 12,
                  norm: str = "batch", **focal_kwargs: Any) -> nn.Module:
    """FocalUNet, MONAI UNet (channels f..16f, 4 stride-2 levels, 2 residual units, as in the MONAI tutorials) or
    MONAI SwinUNETR (feature_size rounded up to a multiple of 12, its constraint) with the same `norm`."""
    if name == "focal_unet":
        return FocalUNet(spatial_dims, in_channels, out_channels, feature_size=feature_size, norm_name=norm,
                         **focal_kwargs)
    if name == "unet":
        f = feature_size
        return UNet(spatial_dims, in_channels, out_channels, channels=(f, 2 * f, 4 * f, 8 * f, 16 * f),
                    strides=(2, 2, 2, 2), num_res_units=2, norm=norm)
    if name == "swin_unetr":
        return SwinUNETR(in_channels, out_channels, feature_size=12 * math.ceil(feature_size / 12),
                         spatial_dims=spatial_dims, norm_name=norm)
    raise ValueError(f"--model must be one of {MODELS}, got {name!r}")


def size_divisor(model: nn.Module) -> int:
    """Every input side must be a multiple of this: FocalUNet's rule, 16 for the UNet, patch_size**5 for Swin."""
    if isinstance(model, FocalUNet):
        return model.size_divisor
    if isinstance(model, SwinUNETR):
        return int(model.patch_size) ** 5
    if isinstance(model, UNet):
        return int(np.prod(model.strides))
    return 1


class SegmentationModule(pl.LightningModule):
    """Owns the network, `DiceCELoss` (softmax, one-hot labels) and per-class `DiceMetric` / `HausdorffDistanceMetric`
    (95th percentile, in mm when the spacing is known) computed on `sliding_window_inference` outputs."""

    def __init__(self, model_name: str, spatial_dims: int, in_channels: int, num_classes: int,
                 roi_size: Sequence[int], feature_size: int = 12, norm: str = "batch",
                 focal_kwargs: dict[str, Any] | None = None, lr: float = 1e-3, weight_decay: float = 1e-5,
                 warmup_steps: int = 20, max_steps: int = 200, sw_batch_size: int = 4, overlap: float = 0.25) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model = build_model(model_name, spatial_dims, in_channels, num_classes, feature_size, norm,
                                   **(focal_kwargs or {}))
        self.num_classes, self.roi_size = num_classes, tuple(roi_size)
        self.loss = DiceCELoss(to_onehot_y=True, softmax=True)
        self.dice = DiceMetric(include_background=False, reduction="mean_batch", ignore_empty=True)
        self.hd95 = HausdorffDistanceMetric(include_background=False, percentile=95, reduction="mean_batch")
        self.last_val: dict[str, Any] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def infer(self, image: torch.Tensor) -> torch.Tensor:
        """Logits for a whole image of any size by overlapping ROI windows (padded where the image is smaller)."""
        return sliding_window_inference(image, self.roi_size, self.hparams.sw_batch_size, self.model,
                                        overlap=self.hparams.overlap, mode="gaussian")

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = self.loss(self.model(batch["image"]), batch["label"])
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["image"]))
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        image, label = batch["image"], batch["label"]
        pred = self.infer(image).argmax(1, keepdim=True)
        pred_1h, label_1h = one_hot(pred, self.num_classes), one_hot(label.long(), self.num_classes)
        self.dice(pred_1h, label_1h)
        spacing = _spacing(image)
        self.hd95(pred_1h, label_1h, spacing=spacing)

    def on_validation_epoch_end(self) -> None:
        dice = self.dice.aggregate().cpu()
        hd95 = self.hd95.aggregate().cpu()
        self.dice.reset()
        self.hd95.reset()
        dice_per_class = [float(v) for v in dice]
        hd_per_class = [float(v) if math.isfinite(float(v)) else float("nan") for v in hd95]
        mean_dice = float(np.nanmean(dice_per_class)) if not all(map(math.isnan, dice_per_class)) else float("nan")
        finite_hd = [v for v in hd_per_class if math.isfinite(v)]
        mean_hd = float(np.mean(finite_hd)) if finite_hd else float("nan")
        self.log("val/dice", mean_dice, prog_bar=True, sync_dist=True)
        self.log("val/hd95", mean_hd, sync_dist=True)
        self.last_val = {"dice": mean_dice, "dice_per_class": dice_per_class, "hd95": mean_hd,
                         "hd95_per_class": hd_per_class}

    def configure_optimizers(self) -> dict:
        opt = torch.optim.AdamW(self.model.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        sched = WarmupCosineSchedule(opt, warmup_steps=self.hparams.warmup_steps, t_total=self.hparams.max_steps)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def _spacing(image: torch.Tensor) -> list[float] | None:
    """Voxel spacing from the MetaTensor affine (after Spacingd/Orientationd), so HD95 is in mm; None if unknown."""
    affine = getattr(image, "affine", None)
    if affine is None:
        return None
    affine = affine[0] if affine.ndim == 3 else affine
    d = image.ndim - 2
    return torch.linalg.norm(affine[:d, :d].double(), dim=0).tolist()
