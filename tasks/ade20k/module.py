"""The LightningModule: mmseg's losses, optimiser and schedule for a `UPerNet`, mmseg-style evaluation.

* Loss: cross-entropy of the decode logits + `aux_weight` (0.4) x cross-entropy of the auxiliary logits, both at
  the input size, label 255 ignored and - as mmseg 0.x's ``CrossEntropyLoss`` (``avg_non_ignore=False``) - averaged
  over all pixels, ignored ones included.
* Optimiser: AdamW; parameters whose name contains ``norm`` (LayerNorms of the backbone and the output norms) or
  Swin's ``absolute_pos_embed`` / ``relative_position_bias_table`` get no weight decay (the configs'
  ``paramwise_cfg.custom_keys``); BatchNorms of the heads (``bn``) and biases keep it, as in mmseg.
* Schedule (mmcv ``PolyLrUpdaterHook`` with linear warm-up), per iteration t:
  ``lr_t = lr * (1 - t / max_iters) ** power``, during warm-up multiplied by
  ``1 - (1 - t / warmup_iters) * (1 - warmup_ratio)``.
* Evaluation: `inference.predict_probs` per image (whole / slide, optional multi-scale + flip), confusion matrix
  over the whole set -> mIoU / mAcc / aAcc / per-class IoU (`metrics.py`); optional palette PNGs.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from .data import IGNORE_INDEX, Sample
from .inference import InferenceConfig, predict_probs
from .metrics import confusion_matrix_metric, segmentation_scores
from .palette import save_palette_png

__all__ = ["NO_DECAY_KEYS", "SegmentationModule", "param_groups", "poly_with_warmup"]

NO_DECAY_KEYS = ("norm", "absolute_pos_embed", "relative_position_bias_table")


def param_groups(model: nn.Module, weight_decay: float, no_decay_keys: Sequence[str] = NO_DECAY_KEYS) -> list[dict]:
    """Two AdamW groups: names containing any of `no_decay_keys` without weight decay, the rest with it."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if any(key in name for key in no_decay_keys) else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def poly_with_warmup(
    max_iters: int, warmup_iters: int, warmup_ratio: float = 1e-6, power: float = 1.0
) -> Callable[[int], float]:
    """LR factor at iteration `t` (mmcv poly policy, ``min_lr=0``, ``by_epoch=False``, linear warm-up)."""

    def factor(t: int) -> float:
        regular = max(1.0 - t / max_iters, 0.0) ** power
        if t < warmup_iters:
            return regular * (1.0 - (1.0 - t / warmup_iters) * (1.0 - warmup_ratio))
        return regular

    return factor


class SegmentationModule(pl.LightningModule):
    """Trains and evaluates `model` (a `UPerNet`: `forward_with_aux` for training, `forward` for inference).

    Args:
        model: the network (not saved as a hyper-parameter: the CLI rebuilds it from its config).
        class_names: one per class, in label order (value - 1).
        lr, weight_decay, betas: AdamW.
        max_iters, warmup_iters, warmup_ratio, power: the poly schedule.
        aux_weight: weight of the auxiliary loss.
        test: how validation / evaluation infers (`InferenceConfig`).
        samples: the evaluated images, to name the palette PNGs; `prediction_dir`: where to write them (None: no
            files); `max_predictions`: how many (the first ones by index).
    """

    def __init__(
        self,
        model: nn.Module,
        class_names: Sequence[str],
        lr: float = 6e-5,
        weight_decay: float = 0.01,
        betas: tuple[float, float] = (0.9, 0.999),
        max_iters: int = 160_000,
        warmup_iters: int = 1500,
        warmup_ratio: float = 1e-6,
        power: float = 1.0,
        aux_weight: float = 0.4,
        test: InferenceConfig | None = None,
        samples: Sequence[Sample] = (),
        prediction_dir: Path | None = None,
        max_predictions: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["model", "samples", "prediction_dir", "test"])
        self.model = model
        self.class_names = list(class_names)
        self.test_cfg = test or InferenceConfig()
        self.samples, self.prediction_dir, self.max_predictions = list(samples), prediction_dir, max_predictions
        self.confusion = confusion_matrix_metric(len(self.class_names))
        self.last_val: dict[str, Any] = {}
        self.last_val_step = -1  # global step of `last_val`

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def training_step(self, batch: tuple, batch_idx: int) -> torch.Tensor:
        images, labels, _ = batch
        logits, aux = self.model.forward_with_aux(images)
        decode_loss = self._cross_entropy(logits, labels)
        loss = decode_loss
        if aux is not None:
            loss = loss + self.hparams.aux_weight * self._cross_entropy(aux, labels)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(images))
        self.log("train/decode_loss", decode_loss, batch_size=len(images))
        return loss

    @staticmethod
    def _cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.float(), labels, ignore_index=IGNORE_INDEX, reduction="none").mean()

    def validation_step(self, batch: tuple, batch_idx: int) -> None:
        images, labels, indices = batch
        pred = predict_probs(self.model, images, self.test_cfg).argmax(1)
        self.confusion.update(pred, labels)
        if self.prediction_dir is not None:
            for p, index in zip(pred.cpu().numpy(), indices.tolist()):
                if index < self.max_predictions:
                    save_palette_png(self.prediction_dir / f"{self.samples[index].image.stem}.png", p,
                                     len(self.class_names))

    def on_validation_epoch_end(self) -> None:
        scores = segmentation_scores(self.confusion.compute().cpu(), self.class_names)
        self.confusion.reset()
        for key in ("mIoU", "mAcc", "aAcc"):
            self.log(f"val/{key}", scores[key], prog_bar=key == "mIoU", sync_dist=False)
        self.last_val, self.last_val_step = scores, self.trainer.global_step

    def configure_optimizers(self) -> dict:
        h = self.hparams
        optimizer = torch.optim.AdamW(param_groups(self.model, h.weight_decay), lr=h.lr, betas=tuple(h.betas))
        schedule = LambdaLR(optimizer, poly_with_warmup(h.max_iters, h.warmup_iters, h.warmup_ratio, h.power))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
