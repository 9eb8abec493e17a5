"""Semantic segmentation with UPerNet on the ADE20K layout: `python -m tasks.ade20k.train`.

    python -m tasks.ade20k.train                       # embedded default: synthetic scenes, minutes on a CPU
    python -m tasks.ade20k.train --data ADEChallengeData2016 --backbone-weights focalnet_tiny_srf.pth  # official

Reads ``ADEChallengeData2016`` (`--data`: images/{training,validation}/*.jpg, annotations/.../*.png, label 0
ignored, 1..K shifted to 0..K-1), trains a `focalmod` UPerNet with the official mmseg recipe (presets/ade20k.yaml:
AdamW 6e-5, poly + 1500 warm-up iterations, 512 crops, 160k iterations of 16) and reports mIoU / mAcc / aAcc and
per-class IoU on the validation split beside a per-pixel colour baseline, writing palette-PNG predictions. Without
`--data` it first writes a small synthetic ADE20K-layout scene set into the run directory and trains the
`synthetic` preset on it. `--backbone NAME` puts the same heads on another backbone (Swin, ConvNeXt, HorNet, ...).
Writes the run directory: config.yaml, logs/, checkpoints/{last,best}.ckpt, predictions/*.png and metrics.json.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any, Sequence

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback

from ..common import Run, Score, Summary, Task, TaskError, bool_arg, parse_key_values, run_main, run_task
from ..common.baseline import compare_with_baseline
from ..common.cli import KeyValues
from ..common.measure import StepTimer
from .baseline import pixel_colour_baseline
from .data import ADE20KDataModule, ADE20KDataset, read_class_names, read_split
from .inference import InferenceConfig
from .models import build_model, load_backbone_weights
from .module import SegmentationModule
from .synthetic import make_scenes_dataset, scenes_written
from .transforms import EvalTransform, TrainTransform

POSITIVE = ("max_iters", "batch_size", "crop_size", "val_interval", "test_stride")


def add_options(p: argparse.ArgumentParser) -> None:
    d = p.add_argument_group("data")
    d.add_argument("--data", type=Path, help="ADEChallengeData2016 folder (default: write the synthetic scene set "
                   "to <run>/data)")
    d.add_argument("--num-classes", type=int,
                   help="classes (default: the rows of objectInfo150.txt, else 150); label values above are an error")
    d.add_argument("--synthetic-train", type=int, default=400, help="synthetic: training images")
    d.add_argument("--synthetic-val", type=int, default=100, help="synthetic: validation images")
    m = p.add_argument_group("model")
    add_model_options(m)
    m.add_argument("--backbone-weights", type=Path, help="classification weights for the backbone (any format "
                   "focalmod.load_checkpoint reads; focal kernels are zero-padded to the model's, as officially)")
    o = p.add_argument_group("recipe")
    o.add_argument("--max-iters", type=int, help="training iterations")
    o.add_argument("--batch-size", type=int, help="images per iteration over all processes")
    o.add_argument("--lr", type=float, help="AdamW peak learning rate")
    o.add_argument("--weight-decay", type=float, help="AdamW weight decay (none for norms)")
    o.add_argument("--warmup-iters", type=int, help="linear warm-up iterations before the poly decay")
    o.add_argument("--ratio-range", type=float, nargs=2, metavar=("LOW", "HIGH"), help="training scale jitter")
    o.add_argument("--cat-max-ratio", type=float, help="RandomCrop: retry crops whose largest class exceeds this")
    o.add_argument("--photometric", type=bool_arg, help="PhotoMetricDistortion (true/false)")
    o.add_argument("--val-interval", type=int, help="validate every N iterations (and at the end)")
    o.add_argument("--print-every", type=int, default=50, help="print a progress line every N iterations (0: never)")
    add_test_options(p.add_argument_group("inference (validation)"))


def add_model_options(g: Any) -> None:
    """The network: shared by fit and the verbs that take plain weights (validate)."""
    g.add_argument("--model", help="a registered UPerNet (focalmod.list_models('upernet_*'))")
    g.add_argument("--backbone", help="instead of --model: UPerNet on this focalmod/timm backbone (features_only)")
    g.add_argument("--model-arg", action=KeyValues,
                   help="constructor override, repeatable (YAML values), e.g. channels=64 depths=[1,1,2,1]; replaces "
                        "the preset's list when given")


def add_test_options(g: Any) -> None:
    """How a model infers (mmseg test_cfg + scale): shared by fit (its validation) and validate / predict / export,
    which take the trained run's values when these are not given."""
    g.add_argument("--img-scale", type=int, nargs=2, metavar=("LONG", "SHORT"),
                   help="resize target (keep ratio) for training (x ratio) and testing")
    g.add_argument("--crop-size", type=int, help="square training crop (also the sliding window)")
    g.add_argument("--test-mode", choices=("whole", "slide"), help="inference on whole images or sliding windows")
    g.add_argument("--test-stride", type=int, help="sliding-window stride")
    g.add_argument("--num-png", type=int, default=16, help="predictions written as palette PNGs")


