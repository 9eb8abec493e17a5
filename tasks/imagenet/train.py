"""Train a FocalNet (or any focalmod model) on a folder-per-class image dataset such as ImageNet.

    python -m tasks.imagenet.train                                  # embedded default: sklearn digits, minutes
    python -m tasks.imagenet.train --data /data/imagenet            # official FocalNet-T recipe (presets/imagenet.yaml)
    python -m tasks.imagenet.train --data /data/imagenet --model focalnet_base_lrf --devices 8 --strategy ddp

Unset recipe options take presets/imagenet.yaml with --data and presets/digits.yaml without. Multi-GPU / multi-node:
Lightning strategies (`--strategy ddp|fsdp --devices N --num-nodes M`); see docs/imagenet.md for torchrun and
SLURM. Writes the run directory: config.yaml, logs/ (CSV, TensorBoard), checkpoints/{last,best}.ckpt and
metrics.json; `--resume <run dir>` continues a stopped run.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Sequence

import torch

from focalmod.interpret import scores_table

from ..common import Run, Score, Summary, Task, TaskError, bool_arg, run_main, run_task
from ..common.baseline import compare_with_baseline
from ..common.callbacks import EpochPrinter
from ..common.explain import explain_dataset
from ..common.launch import is_rank_zero
from .baseline import image_baseline
from .data import Augment, FolderData, ImageFolderDataModule, Preprocess
from .digits import default_cache_dir, digits_image_folder
from .module import ClassificationModule
from .recipe import TASK_MODELS
from .sizing import choose_preset, size_to_data
from .trained import label_order


def add_options(p: argparse.ArgumentParser) -> None:
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
    d.add_argument("--baseline-max-train", type=int, default=20000,
                   help="the baseline (logistic regression on pixels, HOG or HOG + colour histograms, chosen by "
                        "cross-validation on the training images) fits on at most this many training images, "
                        "equally many per class; 0: no baseline")
    m = p.add_argument_group("model")
    m.add_argument("--model", help="a focalmod.list_models() name (focalnet_*, hornet_*, ...) or a preset for the "
                   f"embedded digits: {', '.join(TASK_MODELS)} (equal-size comparison set)")
    m.add_argument("--drop-path", type=float, default=None, help="stochastic depth (default: the model's size rule)")
    m.add_argument("--init-checkpoint", type=Path, help="initial weights in any format focalmod.load_checkpoint "
                   "reads (official, timm, HF, safetensors); a different class count re-initialises the head")
    m.add_argument("--pretrained", metavar="NAME", help="start from the ImageNet weights of this registered model, "
                   "optionally with a weight tag (focalnet_tiny_srf, focalnet_tiny_srf.ms_in1k_hf), read from the "
                   "Hugging Face cache (nothing is downloaded when HF_HUB_OFFLINE=1); sets --model, new head")
    m.add_argument("--model-ema", type=bool_arg, help="keep an EMA of the weights for validation (true/false)")
    m.add_argument("--model-ema-decay", type=float, help="EMA decay")
    e = p.add_argument_group("interpretation")
    e.add_argument("--explain", type=int, help="after training, score the explanations of N validation images: the "
                   "modulator and gate maps of a FocalNet beside Grad-CAM, integrated gradients and random masks "
                   "(metrics.json 'interpretability', explanations.png; 0: none)")
    e.add_argument("--quantile", type=float, default=0.9,
                   help="explanation mask: the positions at or above this quantile of a map")
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


def resolve(args: argparse.Namespace) -> None:
    if args.pretrained:
        args.model = args.pretrained.split(".", 1)[0]
    if args.input_size is None or args.epochs is None or args.batch_size is None:
        if args.data is None:
            raise TaskError(f"--preset {args.preset} sizes the input, epochs and batch to --data; give --data, or "
                            "--input-size, --epochs and --batch-size")
        FolderData.from_root(Path(args.data))  # the layout's own error before sizing reads it (small folders only)
        line = size_to_data(args, gpu=args.accelerator != "cpu" and torch.cuda.is_available())
        if is_rank_zero():
            print(line, flush=True)
    if args.explain < 0:
        raise TaskError(f"--explain must be >= 0, got {args.explain}")
    if not 0 < args.quantile < 1:
        raise TaskError(f"--quantile must be in (0, 1), got {args.quantile}")
    if isinstance(args.aa, str) and args.aa.lower() == "none":
        args.aa = None
    if (args.mixup > 0 or args.cutmix > 0) and args.batch_size % 2:
        raise TaskError(f"--batch-size must be even with Mixup/CutMix (batch mode pairs images), got {args.batch_size}")


def train(run: Run) -> Summary | None:
    from lightning.pytorch.callbacks import EMAWeightAveraging

    from ..common import ThroughputLogger

    args = run.args
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
                                  str(args.init_checkpoint) if args.init_checkpoint else None, args.pretrained,
                                  preprocess=dict(input_size=pre.input_size, crop_pct=pre.crop_pct),
                                  classes=label_order(folders.classes))
    throughput = ThroughputLogger()
    callbacks = [throughput, EpochPrinter(["val/top1", "val/top5"])]
    if args.model_ema:
        callbacks.append(EMAWeightAveraging(decay=args.model_ema_decay))
    trainer = run.trainer(args.epochs, monitor="val/top1", mode="max", callbacks=callbacks,
                          strategy=_strategy(args), gradient_clip_val=args.clip_grad or None,
                          accumulate_grad_batches=args.accumulate_grad_batches)
    params = sum(p.numel() for p in module.model.parameters()) / 1e6
    run.say(f"run dir: {run.dir}\ndata: {root} ({len(folders.classes)} classes)\n"
            f"model: {args.model} ({params:.2f} M params)")
    seconds = run.fit(trainer, module, datamodule=data)
    images_per_sec = _last(trainer, "train/samples_per_sec")  # validate() below resets the logged metrics
    results = trainer.validate(module, datamodule=data, verbose=False)[0]
    if not run.is_rank_zero:
        return None
    best = trainer.checkpoint_callback.best_model_score if trainer.checkpoint_callback else None
    extras = dict(
        top1=float(results["val/top1"]), top5=float(results["val/top5"]), val_loss=float(results["val/loss"]),
        val_images=int(results["val/images"]), best_top1=float(best) if best is not None else None,
        epochs=trainer.current_epoch, train_seconds=seconds, model=args.model,
        num_classes=len(folders.classes), train_images=len(data.train_set),
        epoch_seconds=sum(throughput.epoch_seconds) / max(len(throughput.epoch_seconds), 1),
        train_images_per_sec=images_per_sec, world_size=trainer.world_size,
        total_batch=args.batch_size * trainer.world_size * args.accumulate_grad_batches,  # devices x nodes
        peak_lr=module.peak_lr, global_step=trainer.global_step,
    )
    metric, baseline = Score("top1", extras["top1"]), None
    if args.baseline_max_train > 0:
        chosen = image_baseline(data.train_set.reader.samples, data.val_set.reader.samples, args.baseline_max_train,
                                args.seed)
        baseline = Score(chosen.name, chosen.accuracy)
        extras.update(baseline_train_images=chosen.train_images,
                      baseline_cross_validation=chosen.choice.cross_validation)
    print(f"\ntop-1 {extras['top1']:.4f}  top-5 {extras['top5']:.4f}  ({extras['val_images']} val images) "
          f"after {extras['epochs']} epochs in {seconds:.0f} s ({extras['epoch_seconds']:.1f} s/epoch, "
          f"{extras['train_images_per_sec'] or 0:.0f} img/s)\n"
          f"{compare_with_baseline(metric, baseline, 'disabled with --baseline-max-train 0')}\nrun dir: {run.dir}",
          flush=True)
    interpretability = None
    if args.explain:
        labels = [label for _, label in data.val_set.reader.samples]
        interpretability = explain_dataset(module.model, data.val_set, labels, args.explain,
                                           run.dir / "explanations.png", args.quantile, args.seed)
        print(f"explanations of {args.explain} validation images (mask: top {1 - args.quantile:.0%} of each map; "
              f"figure: explanations.png):\n{scores_table(interpretability)}", flush=True)
    return Summary(metric, data=str(root), split="val", params_m=params, extras=extras, baseline=baseline,
                   interpretability=interpretability)


TASK = Task(
    name="imagenet", module="tasks.imagenet.train", doc=__doc__, add_options=add_options,
    presets=Path(__file__).parent / "presets", choose_preset=choose_preset,
    run=train, resolve=resolve,
)


def main(argv: Sequence[str] | None = None) -> dict[str, Any] | None:
    """Train; returns the content of metrics.json (rank 0). `argv` None: the command line."""
    return run_task(TASK, argv)


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
