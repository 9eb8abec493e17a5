"""Small Lightning callbacks the task CLIs share."""
from __future__ import annotations

import math
import time
from typing import Any, Sequence

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from tqdm import tqdm


class EpochPrinter(Callback):
    """Prints one line per epoch on rank 0 (`epoch 3/30  loss 0.412  val/top1 0.963  11.8 s`) so progress reads
    well in plain log files. The loss is this rank's mean training loss; `keys` are taken from the logged metrics
    (validation runs before `on_train_epoch_end`, so its values are the current epoch's)."""

    def __init__(self, keys: Sequence[str]) -> None:
        self.keys = list(keys)
        self._start, self._loss, self._batches = 0.0, 0.0, 0

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start, self._loss, self._batches = time.perf_counter(), 0.0, 0

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch, idx) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is not None:
            self._loss += float(loss.detach())
            self._batches += 1

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        parts = [f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}"]
        if self._batches:
            parts.append(f"loss {self._loss / self._batches:.4f}")
        for key in self.keys:
            value = trainer.callback_metrics.get(key)
            if value is not None and math.isfinite(float(value)):
                parts.append(f"{key} {float(value):.4f}")
        parts.append(f"{time.perf_counter() - self._start:.1f} s")
        tqdm.write("  ".join(parts))  # above an active progress bar instead of glued to its line