def check_options(args: argparse.Namespace) -> None:
    for key in POSITIVE:
        if getattr(args, key) <= 0:
            raise TaskError(f"--{key.replace('_', '-')} must be positive, got {getattr(args, key)}")
    parse_key_values(args.model_arg, "--model-arg")  # malformed values fail before the run directory exists
    test_config(args)


def data_root(run: Run) -> Path:
    """`--data`, or the synthetic scene set written (by rank 0, once) to `<run>/data/ADEChallengeData2016`."""
    args = run.args
    if args.data is not None:
        return Path(args.data)
    root = run.dir / "data" / "ADEChallengeData2016"
    sizes = dict(num_train=args.synthetic_train, num_val=args.synthetic_val, seed=args.seed)
    if not scenes_written(root, **sizes):
        run.say(f"no --data: writing the synthetic ADE20K-layout scenes ({args.synthetic_train} train / "
                f"{args.synthetic_val} val) to {root}")
    run.on_rank_zero_first(lambda: make_scenes_dataset(root, **sizes), ready=lambda: scenes_written(root, **sizes),
                           what=f"the synthetic scene set in {root}")
    return root


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


def train(run: Run) -> Summary | None:
    args = run.args
    root = data_root(run)
    class_names = read_class_names(root, args.num_classes)
    train_samples = read_split(root, "training", len(class_names))
    val_samples = read_split(root, "validation", len(class_names))
    model = build_model(args.model, args.backbone, len(class_names), parse_key_values(args.model_arg, "--model-arg"))
    weights_report = load_backbone_weights(model, args.backbone_weights) if args.backbone_weights else None
    params_m = sum(p.numel() for p in model.parameters()) / 1e6
    name = f"upernet+{args.backbone}" if args.backbone else args.model
    run.say(f"run dir: {run.dir}\ndata: {root} ({len(train_samples)} training / {len(val_samples)} validation "
            f"images, {len(class_names)} classes)\nmodel: {name}, {params_m:.2f} M parameters")
    if weights_report:
        run.say(weights_report)

    train_tf = TrainTransform(tuple(args.img_scale), tuple(args.ratio_range), args.crop_size, args.cat_max_ratio,
                              photometric=args.photometric)
    data = ADE20KDataModule(ADE20KDataset(train_samples, train_tf), ADE20KDataset(val_samples, EvalTransform()),
                            args.batch_size, args.num_workers)
    module = SegmentationModule(model, class_names, lr=args.lr, weight_decay=args.weight_decay,
                                max_iters=args.max_iters, warmup_iters=args.warmup_iters, test=test_config(args),
                                samples=val_samples, prediction_dir=run.dir / "predictions",
                                max_predictions=args.num_png)
    baseline = pixel_colour_baseline(train_samples, val_samples, class_names, seed=args.seed) if run.is_rank_zero \
        else None

    timer = StepTimer(print_every=args.print_every)
    multi_process = args.strategy.startswith("ddp") or args.num_nodes > 1 or (
        str(args.devices).isdigit() and int(args.devices) > 1)
    # SyncBN as the official SyncBN configs, on GPUs (torch's SyncBatchNorm has no CPU implementation)
    sync_bn = multi_process and args.accelerator != "cpu" and torch.cuda.is_available()
    trainer = run.trainer(-1, monitor="val/mIoU", callbacks=[timer, ValidationPrinter()], max_steps=args.max_iters,
                          val_check_interval=min(args.val_interval, args.max_iters), check_val_every_n_epoch=None,
                          num_sanity_val_steps=0, sync_batchnorm=sync_bn)
    cpu_start = time.process_time()
    train_seconds = run.fit(trainer, module, datamodule=data)
    cpu_seconds = time.process_time() - cpu_start
    trainer.save_checkpoint(run.dir / "checkpoints" / "last.ckpt", weights_only=False)  # resumable, final iteration

    if module.last_val_step != trainer.global_step:  # the last validation was before the final iteration
        trainer.validate(module, datamodule=data, verbose=False)
    if not trainer.is_global_zero:
        return None
    val = module.last_val
    extras = {
        "mIoU": val["mIoU"], "mAcc": val["mAcc"], "aAcc": val["aAcc"], "IoU": val["IoU"], "Acc": val["Acc"],
        "baseline_scores": {k: baseline[k] for k in ("mAcc", "aAcc")},
        "beats_baseline": beats(val["mIoU"], baseline["value"]),
        "model": name, "iterations": trainer.global_step, "batch_size": args.batch_size,
        "train_seconds": round(train_seconds, 1), "train_cpu_seconds": round(cpu_seconds, 1),
        "step_time_s": timer.median_seconds,
        "test": {"mode": args.test_mode, "scale": list(args.img_scale), "ratios": [1.0], "flip": False},
        "images": len(val_samples), "predictions": str(module.prediction_dir), "threads": torch.get_num_threads(),
        "device": str(trainer.strategy.root_device), "world_size": trainer.world_size,
    }
    print(summary_text(extras, baseline, params_m, run.dir), flush=True)
    return Summary(Score("mIoU", val["mIoU"]), data=str(root), split="validation", params_m=params_m, extras=extras,
                   baseline=Score(baseline["name"], baseline["value"]))


