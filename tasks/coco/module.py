"""torchvision Mask R-CNN / Faster R-CNN on a `PyramidBackbone`, and the LightningModule that trains and evaluates it.

The detector config (`DetectorConfig`, saved as a plain dict in the checkpoint's hyper-parameters) lets the verbs
that apply a run (`python -m tasks.coco validate / predict / export`) rebuild the model from the checkpoint alone.
Validation gathers COCO-format results from every process and runs COCOeval (`bbox`, and `segm` for Mask R-CNN) on
rank 0.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal, Sequence

import lightning.pytorch as pl
import torch
import torch.distributed as dist
from torch import nn
from torchvision.models.detection import FasterRCNN, MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNConvFCHead, FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.ops import MultiScaleRoIAlign

from ..common.optim import adamw_without_1d_decay, cosine_with_warmup
from ..common.options import setting
from .backbone import build_backbone
from .data import coco_evaluate, detections_to_coco

__all__ = ["DEFAULT_DETECTOR", "DetectionModule", "DetectorConfig", "build_model"]

@dataclass(frozen=True)
class DetectorConfig:
    """The detector's settings, declared once: each field is a flag of `fit` (`--fpn-channels`, ...), a key of the
    presets and config.yaml, and a key of the checkpoint's `detector` hyper-parameters. Defaults: torchvision's Mask
    R-CNN (which follow the mmdet / Detectron 1x configs) on FocalNet-T, the official recipe (presets/coco.yaml)."""

    backbone: str = setting("focalnet_tiny_srf", "focalnet_* (focalmod), resnet50 (torchvision) or a timm name "
                            "(swin_tiny_patch4_window7_224, convnext_tiny, ...)")
    backbone_overrides: dict = setting({}, "backbone constructor override, YAML value (e.g. embed_dim=48, "
                                       "depths=[2,2,6,2]); repeatable", flag="--backbone-arg")
    backbone_checkpoint: str | None = setting(None, "initial backbone weights: an ImageNet FocalNet checkpoint "
                                              "(official/timm/HF/safetensors; kernels resized when windows differ) "
                                              "or an mmdet FocalNet detector checkpoint (its backbone.* and norm0..3)")
    focal_window: int = setting(9, "FocalNet first-level kernel (detection configs: 9 -> 9, 11[, 13])")
    detector: Literal["maskrcnn", "fasterrcnn"] = setting("maskrcnn", "torchvision detector")
    fpn_channels: int = setting(256, "FPN width")
    min_size: list[int] = setting([800], "short side; several values = multi-scale training (one picked per image), "
                                  "the last is used for evaluation")
    max_size: int = setting(1333, "long-side cap")
    anchor_sizes: list[int] = setting([32, 64, 128, 256, 512], "anchor size per FPN level (5 values)")
    rpn_pre_nms_train: int = setting(2000, "RPN proposals kept before NMS per level (training)")
    rpn_post_nms_train: int = setting(2000, "RPN proposals kept after NMS (training)")
    rpn_pre_nms_test: int = setting(1000, "RPN proposals kept before NMS per level (evaluation)")
    rpn_post_nms_test: int = setting(1000, "RPN proposals kept after NMS (evaluation)")
    box_batch_size: int = setting(512, "RoIs sampled per image for the box head")
    box_head_dim: int = setting(1024, "width of the two-layer box head")
    mask_head_dim: int = setting(256, "mask head conv width")
    mask_head_layers: int = setting(4, "mask head conv layers")
    detections_per_img: int = setting(100, "detections kept per image")
    head_norm: Literal["none", "gn"] = setting("none", "GroupNorm in FPN, box and mask heads (needed to train from "
                                               "scratch, He et al. 2019) or none (Mask R-CNN 1x with a pretrained "
                                               "backbone)")
    box_head_convs: int = setting(0, "3x3 convs before the box head's FC (torchvision v2 head); 0: the classic "
                                  "two-FC head")
    roi_canonical_scale: int = setting(224, "RoI size pooled from the stride-16 FPN level (FPN eq. 1: level = 4 + "
                                       "log2(size / scale)); 224 for COCO-sized images, smaller for small images")


DEFAULT_DETECTOR: dict[str, Any] = asdict(DetectorConfig())


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with 32 groups where the width allows (Wu & He 2018), for FPN and heads trained from scratch."""
    return nn.GroupNorm(math.gcd(32, channels), channels)


