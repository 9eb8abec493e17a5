"""A trained plain model inside Lightning's `Trainer.predict`, so the verbs that apply a run (validate, predict) get
the Trainer's device, precision, progress bar and SIGTERM handling without a training module."""
from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn


class Predictor(pl.LightningModule):
    """`predict_step` returns `model(inputs)` for a batch of inputs, or of `(inputs, labels, ...)`."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model.eval()

    def forward(self, x: torch.Tensor) -> Any:
        return self.model(x)

    def predict_step(self, batch: Any, batch_idx: int) -> Any:
        return self(batch[0] if isinstance(batch, (list, tuple)) else batch)
