"""Train a FocalNet (or any focalmod model) on a folder-per-class image dataset such as ImageNet.

    python -m tasks.imagenet.train                                  # embedded default: sklearn digits, minutes
    python -m tasks.imagenet.train --data /data/imagenet            # official FocalNet-T recipe (configs/imagenet.yaml)
    python -m tasks.imagenet.train --data /data/imagenet --model focalnet_base_lrf --devices 8 --strategy ddp

Unset recipe options take configs/imagenet.yaml with --data and configs/digits.yaml without; `--config FILE`
replaces that preset. Multi-GPU / multi-node: Lightning strategies (`--strategy ddp|fsdp --devices N
--num-nodes M`); see docs/imagenet.md for torchrun and SLURM. Writes the run directory: config.yaml, logs/ (CSV,
TensorBoard), checkpoints/{last,best}.ckpt and metrics.json; `--resume <run dir>` continues a stopped run.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any, Sequence

import yaml
from lightning.fabric.utilities.exceptions import MisconfigurationException

from ..common import (
    TaskError,
    add_common_args,
    apply_threads,
    bool_arg,
    build_trainer,
    parse_with_config,
    resolve_resume,
    run_main,
    save_config,
    write_metrics,
)
from ..common.callbacks import EpochPrinter, RefreshLastCheckpoint
from ..common.csvlog import merge_csv_logs, set_aside_csv_log
from ..common.launch import is_rank_zero, release_run_dir, shared_run_dir
from .data import Augment, FolderData, ImageFolderDataModule, Preprocess
from .digits import default_cache_dir, digits_image_folder
from .module import ClassificationModule
from .recipe import TASK_MODELS

TASK = "imagenet"
CONFIGS = Path(__file__).parent / "configs"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tasks.imagenet.train", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 2)[2],
    )
    d = p.add_argument_group("data")
    d.add_argument("--data", type=Path, help="root holding train/<class>/* and val/<class>/* (default: the digits "
                   "set written to $FOCALMOD_CACHE or ~/.cache/focalmod)")
    d.add_argument("--input-size", type=int, help="training/eval side in pixels")
    d.add_argument("--crop-pct", type=float, help="eval: resize to size/crop_pct, then center crop")
    d.add_argument("--aa", help="timm RandAugment string, e.g. rand-m9-mstd0.5-inc1 ('none' to disable)")
    d.add_argument("--reprob", type=float, help="random erasing probability")
    d.add_argument("--hflip", type=float, help="horizontal flip probability")
    d.add_argument("--scale", type=float, nargs=2, help="RandomResizedCrop area range")
    d.add_argument("--color-jitter", type=float, help="colour jitter (unused when RandAugment is on)")
    d.add_argument("--mixup", type=float, help="Mixup alpha (0 disables)")
    d.add_argument("--cutmix", type=float, help="CutMix alpha (0 disables)")
    d.add_argument("--smoothing", type=float, help="label smoothing")
    m = p.add_argument_group("model")
    m.add_argument("--model", help="a focalmod.list_models() name (focalnet_*, hornet_*, ...) or a preset for the "
                   f"embedded digits: {', '.join(TASK_MODELS)} (equal-size comparison set)")
    m.add_argument("--drop-path", type=float, default=None, help="stochastic depth (default: the model's size rule)")
    m.add_argument("--init-checkpoint", type=Path, help="initial weights in any format focalmod.load_checkpoint "
                   "reads (official, timm, HF, safetensors); a different class count re-initialises the head")
    m.add_argument("--model-ema", type=bool_arg, help="keep an EMA of the weights for validation (true/false)")
    m.add_argument("--model-ema-decay", type=float, help="EMA decay")
    o = p.add_argument_group("optimisation")
    o.add_argument("--epochs", type=int, help="training epochs")
    o.add_argument("--batch-size", type=int, help="images per device per step")
    o.add_argument("--base-lr", type=float, help="peak AdamW lr per 512 images (scaled by the total batch / 512)")
    o.add_argument("--warmup-lr", type=float, help="lr at the start of warmup, per 512 images")
    o.add_argument("--min-lr", type=float, help="final cosine lr, per 512 images")
    o.add_argument("--warmup-epochs", type=float, help="linear warmup length")
    o.add_argument("--weight-decay", type=float, help="AdamW weight decay (none on norms, biases, layer scale)")
    o.add_argument("--clip-grad", type=float, help="gradient norm clipping (0 disables)")
    o.add_argument("--accumulate-grad-batches", type=int, default=1, help="steps per optimiser update")
    add_common_args(p, TASK)
    return p


def apply_preset(args: argparse.Namespace) -> argparse.Namespace:
    """Unset recipe options come from configs/imagenet.yaml (with --data) or configs/digits.yaml (without)."""
    preset = yaml.safe_load((CONFIGS / ("imagenet.yaml" if args.data else "digits.yaml")).read_text())
    for key, value in preset.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    if isinstance(args.aa, str) and args.aa.lower() == "none":
        args.aa = None
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = build_parser()
    args = parse_with_config(parser, argv)
    resume_dir, ckpt = resolve_resume(args.resume)
    if resume_dir is not None and args.config is None and (resume_dir / "config.yaml").is_file():
        args = parse_with_config(parser, [*(argv or []), "--config", str(resume_dir / "config.yaml")])
    run_dir = shared_run_dir(TASK, resume_dir or args.out)
    try:
        return train(apply_preset(args), run_dir, ckpt)
    finally:
        release_run_dir()


# Where a run is, not what it is: left out of config.yaml so the file can seed a new run (`--config`).
RUN_LOCATION_KEYS = ("config", "out", "resume")


def train(args: argparse.Namespace, run_dir: Path, ckpt: Path | None) -> dict[str, Any]:
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import EMAWeightAveraging

    from ..common import ThroughputLogger

    apply_threads(args)
    if (args.mixup > 0 or args.cutmix > 0) and args.batch_size % 2:
        raise TaskError(f"--batch-size must be even with Mixup/CutMix (batch mode pairs images), got {args.batch_size}")
    pl.seed_everything(args.seed, workers=True, verbose=False)
    root = args.data if args.data is not None else digits_image_folder(default_cache_dir(), args.input_size)
    folders = FolderData.from_root(root)
    pre = Preprocess(args.input_size, args.crop_pct)
    aug = Augment(args.aa, args.reprob, args.hflip, tuple(args.scale), ratio=(3 / 4, 4 / 3),
                  color_jitter=args.color_jitter)
    data = ImageFolderDataModule(folders, pre, aug, args.batch_size, args.num_workers)
    optim = dict(batch_size=args.batch_size, base_lr=args.base_lr, warmup_lr=args.warmup_lr, min_lr=args.min_lr,
                 warmup_epochs=args.warmup_epochs, weight_decay=args.weight_decay)
    mixup = dict(mixup_alpha=args.mixup, cutmix_alpha=args.cutmix, label_smoothing=args.smoothing)
    overrides = {} if args.drop_path is None else {"drop_path_rate": args.drop_path}
    module = ClassificationModule(args.model, len(folders.classes), overrides, optim, mixup,
                                  str(args.init_checkpoint) if args.init_checkpoint else None,
                                  preprocess=dict(input_size=pre.input_size, crop_pct=pre.crop_pct))
    throughput = ThroughputLogger()
    callbacks = [throughput, EpochPrinter(["val/top1", "val/top5"]), RefreshLastCheckpoint()]
    if args.model_ema:
        callbacks.append(EMAWeightAveraging(decay=args.model_ema_decay))
    if ckpt is not None and is_rank_zero():
        set_aside_csv_log(run_dir)  # Lightning would restart logs/metrics.csv; merged back after the run
    try:
        trainer_args = argparse.Namespace(**{**vars(args), "strategy": _strategy(args)})
        trainer = build_trainer(trainer_args, run_dir, args.epochs, monitor="val/top1", mode="max",
                                gradient_clip_val=args.clip_grad or None, callbacks=callbacks,
                                accumulate_grad_batches=args.accumulate_grad_batches)
    except (ValueError, TypeError, MisconfigurationException) as err:  # bad --strategy/--devices/--accelerator
        raise TaskError(f"trainer settings: {err}") from None
    params = sum(p.numel() for p in module.model.parameters()) / 1e6
    if is_rank_zero():
        save_config(run_dir, {k: v for k, v in vars(args).items() if k not in RUN_LOCATION_KEYS})
        print(f"run dir: {run_dir}\ndata: {root} ({len(folders.classes)} classes)\n"
              f"model: {args.model} ({params:.2f} M params)", flush=True)
    start = time.perf_counter()
    trainer.fit(module, datamodule=data, ckpt_path=ckpt)
    seconds = time.perf_counter() - start
    if trainer.interrupted:
        raise KeyboardInterrupt
    images_per_sec = _last(trainer, "train/samples_per_sec")  # validate() below resets the logged metrics
    results = trainer.validate(module, datamodule=data, verbose=False)[0]
    best = trainer.checkpoint_callback.best_model_score if trainer.checkpoint_callback else None
    metrics = dict(
        top1=float(results["val/top1"]), top5=float(results["val/top5"]), val_loss=float(results["val/loss"]),
        val_images=int(results["val/images"]), best_top1=float(best) if best is not None else None,
        epochs=trainer.current_epoch, train_seconds=seconds, model=args.model, params_m=round(params, 4),
        num_classes=len(folders.classes), train_images=len(data.train_set),
        epoch_seconds=sum(throughput.epoch_seconds) / max(len(throughput.epoch_seconds), 1),
        train_images_per_sec=images_per_sec, world_size=trainer.world_size,
        total_batch=args.batch_size * trainer.world_size * args.accumulate_grad_batches,  # devices x nodes
        peak_lr=module.peak_lr, global_step=trainer.global_step, resumed_from=str(ckpt) if ckpt else None,
        data=str(root),
    )
    if is_rank_zero():
        write_metrics(run_dir, metrics)
        merge_csv_logs(run_dir)
        print(f"\ntop-1 {metrics['top1']:.4f}  top-5 {metrics['top5']:.4f}  ({metrics['val_images']} val images) "
              f"after {metrics['epochs']} epochs in {seconds:.0f} s ({metrics['epoch_seconds']:.1f} s/epoch, "
              f"{metrics['train_images_per_sec'] or 0:.0f} img/s)\nrun dir: {run_dir}", flush=True)
    return metrics


def _strategy(args: argparse.Namespace) -> Any:
    """`fsdp` shards per FocalNet block (each block one FSDP unit) instead of wrapping the model as one unit."""
    if args.strategy != "fsdp":
        return args.strategy
    if args.model_ema:
        raise TaskError("--model-ema does not work with --strategy fsdp (the weights are sharded); use ddp")
    from lightning.pytorch.strategies import FSDPStrategy

    from focalmod.layers import FocalNetBlock

    return FSDPStrategy(auto_wrap_policy={FocalNetBlock})


def _last(trainer: Any, key: str) -> float | None:
    value = trainer.callback_metrics.get(key)
    return float(value) if value is not None else None


if __name__ == "__main__":
    run_main(main)