def build_model(cfg: dict[str, Any], num_classes: int) -> nn.Module:
    """torchvision `MaskRCNN` (cfg['detector'] == 'maskrcnn') or `FasterRCNN` with `num_classes` + background."""
    cfg = {**DEFAULT_DETECTOR, **cfg}
    if cfg["head_norm"] not in ("none", "gn"):
        raise ValueError(f"head_norm must be 'none' or 'gn', got {cfg['head_norm']!r}")
    norm = group_norm if cfg["head_norm"] == "gn" else None
    is_focalnet = cfg["backbone"].startswith("focalnet")
    backbone = build_backbone(
        cfg["backbone"],
        out_channels=cfg["fpn_channels"],
        checkpoint=cfg["backbone_checkpoint"],
        focal_windows=cfg["focal_window"] if is_focalnet else None,
        fpn_norm=norm,
        **cfg["backbone_overrides"],
    )
    n_maps = len(backbone.strides) + 1  # + LastLevelMaxPool
    if len(cfg["anchor_sizes"]) != n_maps:
        raise ValueError(f"anchor_sizes needs one size per feature map ({n_maps}), got {cfg['anchor_sizes']}")
    anchors = AnchorGenerator(tuple((s,) for s in cfg["anchor_sizes"]), ((0.5, 1.0, 2.0),) * n_maps)
    c, rep = backbone.out_channels, cfg["box_head_dim"]
    if cfg["box_head_convs"]:  # torchvision's v2 box head: convs (+ norm) then one FC
        box_head = FastRCNNConvFCHead((c, 7, 7), [c] * cfg["box_head_convs"], [rep], norm_layer=norm)
    else:  # the classic two-FC head of Mask R-CNN 1x
        box_head = TwoMLPHead(c * 7 * 7, rep)
    # FPN level of a RoI: floor(4 + log2(sqrt(area) / canonical_scale)) (FPN paper eq. 1); 224 suits COCO-sized
    # images, smaller images need a smaller scale or every RoI is pooled from the stride-4 map.
    names = [str(i) for i in range(len(backbone.strides))]
    scale = cfg["roi_canonical_scale"]
    common = dict(
        num_classes=None,
        min_size=tuple(cfg["min_size"]),
        max_size=cfg["max_size"],
        rpn_anchor_generator=anchors,
        rpn_pre_nms_top_n_train=cfg["rpn_pre_nms_train"],
        rpn_post_nms_top_n_train=cfg["rpn_post_nms_train"],
        rpn_pre_nms_top_n_test=cfg["rpn_pre_nms_test"],
        rpn_post_nms_top_n_test=cfg["rpn_post_nms_test"],
        box_batch_size_per_image=cfg["box_batch_size"],
        box_detections_per_img=cfg["detections_per_img"],
        box_roi_pool=MultiScaleRoIAlign(names, 7, 2, canonical_scale=scale),
        box_head=box_head,
        box_predictor=FastRCNNPredictor(rep, num_classes + 1),
    )
    if cfg["detector"] == "fasterrcnn":
        return FasterRCNN(backbone, **common)
    if cfg["detector"] != "maskrcnn":
        raise ValueError(f"detector must be 'maskrcnn' or 'fasterrcnn', got {cfg['detector']!r}")
    layers = [cfg["mask_head_dim"]] * cfg["mask_head_layers"]
    return MaskRCNN(
        backbone,
        mask_roi_pool=MultiScaleRoIAlign(names, 14, 2, canonical_scale=scale),
        mask_head=MaskRCNNHeads(c, layers, 1, norm_layer=norm),
        mask_predictor=MaskRCNNPredictor(layers[-1], cfg["mask_head_dim"], num_classes + 1),
        **common,
    )


