"""LightningModule for spectrogram classification: feature-domain augmentation, mixup, AdamW (no decay on 1-D
parameters) with a per-step warmup + cosine schedule (tasks.common.optim).

Augmentation runs on batches of cached log features (so caching stays valid): random gain (exact in the log
domain), random circular time shift, then standardisation, SpecAugment frequency/time masks (torchaudio) and
mixup (timm).
"""
from __future__ import annotations

from dataclasses import dataclass

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
import torchaudio
from timm.data import Mixup
from timm.loss import SoftTargetCrossEntropy
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from tasks.common.optim import adamw_without_1d_decay, cosine_warmup_scheduler
from tasks.common.options import setting

from .features import apply_gain

__all__ = ["AudioClassifierModule", "TrainConfig"]


@dataclass(frozen=True)
class TrainConfig:
    """Optimiser and augmentation settings, declared once: each field is a flag of `fit` (`--warmup-epochs`, ...),
    a preset key and a config.yaml key (`add_settings(..., unset=True)`: the presets and the sizing decide them; a
    field's default is what a run gets when nothing does)."""

    epochs: int = setting(30, "epochs per fold")
    lr: float = setting(1e-3, "AdamW peak learning rate")
    weight_decay: float = setting(0.05, "AdamW weight decay (not on norms/biases)")
    warmup_epochs: float = setting(1.0, "linear warmup, then cosine decay")
    label_smoothing: float = setting(0.1, "label smoothing")
    mixup: float = setting(0.0, "mixup alpha (0 = off)")
    freq_mask: int = setting(0, "SpecAugment frequency-mask width (0 = off)")
    time_mask: int = setting(0, "SpecAugment time-mask width in frames (0 = off)")
    num_masks: int = setting(2, "masks of each kind per example")
    gain_db: float = setting(0.0, "random gain in +-dB (0 = off)")
    time_shift: float = setting(0.0, "random circular shift, fraction of the clip")


class AudioClassifierModule(pl.LightningModule):
    """Trains `model` (`(B, F, T)` features -> logits); `mean`/`std` standardise the features (training-set stats).
    `info`: plain values saved as the checkpoint's hyper-parameters (the class names in label order, the feature
    settings, the split and member), for the verbs that apply the run (`tasks.audio.trained`)."""

    def __init__(
        self, model: nn.Module, num_classes: int, feature_kind: str, mean: float, std: float, config: TrainConfig,
        info: dict | None = None,
    ) -> None:
        super().__init__()
        if info is not None:
            self.save_hyperparameters(dict(info), logger=False)
        self.model, self.num_classes, self.feature_kind, self.cfg = model, num_classes, feature_kind, config
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.register_buffer("mean", torch.tensor(float(mean)))
        self.register_buffer("std", torch.tensor(float(std)))
        self.freq_masking = torchaudio.transforms.FrequencyMasking(config.freq_mask, iid_masks=True)
        self.time_masking = torchaudio.transforms.TimeMasking(config.time_mask, iid_masks=True)
        self.mixup = (
            Mixup(mixup_alpha=config.mixup, cutmix_alpha=0.0, label_smoothing=config.label_smoothing,
                  num_classes=num_classes)
            if config.mixup > 0
            else None
        )
        self.soft_ce = SoftTargetCrossEntropy()

    def normalize(self, features: torch.Tensor) -> torch.Tensor:
        return (features - self.mean) / self.std

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Logits for raw (unstandardised) log features `(B, F, T)`."""
        return self.model(self.normalize(features))

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        """Gain and time shift on the log features, standardise, then SpecAugment masks (mask value 0 = mean)."""
        cfg, b = self.cfg, x.shape[0]
        if cfg.gain_db > 0:
            x = apply_gain(x, torch.empty(b, device=x.device).uniform_(-cfg.gain_db, cfg.gain_db), self.feature_kind)
        if cfg.time_shift > 0:
            frames = x.shape[-1]
            limit = max(int(cfg.time_shift * frames), 1)
            shift = torch.randint(-limit, limit + 1, (b, 1, 1), device=x.device)
            index = (torch.arange(frames, device=x.device).view(1, 1, -1) - shift) % frames
            x = x.gather(-1, index.expand_as(x))
        x = self.normalize(x).unsqueeze(1)  # (B, 1, F, T) for torchaudio's per-example masks
        for _ in range(cfg.num_masks):
            if cfg.freq_mask > 0:
                x = self.freq_masking(x)
            if cfg.time_mask > 0:
                x = self.time_masking(x)
        return x.squeeze(1)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        features, labels = batch
        x = self.augment(features)
        if self.mixup is not None and len(x) % 2 == 0:
            x, soft = self.mixup(x.contiguous(), labels)
            logits = self.model(x)
            loss = self.soft_ce(logits, soft)
        else:
            logits = self.model(x)
            loss = F.cross_entropy(logits, labels, label_smoothing=self.cfg.label_smoothing)
        self.train_acc.update(logits, labels)
        self.log("train/loss", loss, prog_bar=True, on_step=False, on_epoch=True, sync_dist=True,
                 batch_size=len(labels))
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, batch_size=len(labels))
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        features, labels = batch
        logits = self(features)
        self.log("val/loss", F.cross_entropy(logits, labels), sync_dist=True, batch_size=len(labels))
        self.val_acc.update(logits, labels)  # torchmetrics: summed over processes when Lightning computes it
        self.log("val/acc", self.val_acc, prog_bar=True, batch_size=len(labels))

    def configure_optimizers(self):
        optimizer = adamw_without_1d_decay(self.model, self.cfg.lr, self.cfg.weight_decay)
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        warmup = int(total * self.cfg.warmup_epochs / max(self.cfg.epochs, 1))
        scheduler = cosine_warmup_scheduler(optimizer, total, warmup, warmup_lr=self.cfg.lr * 0.01, min_lr=0.0)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
