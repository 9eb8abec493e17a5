"""Semantic segmentation with UPerNet on the ADE20K layout: `python -m tasks.ade20k.train`.

Reads ``ADEChallengeData2016`` (`--data`: images/{training,validation}/*.jpg, annotations/.../*.png, label 0
ignored, 1..K shifted to 0..K-1), trains a `focalmod` UPerNet with the official mmseg recipe (`--preset ade20k`:
AdamW 6e-5, poly + 1500 warm-up iterations, 512 crops, 160k iterations of 16) and reports mIoU / mAcc / aAcc and
per-class IoU on the validation split beside a per-pixel colour baseline, writing palette-PNG predictions. Without
`--data` it first writes a small synthetic ADE20K-layout scene set into the run directory and trains the
`synthetic` preset on it. `--backbone NAME` puts the same heads on another backbone (Swin, ConvNeXt, HorNet, ...).
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback

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
from ..common.callbacks import RefreshLastCheckpoint
from ..common.launch import is_rank_zero, release_run_dir, shared_run_dir
from ..common.measure import StepTimer
from .baseline import pixel_colour_baseline
from .data import ADE20KDataModule, ADE20KDataset, read_class_names, read_split
from .inference import InferenceConfig
from .models import build_model, load_backbone_weights, parse_model_args
from .module import SegmentationModule
from .recipe import PRESETS
from .synthetic import make_scenes_dataset
from .transforms import EvalTransform, TrainTransform

TASK = "ade20k"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tasks.ade20k.train", description=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    d = p.add_argument_group("data")
    d.add_argument("--data", type=Path, help="ADEChallengeData2016 folder; omitted: write the synthetic scene set")
    d.add_argument("--preset", choices=sorted(PRESETS),
                   help="recipe defaults (options below override them); default: ade20k with --data, else synthetic")
    d.add_argument("--num-classes", type=int,
                   help="classes (default: the rows of objectInfo150.txt, else 150); label values above are an error")
    d.add_argument("--synthetic-train", type=int, default=400, help="synthetic training images")
    d.add_argument("--synthetic-val", type=int, default=100, help="synthetic validation images")
    m = p.add_argument_group("model")
    m.add_argument("--model", help="a registered UPerNet (focalmod.list_models('upernet_*')); default: the preset's")
    m.add_argument("--backbone", help="instead of --model: UPerNet on this focalmod/timm backbone (features_only)")
    m.add_argument("--model-arg", action="append", default=None, metavar="KEY=VALUE",
                   help="constructor override, repeatable (YAML values), e.g. channels=64 depths=[1,1,2,1]; replaces "
                        "the preset's list when given")
    m.add_argument("--backbone-weights", type=Path, help="classification weights for the backbone (any format "
                   "focalmod.load_checkpoint reads; focal kernels are zero-padded to the model's, as officially)")
    o = p.add_argument_group("recipe (default: the preset's)")
    o.add_argument("--max-iters", type=int, help="training iterations")
    o.add_argument("--batch-size", type=int, help="images per iteration over all processes")
    o.add_argument("--lr", type=float, help="AdamW peak learning rate")
    o.add_argument("--weight-decay", type=float, help="AdamW weight decay (none for norms)")
    o.add_argument("--warmup-iters", type=int, help="linear warm-up iterations before the poly decay")
    o.add_argument("--crop-size", type=int, help="square training crop (also the sliding window)")
    o.add_argument("--img-scale", type=int, nargs=2, metavar=("LONG", "SHORT"),
                   help="resize target (keep ratio) for training (x ratio) and testing")
    o.add_argument("--ratio-range", type=float, nargs=2, metavar=("LOW", "HIGH"), help="training scale jitter")
    o.add_argument("--cat-max-ratio", type=float, help="RandomCrop: retry crops whose largest class exceeds this")
    o.add_argument("--photometric", type=bool_arg, help="PhotoMetricDistortion (true/false)")
    o.add_argument("--val-interval", type=int, help="validate every N iterations (and at the end)")
    o.add_argument("--test-mode", choices=("whole", "slide"), help="inference on whole images or sliding windows")
    o.add_argument("--test-stride", type=int, help="sliding-window stride")
    o.add_argument("--num-png", type=int, default=16, help="validation predictions written as palette PNGs")
    o.add_argument("--print-every", type=int, default=50, help="print a progress line every N iterations (0: never)")
    add_common_args(p, TASK)
    return p


def resolve_args(args: argparse.Namespace, run_dir: Path) -> argparse.Namespace:
    """Fill unset options from the preset, check them, and locate (or write) the data."""
    args.preset = args.preset or ("ade20k" if args.data is not None else "synthetic")
    for key, value in PRESETS[args.preset].as_flags().items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    for key in ("max_iters", "batch_size", "crop_size", "val_interval", "test_stride"):
        if getattr(args, key) <= 0:
            raise TaskError(f"--{key.replace('_', '-')} must be positive, got {getattr(args, key)}")
    if args.data is None:
        root = run_dir / "data" / "ADEChallengeData2016"
        if is_rank_zero():
            print(f"no --data: writing the synthetic ADE20K-layout scenes ({args.synthetic_train} train / "
                  f"{args.synthetic_val} val) to {root}", flush=True)
        make_scenes_dataset(root, args.synthetic_train, args.synthetic_val, seed=args.seed,
                            wait_seconds=0 if is_rank_zero() else 900)  # other ranks wait for rank 0's files
        args.data_root = str(root)
    else:
        args.data_root = str(args.data)
    return args


def test_config(args: argparse.Namespace, ratios: Sequence[float] = (1.0,), flip: bool = False) -> InferenceConfig:
    try:
        return InferenceConfig(mode=args.test_mode, scale=tuple(args.img_scale), ratios=tuple(ratios), flip=flip,
                          crop_size=args.crop_size, stride=args.test_stride)
    except ValueError as err:
        raise TaskError(f"--test-mode/--test-stride: {err}") from None


class ValidationPrinter(Callback):
    """One line per validation on rank 0: iteration, mIoU, mAcc, aAcc."""

    def on_validation_end(self, trainer: pl.Trainer, pl_module: SegmentationModule) -> None:
        if trainer.is_global_zero and not trainer.sanity_checking and pl_module.last_val:
            v = pl_module.last_val
            print(f"iter {trainer.global_step}: val mIoU {v['mIoU']:.4f}  mAcc {v['mAcc']:.4f}  aAcc {v['aAcc']:.4f}",
                  flush=True)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = build_parser()
    args = parse_with_config(parser, argv)
    resume_dir, ckpt = resolve_resume(args.resume)
    if resume_dir is not None and args.config is None and (resume_dir / "config.yaml").is_file():
        args = parse_with_config(parser, [*(argv if argv is not None else sys.argv[1:]), "--config",
                                          str(resume_dir / "config.yaml")])
        args.resume = resume_dir
    apply_threads(args)
    run_dir = shared_run_dir(TASK, resume_dir or args.out)
    try:
        return _train(args, run_dir, ckpt)
    finally:
        release_run_dir()


def _train(args: argparse.Namespace, run_dir: Path, ckpt: Path | None) -> dict[str, Any]:
    start = time.perf_counter()
    pl.seed_everything(args.seed, workers=True, verbose=False)
    args = resolve_args(args, run_dir)
    root = Path(args.data_root)
    class_names = read_class_names(root, args.num_classes)
    train_samples = read_split(root, "training", len(class_names))
    val_samples = read_split(root, "validation", len(class_names))
    model = build_model(args.model, args.backbone, len(class_names), parse_model_args(args.model_arg))
    weights_report = load_backbone_weights(model, args.backbone_weights) if args.backbone_weights else None
    params_m = sum(p.numel() for p in model.parameters()) / 1e6
    if is_rank_zero():
        save_config(run_dir, {k: v for k, v in vars(args).items() if k != "data_root"})  # loadable by --config
        name = f"UPerNet + {args.backbone}" if args.backbone else args.model
        print(f"run dir: {run_dir}\ndata: {root} ({len(train_samples)} training / {len(val_samples)} validation "
              f"images, {len(class_names)} classes)\nmodel: {name}, {params_m:.2f} M parameters", flush=True)
        if weights_report:
            print(weights_report, flush=True)

    train_tf = TrainTransform(tuple(args.img_scale), tuple(args.ratio_range), args.crop_size, args.cat_max_ratio,
                              photometric=args.photometric)
    data = ADE20KDataModule(ADE20KDataset(train_samples, train_tf), ADE20KDataset(val_samples, EvalTransform()),
                            args.batch_size, args.num_workers)
    module = SegmentationModule(model, class_names, lr=args.lr, weight_decay=args.weight_decay,
                                max_iters=args.max_iters, warmup_iters=args.warmup_iters, test=test_config(args),
                                samples=val_samples, prediction_dir=run_dir / "predictions",
                                max_predictions=args.num_png)
    baseline = pixel_colour_baseline(train_samples, val_samples, class_names, seed=args.seed) if is_rank_zero() else {}

    timer = StepTimer(print_every=args.print_every)
    multi_process = args.strategy.startswith("ddp") or args.num_nodes > 1 or (
        str(args.devices).isdigit() and int(args.devices) > 1)
    # SyncBN as the official SyncBN configs, on GPUs (torch's SyncBatchNorm has no CPU implementation)
    sync_bn = multi_process and args.accelerator != "cpu" and torch.cuda.is_available()
    trainer = build_trainer(
        args, run_dir, max_epochs=-1, monitor="val/mIoU",
        callbacks=[timer, ValidationPrinter(), RefreshLastCheckpoint()], max_steps=args.max_iters,
        val_check_interval=min(args.val_interval, args.max_iters), check_val_every_n_epoch=None,
        num_sanity_val_steps=0, sync_batchnorm=sync_bn,
    )
    cpu_start, train_start = time.process_time(), time.perf_counter()
    trainer.fit(module, datamodule=data, ckpt_path=str(ckpt) if ckpt else None)
    train_seconds, cpu_seconds = time.perf_counter() - train_start, time.process_time() - cpu_start
    trainer.save_checkpoint(run_dir / "checkpoints" / "last.ckpt")  # the final iteration, validated or not

    if module.last_val_step != trainer.global_step:  # the last validation was before the final iteration
        trainer.validate(module, datamodule=data, verbose=False)
    metrics: dict[str, Any] = {}
    if trainer.is_global_zero:
        val = module.last_val
        metrics = {
            "mIoU": val["mIoU"], "mAcc": val["mAcc"], "aAcc": val["aAcc"], "IoU": val["IoU"], "Acc": val["Acc"],
            "baseline": baseline, "model": args.model if not args.backbone else f"upernet+{args.backbone}",
            "params_m": round(params_m, 3), "iterations": trainer.global_step, "batch_size": args.batch_size,
            "train_seconds": round(train_seconds, 1), "train_cpu_seconds": round(cpu_seconds, 1),
            "step_time_s": timer.median_seconds, "time_s": round(time.perf_counter() - start, 1),
            "test": {"mode": args.test_mode, "scale": list(args.img_scale), "ratios": [1.0], "flip": False},
            "data": str(root), "split": "validation", "images": len(val_samples), "preset": args.preset,
            "predictions": str(module.prediction_dir), "threads": torch.get_num_threads(),
            "device": str(trainer.strategy.root_device), "world_size": trainer.world_size,
            "versions": {"torch": torch.__version__, "python": platform.python_version()},
        }
        write_metrics(run_dir, metrics)
        print(summary(metrics, run_dir), flush=True)
    return metrics


def summary(m: dict[str, Any], run_dir: Path) -> str:
    worst = sorted(((v, k) for k, v in m["IoU"].items() if v == v))[:5]  # NaN != NaN: absent classes skipped
    base = m.get("baseline") or {}
    lines = [
        f"{m['model']}: mIoU {m['mIoU']:.4f}  mAcc {m['mAcc']:.4f}  aAcc {m['aAcc']:.4f} on {m['images']} "
        f"{m['split']} images ({m['test']['mode']}, single scale)",
        f"baseline ({base.get('name', 'n/a')}): mIoU {base.get('value', float('nan')):.4f}",
        "lowest IoU: " + ", ".join(f"{k} {v:.3f}" for v, k in worst),
        f"{m['iterations']} iterations of {m['batch_size']} in {m['train_seconds']:.0f} s "
        f"({m['train_cpu_seconds']:.0f} s CPU, {m['step_time_s']:.3f} s/iteration); "
        f"{m['params_m']:.2f} M parameters -> {run_dir / 'metrics.json'}",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    run_main(main)
