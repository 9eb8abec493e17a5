"""The Lightning Trainer every task uses: atomic checkpoints, CSV + TensorBoard logs, LR and throughput logging."""
from __future__ import annotations

import argparse
import io
import time
from pathlib import Path
from typing import Any, Sequence

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO

from .cli import TaskError
from .files import atomic_write


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write checkpoints to a temp file in the same directory, fsync, then `os.replace`: a crash while saving
    leaves the previous checkpoint intact. Reads with `torch.load(weights_only=True)` (no arbitrary unpickling)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        atomic_write(path, buffer.getbuffer())

    def load_checkpoint(self, path, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        try:
            return torch.load(path, map_location=map_location or "cpu", weights_only=True)
        except FileNotFoundError:
            raise TaskError(f"checkpoint not found: {path}") from None
        except Exception as err:  # truncated / corrupt / unsafe pickle
            raise TaskError(f"cannot read checkpoint {path}: {type(err).__name__}: {str(err)[:300]}") from None


class ThroughputLogger(Callback):
    """Logs `train/samples_per_sec` each epoch and keeps the epoch times (for `metrics.json`)."""

    def __init__(self) -> None:
        self.epoch_seconds: list[float] = []
        self._start = 0.0
        self._samples = 0

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start, self._samples = time.perf_counter(), 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        inputs = batch[0] if isinstance(batch, (list, tuple)) else next(iter(batch.values()))
        self._samples += len(inputs) * trainer.world_size

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        seconds = time.perf_counter() - self._start
        self.epoch_seconds.append(seconds)
        pl_module.log("train/samples_per_sec", self._samples / max(seconds, 1e-9), sync_dist=False)
        pl_module.log("train/epoch_seconds", seconds, sync_dist=False)


def _devices(value: str) -> int | str:
    return int(value) if str(value).isdigit() else value


def build_trainer(
    args: argparse.Namespace,
    run_dir: Path,
    max_epochs: int | None = None,
    monitor: str | None = None,
    mode: str = "max",
    callbacks: Sequence[Callback] = (),
    **trainer_kwargs: Any,
) -> pl.Trainer:
    """A Trainer writing to `run_dir`, set up from the common options (`add_common_args`).

    Checkpoints: `checkpoints/last.ckpt` after every training epoch (what `--resume` continues from) and, with
    `monitor`, `checkpoints/best.ckpt` (best value of that logged metric, `mode` max/min). Logs: `logs/metrics.csv`
    and TensorBoard, the learning rate per epoch. `trainer_kwargs` go to `pl.Trainer` and win over the options
    (e.g. `strategy=FSDPStrategy(...)`, `max_steps=...`, `gradient_clip_val=...`)."""
    checkpoints = [ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="last", save_top_k=1,
                                   save_on_train_epoch_end=True, enable_version_counter=False)]
    if monitor:
        checkpoints.insert(0, ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="best", monitor=monitor,
                                              mode=mode, save_top_k=1, enable_version_counter=False))
    all_callbacks: list[Callback] = [*checkpoints, LearningRateMonitor(logging_interval="epoch"), *callbacks]
    if not args.no_progress:
        all_callbacks.append(TQDMProgressBar(refresh_rate=10))
    settings: dict[str, Any] = dict(
        default_root_dir=run_dir,
        max_epochs=max_epochs,
        accelerator=args.accelerator,
        devices=_devices(args.devices),
        strategy=args.strategy,
        num_nodes=args.num_nodes,
        precision=args.precision,
        logger=[CSVLogger(run_dir, name="logs", version=""), TensorBoardLogger(run_dir, name="logs", version="")],
        callbacks=all_callbacks,
        plugins=[AtomicCheckpointIO()],
        limit_train_batches=_limit(args.limit_train_batches),
        limit_val_batches=_limit(args.limit_val_batches),
        enable_progress_bar=not args.no_progress,
        enable_model_summary=False,
        log_every_n_steps=10,
    )
    return pl.Trainer(**{**settings, **trainer_kwargs})


def _limit(value: float) -> int | float | None:
    """A count (> 1), a fraction, or None for "all" (1.0; Lightning then skips its notice about the default)."""
    if value == 1.0:
        return None
    return int(value) if value > 1 else value