def beats(value: float, baseline: float) -> bool | None:
    """Whether the network's mIoU is above the baseline's (None when either could not be computed)."""
    if value != value or baseline != baseline:  # NaN
        return None
    return bool(value > baseline)


def summary_text(m: dict[str, Any], baseline: dict[str, Any], params_m: float, run_dir: Path) -> str:
    worst = sorted(((v, k) for k, v in m["IoU"].items() if v == v))[:5]  # NaN != NaN: absent classes skipped
    return "\n".join([
        f"{m['model']}: mIoU {m['mIoU']:.4f}  mAcc {m['mAcc']:.4f}  aAcc {m['aAcc']:.4f} on {m['images']} "
        f"validation images ({m['test']['mode']}, single scale)",
        compare_with_baseline(Score("mIoU", m["mIoU"]), Score(baseline["name"], baseline["value"])),
        "lowest IoU: " + ", ".join(f"{k} {v:.3f}" for v, k in worst),
        f"{m['iterations']} iterations of {m['batch_size']} in {m['train_seconds']:.0f} s "
        f"({m['train_cpu_seconds']:.0f} s CPU, {m['step_time_s']:.3f} s/iteration); "
        f"{params_m:.2f} M parameters -> {run_dir / 'metrics.json'}",
    ])


TASK = Task(
    name="ade20k", module="tasks.ade20k.train", doc=__doc__, add_options=add_options,
    presets=Path(__file__).parent / "presets",
    choose_preset=lambda args: "synthetic" if args.data is None else "ade20k",
    run=train, resolve=check_options, versions=("torchmetrics", "scikit-learn"),
)


def main(argv: Sequence[str] | None = None) -> dict[str, Any] | None:
    """Train and evaluate; returns the content of metrics.json (rank 0). `argv` None: the command line."""
    return run_task(TASK, argv)


if __name__ == "__main__":
    run_main(main)