class DetectionModule(pl.LightningModule):
    """Trains a torchvision detector (AdamW, linear warm-up, then step decay or cosine) and evaluates with COCOeval.

    Args:
        detector: config for `build_model`.
        category_ids / category_names: the dataset's categories in label order (label k <-> category_ids[k-1]).
        optim: lr, weight_decay, warmup_steps, schedule ('step' | 'cosine'), milestones (fractions of training
            for 'step', x0.1 each), epochs.
        data: where the model was trained / evaluated (root, splits), recorded for the verbs that apply the run.
    """

    def __init__(
        self,
        detector: dict[str, Any],
        category_ids: Sequence[int],
        category_names: Sequence[str],
        optim: dict[str, Any],
        data: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.category_ids = list(category_ids)
        self.model = build_model(detector, len(category_ids))
        self.coco_gt = None  # pycocotools COCO of the validation split, set by the CLI
        self.last_eval: dict[str, Any] = {}
        self.last_eval_epoch = -1
        self._bbox: dict[int, list[dict]] = {}
        self._segm: dict[int, list[dict]] = {}

    @property
    def has_masks(self) -> bool:
        return isinstance(self.model, MaskRCNN)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        images, targets = batch
        losses = self.model(list(images), list(targets))
        loss = sum(losses.values())
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite detection loss at step {self.global_step}: "
                                     f"{ {k: float(v) for k, v in losses.items()} }; lower --lr or raise warm-up")
        bs = len(images)
        self.log("train/loss", loss, prog_bar=True, batch_size=bs)
        for name, value in losses.items():
            self.log(f"train/{name}", value, batch_size=bs)
        return loss

    def on_validation_epoch_start(self) -> None:
        self._bbox, self._segm = {}, {}

    def validation_step(self, batch, batch_idx: int) -> None:
        images, targets = batch
        outputs = self.model(list(images))
        for target, output in zip(targets, outputs):
            image_id = int(target["image_id"])
            self._bbox[image_id], self._segm[image_id] = detections_to_coco(image_id, output, self.category_ids)

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:  # the pre-training check only proves the loop runs
            return
        bbox, segm = _gather(self._bbox), _gather(self._segm)
        metrics: dict[str, Any] = {}
        if self.trainer.is_global_zero and self.coco_gt is not None:
            image_ids = sorted(bbox)
            for iou_type, results in (("bbox", bbox), ("segm", segm)) if self.has_masks else (("bbox", bbox),):
                flat = [r for rs in results.values() for r in rs]
                stats, table = coco_evaluate(self.coco_gt, flat, iou_type, image_ids)
                metrics[iou_type] = {"stats": stats, "table": table, "results": flat}
            metrics["num_images"] = len(image_ids)
        self.last_eval, self.last_eval_epoch = metrics, self.current_epoch
        for iou_type in ("bbox", "segm") if self.has_masks else ("bbox",):
            stats = metrics.get(iou_type, {}).get("stats", {})
            for name in ("AP", "AP50"):
                value = stats.get(name)
                value = torch.tensor(float("nan") if value is None else value, device=self.device)
                if dist.is_available() and dist.is_initialized():
                    dist.broadcast(value, 0)
                self.log(f"val/{iou_type}_{name}", value, prog_bar=name == "AP50", sync_dist=False)

    def configure_optimizers(self):
        o = self.hparams.optim
        optimizer = adamw_without_1d_decay(self.model, o["lr"], o["weight_decay"])
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        warmup = min(int(o.get("warmup_steps", 0)), total // 2)
        milestones = [int(f * total) for f in o.get("milestones", (8 / 12, 11 / 12))]
        schedule = o.get("schedule", "step")

        if schedule == "cosine":
            factor = cosine_with_warmup(total, warmup, o["lr"], 0.001 * o["lr"], 0.0)
        else:

            def factor(step: int) -> float:  # mmdet: linear warm-up from 0.001 x lr, then x0.1 at each milestone
                warm = 0.001 + (1 - 0.001) * step / warmup if step < warmup else 1.0
                return warm * 0.1 ** sum(step >= m for m in milestones)

        sched = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def _gather(results: dict[int, list[dict]]) -> dict[int, list[dict]]:
    """Union over processes, keyed by image id (DistributedSampler's padding repeats images; keys dedupe them)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return dict(results)
    parts: list[dict] = [{} for _ in range(dist.get_world_size())]
    dist.all_gather_object(parts, results)
    merged: dict[int, list[dict]] = {}
    for part in parts:
        merged.update(part)
    return merged
