"""The LightningModule: a plain focalmod model plus loss (Mixup/CutMix soft targets with label smoothing),
top-1/top-5 (torchmetrics, reduced across processes), AdamW and the per-step cosine schedule with warmup."""
from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from timm.data import Mixup
from timm.loss import SoftTargetCrossEntropy
from torchmetrics import MeanMetric, SumMetric
from torchmetrics.classification import MulticlassAccuracy

from ..common.optim import adamw_without_1d_decay, cosine_warmup_scheduler, scaled_lr
from .recipe import build_model


class ClassificationModule(pl.LightningModule):
    """`model`: a name `tasks.imagenet.recipe` resolves; `optim` and `mixup` are plain dicts (saved as hparams so
    a checkpoint alone rebuilds the model; `preprocess` records the eval geometry and `classes` the class names in
    label order, for the verbs that apply the run: validate, predict, export)."""

    def __init__(self, model: str, num_classes: int, model_overrides: dict[str, Any], optim: dict[str, Any],
                 mixup: dict[str, Any], init_checkpoint: str | None = None, pretrained: str | None = None,
                 preprocess: dict[str, Any] | None = None, classes: list[str] | None = None) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model = build_model(model, num_classes, checkpoint_path=init_checkpoint, pretrained=pretrained,
                                 **model_overrides)
        self.optim = optim
        active = mixup["mixup_alpha"] > 0 or mixup["cutmix_alpha"] > 0
        self.mixup = Mixup(num_classes=num_classes, **mixup) if active else None
        self.smoothing = mixup["label_smoothing"]
        self.soft_ce = SoftTargetCrossEntropy()
        self.val_top1 = MulticlassAccuracy(num_classes, top_k=1, average="micro")
        self.val_top5 = MulticlassAccuracy(num_classes, top_k=min(5, num_classes), average="micro")
        self.peak_lr: float | None = None  # set by configure_optimizers (base_lr x total batch / 512)
        self.val_loss = MeanMetric()
        self.val_images = SumMetric()  # images validated by all processes together (checks the DDP reduction)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        if self.mixup is not None:
            x, soft = self.mixup(x, y)  # smoothing is applied inside Mixup, as in the official recipe
            loss = self.soft_ce(self(x), soft)
        else:
            loss = F.cross_entropy(self(x), y, label_smoothing=self.smoothing)
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=len(x))
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        self.val_top1.update(logits, y)
        self.val_top5.update(logits, y)
        self.val_loss.update(F.cross_entropy(logits, y), weight=len(x))
        self.val_images.update(len(x))
        # torchmetrics objects: Lightning calls compute() at epoch end, which sums their states over processes.
        self.log("val/loss", self.val_loss, batch_size=len(x))
        self.log("val/top1", self.val_top1, prog_bar=True, batch_size=len(x))
        self.log("val/top5", self.val_top5, batch_size=len(x))
        self.log("val/images", self.val_images, batch_size=len(x))

    def configure_optimizers(self):
        o = self.optim
        world = self.trainer.world_size
        total_batch = o["batch_size"] * world * self.trainer.accumulate_grad_batches
        lr = self.peak_lr = scaled_lr(o["base_lr"], total_batch)
        optimizer = adamw_without_1d_decay(self.model, lr, o["weight_decay"])
        total = int(self.trainer.estimated_stepping_batches)
        steps_per_epoch = max(total // max(self.trainer.max_epochs, 1), 1)
        scheduler = cosine_warmup_scheduler(
            optimizer, total, int(o["warmup_epochs"] * steps_per_epoch),
            scaled_lr(o["warmup_lr"], total_batch), scaled_lr(o["min_lr"], total_batch),
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
