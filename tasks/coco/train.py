"""Train Mask R-CNN / Faster R-CNN with a FocalNet (or Swin, ConvNeXt, ResNet-50) + FPN backbone on COCO-format data.

    python -m tasks.coco.train                                  # embedded default: synthetic shapes, minutes on CPU
    python -m tasks.coco.train --data /data/coco --train-split train2017 --val-split val2017 \\
        --backbone focalnet_tiny_srf --backbone-checkpoint focalnet_tiny_srf.pth   # the FocalNet 1x recipe

Options left unset take the preset of the data source (presets/coco.yaml: the official FocalNet Mask R-CNN 1x
recipe; presets/synthetic.yaml: a tiny model and detector sized for a CPU). Writes the run directory: config.yaml,
logs/, checkpoints/{last,best}.ckpt, results_<split>_{bbox,segm}.json (COCO results) and metrics.json.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any, Sequence

from torch.utils.data import DataLoader

from ..common import Run, Score, Summary, Task, TaskError, bool_arg, run_main, run_task
from ..common.baseline import compare_with_baseline
from ..common.callbacks import EpochPrinter
from ..common.files import atomic_write
from ..common.options import add_settings, from_args
from .data import STAT_NAMES, CocoInstances, collate, resolve_split
from .module import DetectionModule, DetectorConfig
from .synthetic import Shapes

# Why metrics.json's `baseline` is null for detection (issue #14 asks each task for a simple, well-known baseline).
NO_BASELINE = ("detection has no simple, well-known baseline in the same metric: non-learned guesses (the training "
               "boxes' sizes and places at fixed scores) score about 0 AP; compare with the published Mask R-CNN "
               "numbers in docs/coco.md, or run a ResNet-50 backbone (--backbone resnet50) on the same data")


def add_options(p: argparse.ArgumentParser) -> None:
    d = p.add_argument_group("data")
    d.add_argument("--data", type=Path, help="COCO root: annotations/instances_<split>.json + <split>/ images "
                   "(default: generate the synthetic shapes set in <run>/data)")
    d.add_argument("--train-split", help="training split name (default: train2017 if present, else train)")
    d.add_argument("--val-split", help="evaluation split name (default: val2017 if present, else val)")
    d.add_argument("--synthetic-train", type=int, default=400, help="synthetic: training images")
    d.add_argument("--synthetic-val", type=int, default=80, help="synthetic: validation images")
    d.add_argument("--synthetic-size", type=int, default=128, help="synthetic: image side in pixels")
    d.add_argument("--flip", type=bool_arg, help="random horizontal flip for training (true/false)")
    add_settings(p.add_argument_group("model"), DetectorConfig)
    o = p.add_argument_group("optimisation")
    o.add_argument("--epochs", type=int, help="training epochs")
    o.add_argument("--batch-size", type=int, help="images per device per step")
    o.add_argument("--lr", type=float, help="AdamW peak learning rate")
    o.add_argument("--weight-decay", type=float, help="AdamW weight decay (not on norms/biases)")
    o.add_argument("--warmup-steps", type=int, help="linear warm-up steps (from 0.001 x lr)")
    o.add_argument("--schedule", choices=("step", "cosine"), help="after warm-up: x0.1 at --milestones, or cosine")
    o.add_argument("--milestones", type=float, nargs="+", help="step schedule: fractions of training")
    o.add_argument("--grad-clip", type=float, default=None, help="gradient norm clip (default: none)")
    o.add_argument("--val-every", type=int, help="evaluate every N epochs (and always at the end)")


def _default_split(root: Path, names: tuple[str, str]) -> str:
    return names[0] if (root / "annotations" / f"instances_{names[0]}.json").is_file() else names[1]


def data_root(run: Run) -> Path:
    """`--data`, or the synthetic shapes set written (by rank 0, once) to `<run>/data`."""
    args = run.args
    if args.data is not None:
        return Path(args.data)
    root = run.dir / "data"
    shapes = Shapes(num_train=args.synthetic_train, num_val=args.synthetic_val, image_size=args.synthetic_size,
                    seed=args.seed)
    if not shapes.written(root):
        run.say(f"no --data: writing the synthetic shapes set ({args.synthetic_train} train / {args.synthetic_val} "
                f"val images, {args.synthetic_size} px) to {root}")
    run.on_rank_zero_first(lambda: shapes.write(root), ready=lambda: shapes.written(root),
                           what=f"the synthetic set in {root}")
    return root


def make_loader(dataset: CocoInstances, args: argparse.Namespace, shuffle: bool) -> DataLoader:
    return DataLoader(dataset, batch_size=args.batch_size, shuffle=shuffle, num_workers=args.num_workers,
                      collate_fn=collate, persistent_workers=args.num_workers > 0)


def write_eval_outputs(run_dir: Path, split: str, module: DetectionModule) -> dict[str, Any]:
    """`results_<split>_<iou>.json` (COCO results format) and the printed COCOeval tables; returns the stats."""
    stats: dict[str, Any] = {}
    for iou_type in ("bbox", "segm"):
        ev = module.last_eval.get(iou_type)
        if ev is None:
            continue
        atomic_write(run_dir / f"results_{split}_{iou_type}.json", json.dumps(ev["results"]))
        stats[iou_type] = ev["stats"]
        print(f"COCOeval {iou_type} ({split}, {module.last_eval['num_images']} images):\n{ev['table']}", flush=True)
    stats["num_eval_images"] = module.last_eval.get("num_images")
    return stats


def train(run: Run) -> Summary | None:
    args = run.args
    root = data_root(run)
    train_split = args.train_split or _default_split(root, ("train2017", "train"))
    val_split = args.val_split or _default_split(root, ("val2017", "val"))
    train_set = CocoInstances(*resolve_split(root, train_split), train=True,
                              masks=args.detector == "maskrcnn", flip=args.flip)
    val_set = CocoInstances(*resolve_split(root, val_split), train=False, masks=False,
                            category_ids=train_set.category_ids)
    if len(train_set) == 0:
        raise TaskError(f"--data: no image of split {train_split} has a usable annotation ({train_set.summary()})")
    run.say(f"run dir: {run.dir}\ntrain ({train_split}): {train_set.summary()}\nval ({val_split}): {val_set.summary()}")
    optim = dict(lr=args.lr, weight_decay=args.weight_decay, warmup_steps=args.warmup_steps, schedule=args.schedule,
                 milestones=list(args.milestones), epochs=args.epochs)
    data = dict(root=str(root), train_split=train_split, val_split=val_split)
    detector = asdict(from_args(DetectorConfig, args))
    module = DetectionModule(detector, train_set.category_ids, train_set.category_names, optim, data)
    module.coco_gt = val_set.coco
    params_m = sum(p.numel() for p in module.model.parameters()) / 1e6
    backbone_m = sum(p.numel() for p in module.model.backbone.body.parameters()) / 1e6
    run.say(f"model: {args.detector} + {args.backbone} ({backbone_m:.2f} M backbone, {params_m:.2f} M total)")
    trainer = run.trainer(args.epochs, monitor="val/bbox_AP", mode="max", gradient_clip_val=args.grad_clip,
                          check_val_every_n_epoch=args.val_every,
                          callbacks=[EpochPrinter(["val/bbox_AP", "val/bbox_AP50", "val/segm_AP50"])])
    train_seconds = run.fit(trainer, module, make_loader(train_set, args, True), make_loader(val_set, args, False))
    if module.last_eval_epoch != trainer.current_epoch - 1 or not module.last_eval:
        trainer.validate(module, make_loader(val_set, args, False), verbose=False)
    if not trainer.is_global_zero:
        return None
    extras = write_eval_outputs(run.dir, val_split, module)
    extras.update(model=args.backbone, detector=args.detector, epochs=trainer.current_epoch,
                  train_seconds=round(train_seconds, 1), backbone_params_m=round(backbone_m, 3),
                  train_images=len(train_set), train_report=dict(train_set.report))
    metric = Score("bbox/AP50", extras.get("bbox", {}).get("AP50"))
    extras["baseline_note"] = NO_BASELINE
    print_summary(f"done in {train_seconds:.0f} s training ({trainer.current_epoch} epochs); run dir {run.dir}\n"
                  f"{compare_with_baseline(metric, None, NO_BASELINE)}", extras)
    return Summary(metric, data=str(root), split=val_split, params_m=params_m, extras=extras)


TASK = Task(
    name="coco", module="tasks.coco.train", doc=__doc__, add_options=add_options,
    presets=Path(__file__).parent / "presets", choose_preset=lambda args: "synthetic" if args.data is None else "coco",
    run=train, versions=("torchvision", "pycocotools"),
)


def main(argv: Sequence[str] | None = None) -> dict[str, Any] | None:
    """Train and evaluate; returns the content of metrics.json (rank 0). `argv` None: the command line."""
    return run_task(TASK, argv)


def print_summary(headline: str, metrics: dict[str, Any]) -> None:
    """The headline and one row of COCOeval numbers per IoU type."""
    lines = [headline]
    for iou_type in ("bbox", "segm"):
        if iou_type in metrics:
            vals = "  ".join(f"{k} {_fmt(metrics[iou_type][k])}" for k in STAT_NAMES)
            lines.append(f"{iou_type:5s} {vals}")
    print("\n".join(lines), flush=True)


def _fmt(value: float | None) -> str:
    return "  n/a" if value is None else f"{value:.3f}"


if __name__ == "__main__":
    run_main(main)
